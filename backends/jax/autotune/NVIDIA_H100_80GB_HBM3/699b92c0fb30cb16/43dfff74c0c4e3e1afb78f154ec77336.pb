
J
4
699b92c0fb30cb16 43dfff74c0c4e3e1afb78f154ec77336
fe9062d0fff82a66
	
€€€13.0.0
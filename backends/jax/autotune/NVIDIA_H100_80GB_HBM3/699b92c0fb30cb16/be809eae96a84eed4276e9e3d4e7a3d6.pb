
J
4
699b92c0fb30cb16 be809eae96a84eed4276e9e3d4e7a3d6
fe9062d0fff82a66
	
€€€13.0.0
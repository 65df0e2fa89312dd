
J
4
699b92c0fb30cb16 cd9e22100c0bf2b2a9b91e9512ebcdb8
fe9062d0fff82a66
	
€€€13.0.0

J
4
699b92c0fb30cb16 4403d74d03f1c5b2edda97f1deee612b
fe9062d0fff82a66
	
€€€13.0.0
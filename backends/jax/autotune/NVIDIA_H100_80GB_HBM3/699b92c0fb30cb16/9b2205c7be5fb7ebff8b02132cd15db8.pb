
J
4
699b92c0fb30cb16 9b2205c7be5fb7ebff8b02132cd15db8
fe9062d0fff82a66
	
€€€13.0.0

J
4
699b92c0fb30cb16 94d72dd2c6b1ebebca43309d181d3d52
fe9062d0fff82a66
	
€€€13.0.0
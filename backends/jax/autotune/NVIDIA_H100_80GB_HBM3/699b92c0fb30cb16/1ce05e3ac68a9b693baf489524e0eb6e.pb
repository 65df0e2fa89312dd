
J
4
699b92c0fb30cb16 1ce05e3ac68a9b693baf489524e0eb6e
fe9062d0fff82a66
	
€€€13.0.0

J
4
699b92c0fb30cb16 bdba37a32d39ce2f82eec6fff9ea36e4
fe9062d0fff82a66
	
€€€13.0.0
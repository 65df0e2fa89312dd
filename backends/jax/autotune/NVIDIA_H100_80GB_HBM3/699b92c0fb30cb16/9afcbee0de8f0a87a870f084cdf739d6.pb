
J
4
699b92c0fb30cb16 9afcbee0de8f0a87a870f084cdf739d6
fe9062d0fff82a66
	
€€€13.0.0
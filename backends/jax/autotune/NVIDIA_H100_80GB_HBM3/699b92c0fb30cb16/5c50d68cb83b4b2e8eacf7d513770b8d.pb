
J
4
699b92c0fb30cb16 5c50d68cb83b4b2e8eacf7d513770b8d
fe9062d0fff82a66
	
€€€13.0.0
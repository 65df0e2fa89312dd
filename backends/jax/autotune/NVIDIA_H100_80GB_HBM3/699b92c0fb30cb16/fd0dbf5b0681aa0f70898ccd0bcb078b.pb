
J
4
699b92c0fb30cb16 fd0dbf5b0681aa0f70898ccd0bcb078b
fe9062d0fff82a66
	
€€€13.0.0

J
4
699b92c0fb30cb16 7b9e9fbb31af48a2e423ac8d02ac7970
fe9062d0fff82a66
	
€€€13.0.0
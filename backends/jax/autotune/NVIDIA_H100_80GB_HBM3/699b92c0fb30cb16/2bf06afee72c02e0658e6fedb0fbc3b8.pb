
J
4
699b92c0fb30cb16 2bf06afee72c02e0658e6fedb0fbc3b8
fe9062d0fff82a66
	
€€€13.0.0
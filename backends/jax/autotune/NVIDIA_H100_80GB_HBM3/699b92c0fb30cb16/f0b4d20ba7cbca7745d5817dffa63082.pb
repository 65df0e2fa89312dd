
J
4
699b92c0fb30cb16 f0b4d20ba7cbca7745d5817dffa63082
fe9062d0fff82a66
	
€€€13.0.0
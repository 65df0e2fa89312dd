
J
4
699b92c0fb30cb16 2ef2efba882387aa8593e2d65bacbff3
fe9062d0fff82a66
	
€€€13.0.0
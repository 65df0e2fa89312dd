
J
4
699b92c0fb30cb16 2dee31c24dc891e1e0ff20decea421a1
fe9062d0fff82a66
	
€€€13.0.0
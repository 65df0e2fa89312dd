
J
4
699b92c0fb30cb16 bf9b23e1e1a3dc3b7af8278d193ec23d
fe9062d0fff82a66
	
€€€13.0.0
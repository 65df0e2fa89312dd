
J
4
699b92c0fb30cb16 da9507e9edaeed9954fb7ddc780c32fc
fe9062d0fff82a66
	
€€€13.0.0
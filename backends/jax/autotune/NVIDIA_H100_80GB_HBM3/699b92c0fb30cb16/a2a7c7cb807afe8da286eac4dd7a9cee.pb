
J
4
699b92c0fb30cb16 a2a7c7cb807afe8da286eac4dd7a9cee
fe9062d0fff82a66
	
€€€13.0.0
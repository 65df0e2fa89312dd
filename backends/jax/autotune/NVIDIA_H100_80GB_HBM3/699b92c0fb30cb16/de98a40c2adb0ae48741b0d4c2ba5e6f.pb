
J
4
699b92c0fb30cb16 de98a40c2adb0ae48741b0d4c2ba5e6f
fe9062d0fff82a66
	
€€€13.0.0
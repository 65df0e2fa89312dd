
J
4
699b92c0fb30cb16 b76ac52abe1e9bea28dc76b17c67e986
fe9062d0fff82a66A
	
€ (0(a77e7c793abc0d0c923a9afb275058e2fe57a198
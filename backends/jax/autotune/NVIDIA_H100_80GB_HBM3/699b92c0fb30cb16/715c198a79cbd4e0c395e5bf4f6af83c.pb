
J
4
699b92c0fb30cb16 715c198a79cbd4e0c395e5bf4f6af83c
fe9062d0fff82a66A
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
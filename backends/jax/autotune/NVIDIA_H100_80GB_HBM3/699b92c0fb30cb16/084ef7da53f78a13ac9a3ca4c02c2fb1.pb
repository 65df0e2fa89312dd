
J
4
699b92c0fb30cb16 084ef7da53f78a13ac9a3ca4c02c2fb1
fe9062d0fff82a66?
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
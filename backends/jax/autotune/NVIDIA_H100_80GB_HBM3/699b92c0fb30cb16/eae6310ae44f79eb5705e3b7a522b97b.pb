
J
4
699b92c0fb30cb16 eae6310ae44f79eb5705e3b7a522b97b
fe9062d0fff82a66@
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
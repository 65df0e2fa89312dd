
J
4
699b92c0fb30cb16 b14acff1bdd938d38a65d5499cb0980d
fe9062d0fff82a66?
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
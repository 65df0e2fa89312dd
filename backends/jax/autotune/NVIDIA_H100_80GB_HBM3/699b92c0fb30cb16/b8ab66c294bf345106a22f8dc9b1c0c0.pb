
J
4
699b92c0fb30cb16 b8ab66c294bf345106a22f8dc9b1c0c0
fe9062d0fff82a66?
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
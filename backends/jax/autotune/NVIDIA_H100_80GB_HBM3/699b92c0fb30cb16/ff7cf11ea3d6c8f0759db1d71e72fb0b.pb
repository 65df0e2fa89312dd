
J
4
699b92c0fb30cb16 ff7cf11ea3d6c8f0759db1d71e72fb0b
fe9062d0fff82a66?
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
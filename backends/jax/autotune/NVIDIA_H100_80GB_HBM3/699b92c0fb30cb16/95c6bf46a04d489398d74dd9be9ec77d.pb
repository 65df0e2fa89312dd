
J
4
699b92c0fb30cb16 95c6bf46a04d489398d74dd9be9ec77d
fe9062d0fff82a66?
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
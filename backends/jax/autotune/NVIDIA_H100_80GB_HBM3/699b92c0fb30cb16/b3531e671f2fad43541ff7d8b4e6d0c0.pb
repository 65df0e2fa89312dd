
J
4
699b92c0fb30cb16 b3531e671f2fad43541ff7d8b4e6d0c0
fe9062d0fff82a66@
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
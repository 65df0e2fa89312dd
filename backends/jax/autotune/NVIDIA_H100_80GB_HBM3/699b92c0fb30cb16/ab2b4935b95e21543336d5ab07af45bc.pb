
J
4
699b92c0fb30cb16 ab2b4935b95e21543336d5ab07af45bc
fe9062d0fff82a66@
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
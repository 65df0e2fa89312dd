
J
4
699b92c0fb30cb16 083177f193cd8cc8ab1fedf3fb67cc54
fe9062d0fff82a66@
	
€ ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 4a968df82485efdf7cf8d71feaee9d2e
fe9062d0fff82a66@
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
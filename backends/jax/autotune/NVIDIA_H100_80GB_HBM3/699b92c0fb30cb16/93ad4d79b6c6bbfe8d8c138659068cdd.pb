
J
4
699b92c0fb30cb16 93ad4d79b6c6bbfe8d8c138659068cdd
fe9062d0fff82a66@
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 0c2968fec8d08ae56dc5b96545bc3aa0
fe9062d0fff82a66@
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
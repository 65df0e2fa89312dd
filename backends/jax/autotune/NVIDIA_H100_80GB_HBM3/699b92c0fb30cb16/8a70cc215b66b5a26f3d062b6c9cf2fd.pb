
J
4
699b92c0fb30cb16 8a70cc215b66b5a26f3d062b6c9cf2fd
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 5a02a9fdd0ffc8e48f5ccaf2ab5e3ce3
fe9062d0fff82a66D
	
  (0(a77e7c793abc0d0c923a9afb275058e2fe57a198
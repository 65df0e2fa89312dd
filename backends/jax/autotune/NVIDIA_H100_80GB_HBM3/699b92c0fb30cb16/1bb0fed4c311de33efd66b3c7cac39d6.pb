
J
4
699b92c0fb30cb16 1bb0fed4c311de33efd66b3c7cac39d6
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
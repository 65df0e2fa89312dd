
J
4
699b92c0fb30cb16 ca47eef4ed5d7a2a78d372f4770ea70d
fe9062d0fff82a66@
	
  (0(a77e7c793abc0d0c923a9afb275058e2fe57a198
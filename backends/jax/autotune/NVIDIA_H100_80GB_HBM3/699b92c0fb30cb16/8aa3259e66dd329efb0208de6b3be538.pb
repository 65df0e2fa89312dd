
J
4
699b92c0fb30cb16 8aa3259e66dd329efb0208de6b3be538
fe9062d0fff82a66@
	
  (0(a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 cbfe9c7285ce3585f5bfc6685360cafb
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
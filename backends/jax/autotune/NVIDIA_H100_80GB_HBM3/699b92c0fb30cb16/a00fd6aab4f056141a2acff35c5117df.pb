
J
4
699b92c0fb30cb16 a00fd6aab4f056141a2acff35c5117df
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 c8eab51d452f9aa894d03b396e2fab56
fe9062d0fff82a66>
	
@ ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 ccc7a3e43e69f1e3a7212eb6e0c53fda
fe9062d0fff82a66>
	
@ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
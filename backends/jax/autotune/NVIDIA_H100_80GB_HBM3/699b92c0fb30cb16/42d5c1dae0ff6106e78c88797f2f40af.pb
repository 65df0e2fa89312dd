
J
4
699b92c0fb30cb16 42d5c1dae0ff6106e78c88797f2f40af
fe9062d0fff82a66=
	
 ((a77e7c793abc0d0c923a9afb275058e2fe57a198
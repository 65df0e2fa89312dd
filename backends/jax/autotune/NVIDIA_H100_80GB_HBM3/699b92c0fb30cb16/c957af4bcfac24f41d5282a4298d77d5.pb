
J
4
699b92c0fb30cb16 c957af4bcfac24f41d5282a4298d77d5
fe9062d0fff82a66>
	
 ((a77e7c793abc0d0c923a9afb275058e2fe57a198
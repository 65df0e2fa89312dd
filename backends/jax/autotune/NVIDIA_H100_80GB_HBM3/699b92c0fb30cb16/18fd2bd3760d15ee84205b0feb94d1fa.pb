
J
4
699b92c0fb30cb16 18fd2bd3760d15ee84205b0feb94d1fa
fe9062d0fff82a66?
	
 ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 f95513896ed7d4cbb50d5b8daeea2d05
fe9062d0fff82a66>
	
@ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
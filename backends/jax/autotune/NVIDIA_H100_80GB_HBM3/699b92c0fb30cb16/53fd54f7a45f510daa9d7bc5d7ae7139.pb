
J
4
699b92c0fb30cb16 53fd54f7a45f510daa9d7bc5d7ae7139
fe9062d0fff82a66>
	
@ ((a77e7c793abc0d0c923a9afb275058e2fe57a198
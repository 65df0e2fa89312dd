
J
4
699b92c0fb30cb16 4a764de576cb321ef5dd6fbbfadb72c8
fe9062d0fff82a66B
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
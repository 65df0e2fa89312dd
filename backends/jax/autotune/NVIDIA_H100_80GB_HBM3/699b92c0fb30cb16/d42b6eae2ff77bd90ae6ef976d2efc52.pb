
J
4
699b92c0fb30cb16 d42b6eae2ff77bd90ae6ef976d2efc52
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
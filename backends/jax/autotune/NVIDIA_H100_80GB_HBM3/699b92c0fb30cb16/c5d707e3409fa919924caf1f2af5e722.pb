
J
4
699b92c0fb30cb16 c5d707e3409fa919924caf1f2af5e722
fe9062d0fff82a66B
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
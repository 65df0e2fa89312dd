
J
4
699b92c0fb30cb16 95d27e2d2c806e5a2f3c03eb5b9fb98b
fe9062d0fff82a66@
	
   ((a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 918eee5a647b16243f2ccdb5e6ae445c
fe9062d0fff82a66@
	
   ((a77e7c793abc0d0c923a9afb275058e2fe57a198
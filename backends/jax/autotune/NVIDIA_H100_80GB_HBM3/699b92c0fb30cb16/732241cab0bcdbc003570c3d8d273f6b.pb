
J
4
699b92c0fb30cb16 732241cab0bcdbc003570c3d8d273f6b
fe9062d0fff82a66@
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
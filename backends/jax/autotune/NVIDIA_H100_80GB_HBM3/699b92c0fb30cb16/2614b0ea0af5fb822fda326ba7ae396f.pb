
J
4
699b92c0fb30cb16 2614b0ea0af5fb822fda326ba7ae396f
fe9062d0fff82a66>
	
  ((a77e7c793abc0d0c923a9afb275058e2fe57a198
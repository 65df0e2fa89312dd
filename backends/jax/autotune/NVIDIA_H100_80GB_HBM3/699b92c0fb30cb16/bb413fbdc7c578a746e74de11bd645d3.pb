
J
4
699b92c0fb30cb16 bb413fbdc7c578a746e74de11bd645d3
fe9062d0fff82a66B
	
  (0(a77e7c793abc0d0c923a9afb275058e2fe57a198
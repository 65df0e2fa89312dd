
J
4
699b92c0fb30cb16 9349aa86151cdc85deaa8edcc98f95dd
fe9062d0fff82a66C
€@(08@X(a77e7c793abc0d0c923a9afb275058e2fe57a198
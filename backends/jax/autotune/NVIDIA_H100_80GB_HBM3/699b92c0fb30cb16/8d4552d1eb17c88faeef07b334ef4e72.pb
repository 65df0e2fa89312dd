
J
4
699b92c0fb30cb16 8d4552d1eb17c88faeef07b334ef4e72
fe9062d0fff82a66@
@(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
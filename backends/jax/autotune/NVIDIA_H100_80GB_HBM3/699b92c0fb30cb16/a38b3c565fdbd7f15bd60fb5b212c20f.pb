
J
4
699b92c0fb30cb16 a38b3c565fdbd7f15bd60fb5b212c20f
fe9062d0fff82a66@
@(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 7c6e28a360865b3894d3badbfa96ec7a
fe9062d0fff82a66@
@ (08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
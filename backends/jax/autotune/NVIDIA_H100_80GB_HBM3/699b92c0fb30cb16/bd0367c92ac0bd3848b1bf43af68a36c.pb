
J
4
699b92c0fb30cb16 bd0367c92ac0bd3848b1bf43af68a36c
fe9062d0fff82a66@
@(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
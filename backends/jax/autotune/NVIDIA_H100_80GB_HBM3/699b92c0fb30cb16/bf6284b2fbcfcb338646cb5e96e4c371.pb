
J
4
699b92c0fb30cb16 bf6284b2fbcfcb338646cb5e96e4c371
fe9062d0fff82a66A
€@ (08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
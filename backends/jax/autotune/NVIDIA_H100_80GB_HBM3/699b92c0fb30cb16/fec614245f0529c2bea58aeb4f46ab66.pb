
J
4
699b92c0fb30cb16 fec614245f0529c2bea58aeb4f46ab66
fe9062d0fff82a66@
(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
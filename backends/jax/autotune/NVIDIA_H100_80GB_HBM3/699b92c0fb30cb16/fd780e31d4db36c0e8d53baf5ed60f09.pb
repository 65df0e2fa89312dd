
J
4
699b92c0fb30cb16 fd780e31d4db36c0e8d53baf5ed60f09
fe9062d0fff82a66@
@(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
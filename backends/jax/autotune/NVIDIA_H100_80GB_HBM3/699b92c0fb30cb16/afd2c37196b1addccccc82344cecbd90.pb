
J
4
699b92c0fb30cb16 afd2c37196b1addccccc82344cecbd90
fe9062d0fff82a66@
@ @(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 07d4ee2dd06ad606e6bc7264e0e9e8d1
fe9062d0fff82a66@
@ @(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
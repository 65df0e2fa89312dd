
J
4
699b92c0fb30cb16 1c1ad455a8ce7593feb4b9b23488caaa
fe9062d0fff82a66@
@ @(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
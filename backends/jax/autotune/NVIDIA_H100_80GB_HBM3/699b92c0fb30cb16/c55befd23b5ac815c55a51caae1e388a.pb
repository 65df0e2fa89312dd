
J
4
699b92c0fb30cb16 c55befd23b5ac815c55a51caae1e388a
fe9062d0fff82a66@
@(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
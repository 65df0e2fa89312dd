
J
4
699b92c0fb30cb16 aa00b2cc1f89c4d70c2eb3ce3ccc21d8
fe9062d0fff82a66A
@€(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
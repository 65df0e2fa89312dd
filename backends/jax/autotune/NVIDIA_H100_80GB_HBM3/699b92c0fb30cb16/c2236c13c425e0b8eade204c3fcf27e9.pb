
J
4
699b92c0fb30cb16 c2236c13c425e0b8eade204c3fcf27e9
fe9062d0fff82a66A
€@ (08X(a77e7c793abc0d0c923a9afb275058e2fe57a198
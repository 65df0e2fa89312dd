
J
4
699b92c0fb30cb16 7acafadcf1ac8e4f12a8acf2a2923c0a
fe9062d0fff82a66@
(08X(a77e7c793abc0d0c923a9afb275058e2fe57a198

J
4
699b92c0fb30cb16 22eabd3fd3e80000ff54c919974ec275
fe9062d0fff82a66D
€€ (08@X(a77e7c793abc0d0c923a9afb275058e2fe57a198
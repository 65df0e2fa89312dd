
J
4
699b92c0fb30cb16 50cc95a8d7387de93ba8b0f6c1a3ac11
fe9062d0fff82a66D
€€ (08@X(a77e7c793abc0d0c923a9afb275058e2fe57a198
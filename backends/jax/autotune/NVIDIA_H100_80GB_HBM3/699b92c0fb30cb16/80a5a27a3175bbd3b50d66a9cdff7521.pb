
J
4
699b92c0fb30cb16 80a5a27a3175bbd3b50d66a9cdff7521
fe9062d0fff82a66D
€€(08@X(a77e7c793abc0d0c923a9afb275058e2fe57a198
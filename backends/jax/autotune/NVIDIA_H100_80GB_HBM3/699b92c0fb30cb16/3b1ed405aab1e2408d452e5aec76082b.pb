
J
4
699b92c0fb30cb16 3b1ed405aab1e2408d452e5aec76082b
fe9062d0fff82a66D
€@€(08@X(a77e7c793abc0d0c923a9afb275058e2fe57a198
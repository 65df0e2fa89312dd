
J
4
699b92c0fb30cb16 ad28aba48e9db1ce0c848af0a7fc28cd
fe9062d0fff82a66

€€€13.0.0

J
4
699b92c0fb30cb16 ab1f23b65368c52fd3b312cac5c278ba
fe9062d0fff82a66

€€€13.0.0

J
4
699b92c0fb30cb16 f02d1cacc196b9b96d2f50b07f69abb7
fe9062d0fff82a66

€€€13.0.0

J
4
699b92c0fb30cb16 b38b347e43d786c91c9b1abfce7ab97b
fe9062d0fff82a66

€€€13.0.0
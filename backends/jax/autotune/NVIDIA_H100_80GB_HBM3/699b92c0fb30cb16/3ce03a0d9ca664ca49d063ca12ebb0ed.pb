
J
4
699b92c0fb30cb16 3ce03a0d9ca664ca49d063ca12ebb0ed
fe9062d0fff82a66

€€€13.0.0
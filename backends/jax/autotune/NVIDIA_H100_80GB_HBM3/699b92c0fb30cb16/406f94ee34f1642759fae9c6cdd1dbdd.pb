
J
4
699b92c0fb30cb16 406f94ee34f1642759fae9c6cdd1dbdd
fe9062d0fff82a66

€€€13.0.0
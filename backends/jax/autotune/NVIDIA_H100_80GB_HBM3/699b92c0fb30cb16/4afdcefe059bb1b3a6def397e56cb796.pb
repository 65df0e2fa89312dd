
J
4
699b92c0fb30cb16 4afdcefe059bb1b3a6def397e56cb796
fe9062d0fff82a66

€€€13.0.0

J
4
699b92c0fb30cb16 6be176f055dcebd80594a2aef90e0c45
fe9062d0fff82a66

€€€13.0.0

J
4
699b92c0fb30cb16 b52e512b7abe1d36db551745baeea837
fe9062d0fff82a66

€€€13.0.0
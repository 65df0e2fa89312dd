
J
4
699b92c0fb30cb16 86aeef387c52be27dabb0f54266b843b
fe9062d0fff82a66

€€€13.0.0
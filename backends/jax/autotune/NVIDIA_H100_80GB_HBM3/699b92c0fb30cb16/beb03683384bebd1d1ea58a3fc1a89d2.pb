
J
4
699b92c0fb30cb16 beb03683384bebd1d1ea58a3fc1a89d2
fe9062d0fff82a66

€€€13.0.0
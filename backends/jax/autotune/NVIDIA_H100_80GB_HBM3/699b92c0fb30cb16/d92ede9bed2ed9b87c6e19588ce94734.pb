
J
4
699b92c0fb30cb16 d92ede9bed2ed9b87c6e19588ce94734
fe9062d0fff82a66

€€€13.0.0
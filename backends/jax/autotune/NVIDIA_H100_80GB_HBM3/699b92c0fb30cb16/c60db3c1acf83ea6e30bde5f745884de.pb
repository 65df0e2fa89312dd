
J
4
699b92c0fb30cb16 c60db3c1acf83ea6e30bde5f745884de
fe9062d0fff82a66

€€€13.0.0
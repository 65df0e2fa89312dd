
J
4
699b92c0fb30cb16 8b728fda04defaaef922acafc1296d61
fe9062d0fff82a66

€€€13.0.0
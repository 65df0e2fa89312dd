
J
4
699b92c0fb30cb16 ce4c9498d1f8ccc24f0713f6f0dc1a43
fe9062d0fff82a66

€€€13.0.0
"""NumPy reference: the exact semantics of every op the paper optimizes.

- ``reference.ops``: group_norm, gelu, geglu, silu, softmax, layer_norm, linear, conv2d, ...
- ``reference.attention``: naive, partially fused softmax (the paper's N x 2 statistics), flash
- ``reference.winograd``: Toom-Cook transforms, Winograd convolution, cost model, error metrics
- ``reference.numerics``: the error metrics and the elementwise check every test uses
"""

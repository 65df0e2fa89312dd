"""NumPy reference: the exact semantics of every op the paper optimizes, one module per idea.

- ``reference.group_norm``: GroupNorm (the paper's fused kernel computes it) and LayerNorm
- ``reference.gelu``: GELU and GEGLU (the paper's fused activation)
- ``reference.attention``: softmax; naive, partially fused softmax (the N x 2 statistics), flash
- ``reference.winograd``: Toom-Cook transforms, Winograd and direct convolution, cost, error metrics
- ``reference.gemm``: the linear layers' matrix product
- ``reference.elementwise``: SiLU, quick GELU, upsampling, arithmetic and layout ops
- ``reference.ops``: all of the above in one namespace
- ``reference.numerics``: the error metrics and the elementwise check every test uses
- ``reference.sd``: Stable Diffusion 1.x written against the op interface (it receives a backend)

Nothing here imports ``backends``: the backends depend on the reference, not the reverse.
"""

"""Every op of the interface in one namespace: the NumPy semantics the backends reproduce.

The definitions live in one module per idea (``reference.group_norm``, ``reference.gelu``,
``reference.attention``, ``reference.winograd``, ``reference.upsample_conv``, ``reference.gemm``,
``reference.elementwise``); this module only gathers them, as ``jax.nn`` gathers activations, so
that a test or a script can write ``ops.group_norm`` and ``ops.conv2d`` side by side.

Conventions (as in PyTorch / diffusers, so published checkpoints load without transposes):
images are NCHW, convolution weights OIHW, linear weights (out_features, in_features), tokens
(B, N, C), attention (B, H, N, d).

Precision: the output dtype is the input dtype. float64 inputs are computed in float64 (the
ground truth of the tests); float32, float16 and bfloat16 inputs are computed in float32 and
rounded to the input dtype at the end: float16 means fp16 storage with fp32 arithmetic.
"""

from .attention import attention, attention_flash, attention_partial_softmax, softmax
from .elementwise import (
    add, add_broadcast, concat, mul_scalar, quick_gelu, reshape, silu, transpose, upsample_nearest2d,
)
from .gelu import geglu, gelu
from .gemm import linear
from .group_norm import group_norm, layer_norm
from .upsample_conv import upsample_conv2d
from .winograd import conv2d, conv2d_winograd

__all__ = [
    "group_norm", "layer_norm",                                        # reference/group_norm.py
    "gelu", "geglu",                                                   # reference/gelu.py
    "softmax", "attention", "attention_partial_softmax", "attention_flash",  # reference/attention.py
    "conv2d", "conv2d_winograd",                                       # reference/winograd.py
    "upsample_conv2d",                                                 # reference/upsample_conv.py
    "linear",                                                          # reference/gemm.py
    "silu", "quick_gelu", "upsample_nearest2d", "add", "add_broadcast", "mul_scalar",
    "concat", "reshape", "transpose",                                  # reference/elementwise.py
]

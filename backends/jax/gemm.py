"""The matrix products in JAX: the linear layers as one ``lax.dot_general`` (cuBLAS on an NVIDIA
GPU). Operands stay in their storage dtype and accumulation is float32 (``product_options``):
float32 storage asks for ``Precision.HIGHEST``, which keeps the products out of TF32; float16
and bfloat16 storage ask for a result in the storage dtype, which cuBLAS and cuDNN accumulate
in float32 on the tensor cores.

Why not a float32 result for 16-bit storage (``preferred_element_type=float32``, the accumulation
type stated)? On the H200 it made XLA run bfloat16 convolutions as float32 ones on upcast copies
(12x slower with HIGHEST, 1.4x without) and its linear layers as Triton GEMM fusions 15% slower
than cuBLASLt, for the same error (experiments/probes/jax_conv_dtypes.py,
experiments/results/issue13_h200_2026-12-04/run3_70b52bb/probe_conv.log).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["linear", "product_options"]

F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST


def product_options(dtype) -> dict:
    """``precision`` and ``preferred_element_type`` of a convolution or matrix product of
    ``dtype`` operands (module docstring): float32 HIGHEST with a float32 result; 16-bit storage
    the default precision and a result in the storage dtype (float32 accumulation inside)."""
    if jnp.dtype(dtype) == F32:
        return {"precision": HIGHEST, "preferred_element_type": F32}
    return {"precision": None, "preferred_element_type": None}


@jax.jit
def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis (torch.nn.Linear), W of shape (out, in); the bias is added
    in float32 to the product, then rounded to x's dtype."""
    y = lax.dot_general(x, weight, (((x.ndim - 1,), (1,)), ((), ())), **product_options(x.dtype)).astype(F32)
    if bias is not None:
        y = y + bias.astype(F32)
    return y.astype(x.dtype)

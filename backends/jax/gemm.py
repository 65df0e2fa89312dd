"""The matrix products in JAX: the linear layers as one ``lax.dot_general`` (cuBLAS on an NVIDIA
GPU). Operands stay in their storage dtype, accumulation is float32 (``preferred_element_type``)
and ``Precision.HIGHEST`` keeps float32 products out of TF32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["linear"]

F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST


@jax.jit
def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis (torch.nn.Linear), W of shape (out, in)."""
    y = lax.dot_general(x, weight, (((x.ndim - 1,), (1,)), ((), ())), precision=HIGHEST,
                        preferred_element_type=F32)
    if bias is not None:
        y = y + bias.astype(F32)
    return y.astype(x.dtype)

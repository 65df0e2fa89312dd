"""The remaining ops of the SD network in JAX (plain jnp; XLA fuses them into their neighbours):
SiLU, quick GELU, nearest upsampling, arithmetic and layout. The math: reference/elementwise.py.
Arithmetic is float32 whatever the storage dtype; the result has the input's dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .pallas_util import sigmoid

__all__ = ["silu", "quick_gelu", "upsample_nearest2d", "add", "add_broadcast", "mul_scalar"]

F32 = jnp.float32


@jax.jit
def silu(x):
    """silu(x) = x * sigmoid(x)."""
    xc = x.astype(F32)
    return (xc * sigmoid(xc)).astype(x.dtype)


@jax.jit
def quick_gelu(x):
    """CLIP's quick_gelu(x) = x * sigmoid(1.702 x)."""
    xc = x.astype(F32)
    return (xc * sigmoid(1.702 * xc)).astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def upsample_nearest2d(x, s: int = 2):
    """Nearest-neighbour upsampling of NCHW by an integer factor: y[n, c, i, j] = x[n, c, i // s, j // s]."""
    n, c, h, w = x.shape
    y = jnp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, s, w, s))
    return y.reshape(n, c, h * s, w * s)


@jax.jit
def add(a, b):
    """a + b (one shape and dtype), in float32."""
    return (a.astype(F32) + b.astype(F32)).astype(a.dtype)


@jax.jit
def add_broadcast(x, v):
    """x + v[:, :, None, ...] for x (N, C, *spatial) and v (N, C), in float32."""
    return (x.astype(F32) + v.astype(F32).reshape(v.shape + (1,) * (x.ndim - 2))).astype(x.dtype)


@jax.jit
def mul_scalar(x, s):
    """s * x in float32 (s a traced or Python scalar)."""
    return (x.astype(F32) * jnp.asarray(s, F32)).astype(x.dtype)

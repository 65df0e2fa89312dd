"""Plain ``jnp`` ops: the unfused baselines of the JAX backend (XLA fuses what it can).

Each function is the formula of reference/ops.py written in ``jnp`` (the math is in each
docstring, as in ``jax.nn``). Conventions: NCHW images, OIHW convolution weights, (out, in)
linear weights, tokens (..., C).

Precision: float32, float16 and bfloat16 are *storage* dtypes. Every op computes in float32 and
casts only its result back to the input's dtype (reference/ops.py's rule). Matrix products and
convolutions take the operands in their storage dtype (products of float16 / bfloat16 numbers
are exact in float32), accumulate in float32 (``preferred_element_type``) and run with
``Precision.HIGHEST``, so float32 never drops to TF32 / bf16 passes on a GPU.

Static arguments (group counts, eps, axes, strides, ...) are Python values; every function is
jitted once per shape, dtype and static arguments, and traces inline inside a caller's jit.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["group_norm", "layer_norm", "softmax", "gelu", "geglu", "silu", "quick_gelu", "linear",
           "conv2d", "upsample_nearest2d"]

F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST
SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _f32(x):
    return None if x is None else x.astype(F32)


def _affine(y, weight, bias, shape):
    """y * weight + bias (each optional), the vectors reshaped to ``shape`` for broadcasting."""
    if weight is not None:
        y = y * _f32(weight).reshape(shape)
    if bias is not None:
        y = y + _f32(bias).reshape(shape)
    return y


# ----------------------------------------------------------------------------------- normalization


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, silu: bool = False):
    """GroupNorm of x (N, C, *spatial) over G groups of C/G consecutive channels (torch.nn.GroupNorm):

        mu = mean(X_g),   var = mean((X_g - mu)^2)          (two-pass: centred, biased)
        y  = (x - mu) / sqrt(var + eps) * weight[c] + bias[c],   then y * sigmoid(y) if silu.

    The unfused baseline: XLA computes the statistics and the normalization as separate
    reductions and elementwise fusions."""
    n, c = x.shape[:2]
    grouped = x.astype(F32).reshape(n, num_groups, -1)
    mean = jnp.mean(grouped, axis=-1, keepdims=True)
    centred = grouped - mean
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = (centred * lax.rsqrt(var + eps)).reshape(x.shape)
    y = _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))
    if silu:
        y = y * jax.nn.sigmoid(y)
    return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(3,))
def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """LayerNorm over the last axis (torch.nn.LayerNorm(C)):

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias      (biased, two-pass variance)"""
    xc = x.astype(F32)
    mean = jnp.mean(xc, axis=-1, keepdims=True)
    centred = xc - mean
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * lax.rsqrt(var + eps)
    return _affine(y, weight, bias, (x.shape[-1],)).astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def softmax(x, axis: int = -1):
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``."""
    xc = x.astype(F32)
    e = jnp.exp(xc - jnp.max(xc, axis=axis, keepdims=True))
    return (e / jnp.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


# ----------------------------------------------------------------------------------- activations


def _gelu_f32(x, approximate: bool):
    if approximate:
        u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return x * jax.nn.sigmoid(2.0 * u)
    return 0.5 * x * lax.erfc(-SQRT_HALF * x)


@functools.partial(jax.jit, static_argnums=(1,))
def gelu(x, approximate: bool = False):
    """GELU, in reference/ops.py's spellings (no 1 + erf cancellation for negative x):

        exact:        gelu(x) = x/2 * erfc(-x / sqrt 2)
        approximate:  gelu(x) ~ x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)   (= tanh form)"""
    return _gelu_f32(x.astype(F32), approximate).astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def geglu(x, approximate: bool = False):
    """GEGLU of x (..., 2F): a * gelu(b) with a = x[..., :F], b = x[..., F:] (diffusers' GEGLU)."""
    a, b = jnp.split(x.astype(F32), 2, axis=-1)
    return (a * _gelu_f32(b, approximate)).astype(x.dtype)


@jax.jit
def silu(x):
    """silu(x) = x * sigmoid(x)."""
    xc = x.astype(F32)
    return (xc * jax.nn.sigmoid(xc)).astype(x.dtype)


@jax.jit
def quick_gelu(x):
    """CLIP's quick_gelu(x) = x * sigmoid(1.702 x)."""
    xc = x.astype(F32)
    return (xc * jax.nn.sigmoid(1.702 * xc)).astype(x.dtype)


# ----------------------------------------------------------------------------------- matrix products


@jax.jit
def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis (torch.nn.Linear), W of shape (out, in)."""
    y = lax.dot_general(x, weight, (((x.ndim - 1,), (1,)), ((), ())), precision=HIGHEST,
                        preferred_element_type=F32)
    if bias is not None:
        y = y + _f32(bias)
    return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(3, 4))
def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0)):
    """2-D cross-correlation (torch.nn.functional.conv2d, groups 1, dilation 1), NCHW / OIHW:

        y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * xp[n, c, i*sh + u, j*sw + v]

    with xp the input zero-padded by (ph, pw) on each side."""
    (ph, pw) = padding
    y = lax.conv_general_dilated(x, w, window_strides=tuple(stride), padding=((ph, ph), (pw, pw)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=HIGHEST,
                                 preferred_element_type=F32)
    if b is not None:
        y = y + _f32(b)[None, :, None, None]
    return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def upsample_nearest2d(x, s: int = 2):
    """Nearest-neighbour upsampling of NCHW by an integer factor: y[n, c, i, j] = x[n, c, i // s, j // s]."""
    n, c, h, w = x.shape
    y = jnp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, s, w, s))
    return y.reshape(n, c, h * s, w * s)

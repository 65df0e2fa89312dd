"""The remaining ops of the SD network: activations without a paper idea (SiLU, CLIP's quick
GELU), nearest upsampling, elementwise arithmetic and layout (concat, reshape, transpose).

Each is one elementwise pass or one copy on a GPU (backends/opencl/elementwise.py and
kernels/elementwise.cl, backends/jax/elementwise.py). Precision as in reference/group_norm.py:
arithmetic in float32 (float64 for float64 inputs), the result in the input's dtype; the
layout ops copy values exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ._checks import (
    check_add_broadcast, check_array, check_concat, check_reshape, check_same_shape, check_scalar,
    check_transpose, check_upsample, in_compute_dtype,
)

__all__ = ["silu", "quick_gelu", "upsample_nearest2d", "add", "add_broadcast", "mul_scalar", "concat",
           "reshape", "transpose"]


def silu(x):
    """Sigmoid linear unit (swish): silu(x) = x * sigmoid(x) = x / (1 + exp(-x))."""
    check_array("x", x)
    xc = in_compute_dtype(x)
    return (xc * special.expit(xc)).astype(x.dtype)


def quick_gelu(x):
    """CLIP's activation: quick_gelu(x) = x * sigmoid(1.702 x)."""
    check_array("x", x)
    xc = in_compute_dtype(x)
    return (xc * special.expit(1.702 * xc)).astype(x.dtype)


def upsample_nearest2d(x, scale_factor: int = 2):
    """Nearest-neighbour upsampling of NCHW by an integer factor (SD's ``Upsample2D``):
    y[n, c, i, j] = x[n, c, i // s, j // s]."""
    s = check_upsample(x, scale_factor)
    return x.repeat(s, axis=2).repeat(s, axis=3)


def add(a, b):
    """a + b for two arrays of one shape (the residual connections)."""
    check_same_shape(a, b)
    return (in_compute_dtype(a) + in_compute_dtype(b)).astype(a.dtype)


def add_broadcast(x, v):
    """x + v[:, :, None, ...]: v (N, C) added at every spatial position of x (N, C, *spatial)
    (the timestep-embedding add of SD's ResNet blocks)."""
    check_add_broadcast(x, v)
    vc = in_compute_dtype(v).reshape(v.shape + (1,) * (x.ndim - 2))
    return (in_compute_dtype(x) + vc).astype(x.dtype)


def mul_scalar(x, s):
    """s * x for a real number s (e.g. the VAE's 1 / scaling_factor), computed in float32."""
    check_array("x", x)
    s = check_scalar("s", s)
    xc = in_compute_dtype(x)
    return (xc * xc.dtype.type(s)).astype(x.dtype)


def concat(arrays, axis: int = 1):
    """numpy.concatenate along ``axis`` (default: NCHW channels; the UNet's skip connections)."""
    return np.concatenate(arrays, axis=check_concat(arrays, axis))


def reshape(x, shape):
    """x with the same elements in C order and a new ``shape`` (a tuple of ints, no -1)."""
    return x.reshape(check_reshape(x, shape))


def transpose(x, axes):
    """numpy.transpose(x, axes), materialized (C-contiguous) as every backend returns it."""
    return np.ascontiguousarray(np.transpose(x, check_transpose(x, axes)))

"""NumPy reference of every op the paper optimizes, and of the ops around them.

These functions *define* the semantics that the JAX and OpenCL backends must reproduce. They
are written to be read: one formula per function, no tricks for speed.

Conventions (as in PyTorch / diffusers, so published checkpoints load without transposes):
images are NCHW, convolution weights OIHW, linear weights (out_features, in_features), tokens
(B, N, C).

Precision: the output dtype is the input dtype. float64 inputs are computed in float64 (the
ground truth of the tests); float32 and float16 inputs are computed in float32 and rounded to
the input dtype at the end: float16 means fp16 storage with fp32 arithmetic, the DESIGN's rule.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._checks import (
    check_array,
    check_conv2d,
    check_geglu,
    check_group_norm,
    check_layer_norm,
    check_linear,
    check_softmax,
    compute_dtype,
)

__all__ = [
    "group_norm",
    "gelu",
    "geglu",
    "quick_gelu",
    "silu",
    "softmax",
    "layer_norm",
    "linear",
    "conv2d",
    "upsample_nearest2d",
]


def _compute(x: np.ndarray) -> np.ndarray:
    return x.astype(compute_dtype(x.dtype), copy=False)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Group normalization (Wu & He, 2018), as ``torch.nn.GroupNorm``.

    The channels of ``x`` (N, C, *spatial) are split into ``num_groups`` groups of C / G
    consecutive channels. Each (sample, group) slab X_g of n = (C/G) * prod(spatial) values is
    normalized with its own mean and biased variance, then every channel c is scaled and shifted:

        mu = (1/n) sum X_g,    var = (1/n) sum (X_g - mu)^2
        y  = (x - mu) / sqrt(var + eps) * weight[c] + bias[c]

    The variance is the two-pass (centred) form, which does not cancel when |mu| >> sigma.
    The paper's fused kernel computes exactly this in one GPU command.
    """
    check_group_norm(x, num_groups, weight, bias)
    n, c = x.shape[:2]

    xc = _compute(x)
    grouped = xc.reshape(n, num_groups, -1)
    mean = grouped.mean(axis=-1, keepdims=True)
    var = np.square(grouped - mean).mean(axis=-1, keepdims=True)
    y = ((grouped - mean) / np.sqrt(var + eps)).reshape(xc.shape)
    affine_shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * _compute(weight).reshape(affine_shape)
    if bias is not None:
        y = y + _compute(bias).reshape(affine_shape)
    return y.astype(x.dtype)


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016).

    Exact (erf) form, the one SD 1.x uses:
        gelu(x) = x/2 * (1 + erf(x / sqrt(2))) = x/2 * erfc(-x / sqrt(2))
    Tanh approximation (``approximate=True``), u = sqrt(2/pi) * (x + 0.044715 x^3):
        gelu(x) ~= x/2 * (1 + tanh(u)) = x * sigmoid(2u)
    whose absolute error is below 5e-4 everywhere (tests/test_ops.py measures it).

    The erfc and sigmoid spellings are used because 1 + erf(...) cancels for negative x (2%
    relative error at x = -8 even in float64, exactly 0 below x = -8.3).
    """
    check_array("x", x)
    xc = _compute(x)
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (xc + 0.044715 * xc**3)
        y = xc * special.expit(2.0 * inner)
    else:
        y = 0.5 * xc * special.erfc(-xc / math.sqrt(2.0))
    return y.astype(x.dtype)


def geglu(x, approximate: bool = False):
    """diffusers' GEGLU activation (Shazeer, 2020) after its input projection.

    The last axis (size 2F) is split into halves a = x[..., :F] and b = x[..., F:], and

        geglu(x) = a * gelu(b)

    SD 1.x's transformer feed-forward computes ``linear`` (C -> 2F) and then this. The paper's
    fused GELU kernel does the split, the erf and the product in one pass.
    """
    check_geglu(x)
    half = x.shape[-1] // 2
    a = _compute(x[..., :half])
    gate = gelu(_compute(x[..., half:]), approximate=approximate)
    return (a * gate).astype(x.dtype)


def quick_gelu(x):
    """CLIP's activation: quick_gelu(x) = x * sigmoid(1.702 x)."""
    check_array("x", x)
    xc = _compute(x)
    return (xc * special.expit(1.702 * xc)).astype(x.dtype)


def silu(x):
    """Sigmoid linear unit (swish): silu(x) = x * sigmoid(x) = x / (1 + exp(-x))."""
    check_array("x", x)
    xc = _compute(x)
    return (xc * special.expit(xc)).astype(x.dtype)


def softmax(x, axis: int = -1):
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``.

    Subtracting the maximum changes nothing mathematically and keeps exp from overflowing.
    """
    check_softmax(x, axis)
    xc = _compute(x)
    e = np.exp(xc - xc.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm(C)``:

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   (biased variance, last axis)
    """
    check_layer_norm(x, weight, bias)
    xc = _compute(x)
    mean = xc.mean(axis=-1, keepdims=True)
    var = np.square(xc - mean).mean(axis=-1, keepdims=True)
    y = (xc - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * _compute(weight)
    if bias is not None:
        y = y + _compute(bias)
    return y.astype(x.dtype)


def linear(x, weight, bias=None):
    """Affine map of the last axis, as ``torch.nn.Linear``: y = x W^T + b, W of shape (out, in)."""
    check_linear(x, weight, bias)
    y = _compute(x) @ _compute(weight).T
    if bias is not None:
        y = y + _compute(bias)
    return y.astype(x.dtype)


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (groups=1, dilation=1).

        y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, i*s + u, j*s + v]

    with xp the input zero-padded by ``padding`` on each side. x is (N, C, H, W), w is
    (O, C, kh, kw), the output (N, O, (H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1).
    This direct form is the ground truth for Winograd (reference/winograd.py).
    """
    sh, sw, ph, pw = check_conv2d(x, w, b, stride, padding)
    kh, kw = w.shape[2:]
    xp = np.pad(_compute(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # windows[n, c, i, j, u, v] = xp[n, c, i*sh + u, j*sw + v]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.einsum("ncijuv,ocuv->noij", windows, _compute(w), optimize=True)
    if b is not None:
        y = y + _compute(b)[None, :, None, None]
    return y.astype(x.dtype)


def upsample_nearest2d(x, scale_factor: int = 2):
    """Nearest-neighbour upsampling of NCHW by an integer factor (SD's ``Upsample2D``):
    y[n, c, i, j] = x[n, c, i // s, j // s]."""
    check_array("x", x, ndim=4)
    if not isinstance(scale_factor, (int, np.integer)) or scale_factor < 1:
        raise ValueError(f"scale_factor: expected a positive int, got {scale_factor!r}")
    return x.repeat(scale_factor, axis=2).repeat(scale_factor, axis=3)

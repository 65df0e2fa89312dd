"""GroupNorm, the paper's first idea, and LayerNorm (the same statistics over one row).

The semantics the fused GPU kernels must reproduce (Chen et al. 2023, "Group normalization"):
every (sample, group) slab is normalized by its own mean and variance, then scaled and shifted
per channel. The paper's point is how a GPU computes it (one command instead of reshape, mean,
variance and normalize kernels with tensors in between); the math is the same either way:

    mu = mean(X_g),   var = mean((X_g - mu)^2),   y = (x - mu) / sqrt(var + eps) * weight + bias

The fused and unfused versions of every backend live in the module of the same name:
backends/opencl/group_norm.py (and kernels/group_norm.cl), backends/jax/group_norm.py.

Precision: the output dtype is the input dtype. float64 inputs are computed in float64 (the
ground truth of the tests); float32, float16 and bfloat16 in float32, rounded at the end
(float16 means fp16 storage with fp32 arithmetic, the DESIGN's rule).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_group_norm, check_layer_norm, in_compute_dtype

__all__ = ["group_norm", "layer_norm"]


def _centred(x):
    """x - mean(x) over the last axis, the mean as the pair m0 + dm (corrected two-pass):
    m0 = mean(x), dm = mean(x - m0), and x - mean = (x - m0) - dm. In float32, m0 alone is off by
    up to half an ulp of |mean| (3e-5 at 1e3, 3e-4 of a std of 0.1); x - m0 is exact for x near m0
    and dm removes that error. The backends' kernels subtract the mean the same way."""
    m0 = x.mean(axis=-1, keepdims=True)
    shifted = x - m0
    return shifted - shifted.mean(axis=-1, keepdims=True)


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
    eps = check_group_norm(x, num_groups, weight, bias, eps=eps)
    n, c = x.shape[:2]

    xc = in_compute_dtype(x)
    grouped = xc.reshape(n, num_groups, -1)
    centred = _centred(grouped)
    var = np.square(centred).mean(axis=-1, keepdims=True)
    y = (centred / np.sqrt(var + eps)).reshape(xc.shape)
    affine_shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * in_compute_dtype(weight).reshape(affine_shape)
    if bias is not None:
        y = y + in_compute_dtype(bias).reshape(affine_shape)
    return y.astype(x.dtype)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm(C)``:

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   (biased variance, last axis)
    """
    eps = check_layer_norm(x, weight, bias, eps=eps)
    xc = in_compute_dtype(x)
    centred = _centred(xc)
    var = np.square(centred).mean(axis=-1, keepdims=True)
    y = centred / np.sqrt(var + eps)
    if weight is not None:
        y = y * in_compute_dtype(weight)
    if bias is not None:
        y = y + in_compute_dtype(bias)
    return y.astype(x.dtype)

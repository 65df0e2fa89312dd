"""GELU and GEGLU, the paper's second idea: the erf-based activation of SD's feed-forward.

    gelu(x)  = x/2 * (1 + erf(x / sqrt 2))                 (the exact form SD 1.x uses)
    geglu(x) = a * gelu(b),  a, b = the two halves of x's last axis

The paper fuses the whole activation into one elementwise kernel (on a phone GPU an unfused
erf is a chain of kernels with a tensor between each). The fused and unfused versions of every
backend live in the module of the same name: backends/opencl/gelu.py (and kernels/gelu.cl),
backends/jax/gelu.py. Precision as in reference/group_norm.py.
"""

from __future__ import annotations

import math

from scipy import special

from ._checks import check_array, check_geglu, in_compute_dtype

__all__ = ["gelu", "geglu"]


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016).

    Exact (erf) form, the one SD 1.x uses:
        gelu(x) = x/2 * (1 + erf(x / sqrt(2))) = x/2 * erfc(-x / sqrt(2))
    Tanh approximation (``approximate=True``), u = sqrt(2/pi) * (x + 0.044715 x^3):
        gelu(x) ~= x/2 * (1 + tanh(u)) = x * sigmoid(2u)
    whose absolute error is below 5e-4 everywhere (tests/test_gelu.py measures it).

    The erfc and sigmoid spellings are used because 1 + erf(...) cancels for negative x (2%
    relative error at x = -8 even in float64, exactly 0 below x = -8.3).
    """
    check_array("x", x)
    xc = in_compute_dtype(x)
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
    a = in_compute_dtype(x[..., :half])
    gate = gelu(in_compute_dtype(x[..., half:]), approximate=approximate)
    return (a * gate).astype(x.dtype)

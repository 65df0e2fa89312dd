"""The matrix product of the linear layers (torch.nn.Linear): y = x W^T + b.

Not one of the paper's four ideas, but the work every other idea sits between: the UNet's
projections, feed-forward layers and attention products, and the Winograd batched stage, all run
on a backend's GEMM (backends/opencl/gemm.py and kernels/gemm.cl, backends/jax/gemm.py).
Precision as in reference/group_norm.py.
"""

from __future__ import annotations

from ._checks import check_linear, in_compute_dtype

__all__ = ["linear"]


def linear(x, weight, bias=None):
    """Affine map of the last axis, as ``torch.nn.Linear``: y = x W^T + b, W of shape (out, in)."""
    check_linear(x, weight, bias)
    y = in_compute_dtype(x) @ in_compute_dtype(weight).T
    if bias is not None:
        y = y + in_compute_dtype(bias)
    return y.astype(x.dtype)

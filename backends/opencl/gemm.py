"""The matrix products on OpenCL: a batched GEMM with general strides (kernels/gemm.cl), used by
the linear layers and the Winograd batched stage.

    C[b] = alpha * A[b] (m x k) @ B[b] (k x n)  (+ bias over columns)

``linear`` is one GEMM launch with W read transposed through its strides (no transposed copy).
"""

from __future__ import annotations

import math

from .runtime import Runtime, check_int32_tensors

FILE = "gemm.cl"
#: tile side of the GEMM (a TS x TS work-group computes a TS x TS tile of C)
TS = 16


def gemm_batched(rt: Runtime, a, b, c, m: int, n: int, k: int, batch: int,
                 a_strides, b_strides, c_strides, bias=None, alpha: float = 1.0) -> None:
    """One launch: for every batch index, C = alpha * A (m x k) @ B (k x n) (+ bias over columns).

    ``*_strides`` are (batch, row, col) element strides of each operand, so A^T is A with its row
    and column strides swapped. All three arrays share one storage dtype.
    """
    check_int32_tensors(("a", a.size), ("b", b.size), ("c", c.size))
    kernel = rt.kernel(FILE, "gemm_batched", c.dtype, {"TS": TS})
    rt.launch(kernel, (n, m, batch), (TS, TS, 1), a, b, c,
              bias if bias is not None else rt.dummy(c.dtype), bias is not None,
              m, n, k, *a_strides, *b_strides, *c_strides, float(alpha))


def linear(rt: Runtime, x, weight, bias=None):
    """y = x W^T + b over the last axis of x, W (out, in): one GEMM launch, no temporaries."""
    k = x.shape[-1]
    rows = math.prod(x.shape[:-1])
    n = weight.shape[0]
    check_int32_tensors(("x", x.shape), ("weight", weight.shape), ("x", (rows, n), "the output (..., out_features)"))
    y = rt.empty(x.shape[:-1] + (n,), x.dtype)
    if y.size == 0:
        return y
    gemm_batched(rt, x, weight, y, m=rows, n=n, k=k, batch=1,
                 a_strides=(0, k, 1), b_strides=(0, 1, k), c_strides=(0, n, 1), bias=bias)
    return y

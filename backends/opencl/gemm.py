"""Host side of kernels/gemm.cl: batched C = alpha * A @ B (+ bias) with general strides."""

from __future__ import annotations

from .runtime import Runtime

TS = 16


def gemm_batched(rt: Runtime, a, b, c, m: int, n: int, k: int, batch: int,
                 a_strides, b_strides, c_strides, bias=None, alpha: float = 1.0) -> None:
    """One launch: for every batch index, C = alpha * A (m x k) @ B (k x n) (+ bias over columns).

    ``*_strides`` are (batch, row, col) element strides of each operand, so A^T is A with its row
    and column strides swapped. All three arrays share one storage dtype.
    """
    kernel = rt.kernel("gemm.cl", "gemm_batched", c.dtype, {"TS": TS})
    rt.launch(kernel, (n, m, batch), (TS, TS, 1), a, b, c,
              bias if bias is not None else rt.dummy(c.dtype), bias is not None,
              m, n, k, *a_strides, *b_strides, *c_strides, float(alpha))

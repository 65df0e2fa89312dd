"""Attention, the paper's third idea, on OpenCL: naive, the partially fused softmax and flash;
and the row softmax as an op of its own. Host side of kernels/attention.cl; the two products of
the naive and partially fused variants run on the matrix core (kernels/gemm.cl, gemm.py).

With q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) and s = scale (reference/attention.py):

    A = s Q K^T   (N x M per batch*head),   P = softmax(A) along M,   O = P V   (B, H, N, dv)

With ``causal=True`` (CLIP's text encoder) query row n sees keys m <= n only: A[n, m] = -inf for
m > n before the softmax (top-left aligned, any N and M).

The three variants compute the same O and differ in what they store, which is the paper's point
(Chen et al. 2023, "Attention"). Every launch works on all B*H heads at once.

=================  =========================================  ===================================
method             launches (kernel names)                    temporaries
=================  =========================================  ===================================
"naive"            3: attention_scores (A = s Q K^T),         A and P: two (B, H, N, M) float32
                   softmax_rows (P = softmax(A)),
                   attention_pv (O = P V)
"partial_softmax"  3: attention_scores, softmax_stats          A: (B, H, N, M) float32, and the
                   (the (L, S) row statistics, block-wise),   (B, H, N, 2) float32 statistics
                   attention_pv_softmax (the normalization
                   fused into the product with V)
"flash"            1: flash_attention (online softmax)        none
=================  =========================================  ===================================

Partially fused softmax (the paper's): ``softmax_stats`` reduces each row of A to
L = max_m A[n, m] and S = sum_m exp(A[n, m] - L) with one work-group of ``ROW_WG`` items per row:
each item reduces its own block of columns, and the partial (max, sum) pairs are merged in
__local memory with L = max(La, Lb), S = Sa exp(La - L) + Sb exp(Lb - L). Then
``attention_pv_softmax``, the matrix core's GEMM with A = the scores, applies exp(A - L[n]) as it
stages each slab of A and divides the finished row by S[n]: O = sum_m exp(A[n, m] - L[n]) V[m, :]
/ S[n]. P is never stored.

The products (``attention_scores``, ``attention_pv``, ``attention_pv_softmax``) are the matrix
core's register-tiled GEMM (gemm.py ``attention_product``): A = s Q K^T with K read along its rows
as B = K^T, and O = W V; the tile comes from the table's "attention" entries (never split along
K), the loads are vectors where the head dims allow.

Flash: register-tiled, in FlashAttention-2's loop order. One work-group of 16 x 16 items per
(batch*head, block of 16 RQ query rows) loops over blocks of BK keys; each item keeps in
registers an RQ x BK/16 tile of the block's scores S, the running max and its own partial row
sum of each of its RQ rows, and the RQ x ceil(dv/16) accumulator of their output columns. Q and
K pass through __local memory in chunks of DC head columns (read as float4s), the block's row
max is merged over the 16 items of a row in __local memory, P = exp(S - m) goes to __local
memory for the product with V, which is staged KC rows at a time; O = acc / l at the end (see
the kernel's comment). The head dims d and dv are compile-time defines; ``flash_plan`` picks RQ
(4, or 2 when dv > 256), DC (the fewest chunks of at most 64 columns) and the largest BK and KC
that fit 48 KiB of __local memory (d = 40: BK 64, one chunk; d = 160: BK 32, chunks of 56; the
VAE's d = 512: RQ 2, chunks of 64). Ragged N and M are masked in the kernel.

Causal masking changes no launch count and no temporary. The score, P V and flash kernels are
built with the define CAUSAL = 0 or 1 (the unmasked build carries no mask code; PoCL also
miscompiled the flash kernel with the flag as a runtime argument). ``attention_scores`` writes
-inf right of the diagonal (and skips tiles masked as a whole); the row statistics skip -inf
scores, so a work-item whose block of columns is all masked holds the empty statistics (-inf, 0),
which merge as the identity (no exp(-inf - -inf) = NaN); the P V products stop after the key
block of their tile's last row (masked weights are 0), and so does the flash key loop. Column 0
is visible to every row, so every row max is finite.

Storage choice: the scores A, the probabilities P and the statistics are float32 buffers
whatever q's dtype. With fp16 storage a score of magnitude |A| would carry an absolute error of
about |A| * 2^-11, i.e. a relative error of that size in exp(A - L) (1e-3 already at |A| = 2, 0.5
at |A| = 1e3); float32 scores keep the fp32 arithmetic's accuracy, at twice the bytes. The output
has q's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .gemm import attention_product
from .runtime import Runtime, check_int32_indexing, check_int32_tensors, row_work_group

SOURCE = "attention.cl"
#: work-items per row in the row reductions (softmax_stats, softmax_rows); a power of two.
ROW_WG = 64
#: the flash work-group: FLASH_TILE x FLASH_TILE items.
FLASH_TILE = 16
FLASH_WG = FLASH_TILE * FLASH_TILE
#: __local bytes a flash work-group may use (NVIDIA's OpenCL gives a work-group 48 KiB).
FLASH_LOCAL_BUDGET = 48 * 1024


def softmax(rt: Runtime, x):
    """softmax(x) over the last axis in x's storage dtype: one launch of ``softmax_rows`` (one
    work-group per row, the row's (L, S) statistics as below, then exp(x - L) / S), no temporaries."""
    cols = x.shape[-1] if x.ndim else 1
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if x.size == 0:
        return y
    wg = row_work_group(rt, cols)
    rt.launch(rt.kernel(SOURCE, "softmax_rows", x.dtype, {"ROW_WG": wg}), (x.size // cols * wg,), (wg,), x, y, cols)
    return y


def attention(rt: Runtime, q, k, v, scale: float, method: str, causal: bool = False):
    """O = softmax(scale q k^T) v by ``method`` ("naive" | "partial_softmax" | "flash"); with
    ``causal`` query row n sees keys m <= n only."""
    variants = {"naive": attention_naive, "partial_softmax": attention_partial_softmax, "flash": attention_flash}
    if method not in variants:
        raise ValueError(f"method: expected one of {tuple(variants)}, got {method!r}")
    bh, n, m, _, dv = _dims(q, k, v)
    tensors = [("q", q.shape), ("k", k.shape), ("v", v.shape), ("q", (bh, n, dv), "the output (B, H, N, dv)")]
    if method != "flash":  # the (B, H, N, M) float32 scores (and, naive, the probabilities) in memory
        tensors.append(("q, k", (bh, n, m), "the score matrix (B, H, N, M)"))
    check_int32_tensors(*tensors)
    return variants[method](rt, q, k, v, float(scale), bool(causal))


def _dims(q, k, v):
    """(B*H, N, M, d, dv)."""
    b, h, n, d = q.shape
    return b * h, n, k.shape[2], d, v.shape[3]


def _scores(rt: Runtime, q, k, scale: float, causal: bool):
    """A = scale q k^T (-inf right of the diagonal when causal) as a float32 temporary (B, H, N, M):
    one launch of the matrix core, k read along its rows as B = K^T."""
    bh, n, m, d, _ = _dims(q, k, k)
    a = rt.temp(q.shape[:3] + (m,), np.float32)
    kernel, grid, local = attention_product(rt, "attention_scores", q.dtype, n, m, d, bh,
                                            (n * d, d, 1), (m * d, 1, d), causal)
    rt.launch(kernel, grid, local, q, k, a, n, m, d, scale)
    return a


def _pv(rt: Runtime, name: str, weights, stats, v, causal: bool):
    """O = W V by the matrix core's ``name`` ("attention_pv": W = P; "attention_pv_softmax":
    W = exp(A - L) / S from the scores A and their statistics): one launch, O in v's dtype."""
    bh, n, m, dv = math.prod(weights.shape[:2]), weights.shape[2], weights.shape[3], v.shape[3]
    out = rt.empty(weights.shape[:3] + (dv,), v.dtype)
    kernel, grid, local = attention_product(rt, name, v.dtype, n, dv, m, bh, (n * m, m, 1), (m * dv, dv, 1), causal)
    rt.launch(kernel, grid, local, weights, *([stats] if stats is not None else []), v, out, n, m, dv)
    return out


def _launch_stats(rt: Runtime, a, stats) -> None:
    """stats[..., n, :] = (L, S) of each row of a (..., N, M): one launch, a work-group per row."""
    rows, m = math.prod(a.shape[:-1]), a.shape[-1]
    kernel = rt.kernel(SOURCE, "softmax_stats", a.dtype, {"ROW_WG": ROW_WG})
    rt.launch(kernel, (rows * ROW_WG,), (ROW_WG,), a, stats, m)


def softmax_stats(rt: Runtime, a):
    """The paper's N x 2 statistics of a score tensor a (..., N, M): a float32 (..., N, 2) array
    holding the row max L and the row sum S of exp(a - L) (reference.attention.softmax_stats).
    Float32 whatever a's storage: L and S feed exponents and divisions in float."""
    rt.check_storage_dtype("a", a.dtype)
    if a.ndim < 2 or 0 in a.shape:
        raise ValueError(f"a: expected a non-empty array of at least 2 dimensions (..., N, M), got shape {a.shape}")
    check_int32_indexing("a", a.size)
    stats = rt.empty(a.shape[:-1] + (2,), np.float32)
    _launch_stats(rt, a, stats)
    return stats


def attention_naive(rt: Runtime, q, k, v, scale: float, causal: bool = False):
    """A, then P = softmax(A) into a second N x M buffer, then O = P V: 3 launches, 2 N x M temps."""
    bh, n, m, _, _ = _dims(q, k, v)
    a = _scores(rt, q, k, scale, causal)
    p = rt.temp(a.shape, np.float32)
    rt.launch(rt.kernel(SOURCE, "softmax_rows", np.float32, {"ROW_WG": ROW_WG}), (bh * n * ROW_WG,), (ROW_WG,),
              a, p, m)
    return _pv(rt, "attention_pv", p, None, v, causal)


def attention_partial_softmax(rt: Runtime, q, k, v, scale: float, causal: bool = False):
    """A, the (B, H, N, 2) statistics, then O = exp(A - L) V / S fused: 3 launches, one N x M temp."""
    a = _scores(rt, q, k, scale, causal)
    stats = rt.temp(q.shape[:3] + (2,), np.float32)
    _launch_stats(rt, a, stats)
    return _pv(rt, "attention_pv_softmax", a, stats, v, causal)


@dataclass(frozen=True)
class FlashPlan:
    """Block sizes of the register-tiled flash kernel for head dims (d, dv): work-groups of
    ``FLASH_WG`` = 16 x 16 items, each holding ``rows_per_item`` query rows."""

    rows_per_item: int    # RQ: query rows per work-item (a work-group has 16 RQ rows)
    block_k: int          # BK: keys per block (16 RK per work-item's score tile)
    chunk: int            # DC: head columns of Q and K staged at a time
    value_rows: int       # KC: rows of V staged at a time
    local_bytes: int      # __local memory of one work-group

    @property
    def block_q(self) -> int:
        return FLASH_TILE * self.rows_per_item

    def defines(self, d: int, dv: int) -> dict:
        return {"D": d, "DV": dv, "TILE": FLASH_TILE, "RQ": self.rows_per_item, "BK": self.block_k, "DC": self.chunk,
                "KC": self.value_rows}


def _flash_local_bytes(dv: int, rows_per_item: int, block_k: int, chunk: int, value_rows: int) -> int:
    # Qc (BQ x DC+4), Kc (BK x DC+4), Ps (BQ x BK+4), Vc (KC x dv), red (BQ x 16), all float
    block_q = FLASH_TILE * rows_per_item
    return 4 * ((block_q + block_k) * (chunk + 4) + block_q * (block_k + 4) + value_rows * dv
                + block_q * FLASH_TILE)


def flash_plan(d: int, dv: int, local_mem_size: int = FLASH_LOCAL_BUDGET) -> FlashPlan:
    """Four query rows per item (two when dv > 256, so the accumulator stays at 64 registers);
    the head dim in the fewest chunks of at most 64 columns (rounded up to float4s); then the
    largest key block in 64, 32, 16 and value staging in 16, 8, 4 rows whose __local footprint
    fits min(FLASH_LOCAL_BUDGET, local_mem_size). (Fewer rows per item to fill an H200 with
    SD's short d = 80 and d = 160 sequences measured slower: NOTES.md.)"""
    rows_per_item = 2 if dv > 256 else 4
    chunks = -(-d // 64)
    per_chunk = -(-d // chunks)
    chunk = 4 * -(-per_chunk // 4)
    budget = min(FLASH_LOCAL_BUDGET, local_mem_size)
    for block_k in (64, 32, 16):
        for value_rows in (16, 8, 4):
            nbytes = _flash_local_bytes(dv, rows_per_item, block_k, chunk, value_rows)
            if nbytes <= budget:
                return FlashPlan(rows_per_item, block_k, chunk, value_rows, nbytes)
    raise ValueError(
        f"q, v: flash attention with head dims d={d}, dv={dv} needs {nbytes} bytes of local memory even with "
        f"16 keys per block, over the {budget}-byte budget; use method='partial_softmax'"
    )


def attention_flash(rt: Runtime, q, k, v, scale: float, causal: bool = False):
    """One launch, no temporaries: tiled attention with an online softmax."""
    bh, n, m, d, dv = _dims(q, k, v)
    plan = flash_plan(d, dv, rt.local_mem_size)
    if FLASH_WG > rt.max_work_group_size:
        raise ValueError(f"q: flash attention needs work-groups of {FLASH_WG} items, over this device's "
                         f"{rt.max_work_group_size}; use method='partial_softmax'")
    out = rt.empty(q.shape[:3] + (dv,), q.dtype)
    kernel = rt.kernel(SOURCE, "flash_attention", q.dtype, {**plan.defines(d, dv), "CAUSAL": causal})
    rt.launch(kernel, (-(-n // plan.block_q) * FLASH_WG, bh), (FLASH_WG, 1), q, k, v, out, n, m, scale)
    return out

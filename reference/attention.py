"""Scaled dot-product attention three ways: naive, the paper's partially fused softmax, flash.

Shapes follow diffusers: q is (B, H, N, d), k is (B, H, M, d), v is (B, H, M, dv); the output is
(B, H, N, dv). With s = scale (default 1/sqrt(d)):

    A = s * Q K^T                      (B, H, N, M)  the attention scores
    P = softmax(A) along M
    O = P V

With ``causal=True`` (CLIP's text encoder) query i sees only keys j <= i: A[i, j] = -inf for
j > i before the softmax. Column 0 is visible to every row, so every row max is finite.

The three functions compute the same O and differ in what they hold in memory, which is the
paper's point (section "Attention" of ../shared/paper.md):

``attention``                  stores A and P (two N x M tensors).
``attention_partial_softmax``  stores A and an N x 2 statistics tensor (row max L, row sum
                               S = sum exp(A - L)). The statistics are reduced block-wise over
                               column blocks of A (parallel on a GPU), then the softmax
                               normalization exp(A - L) / S is fused into the product with V, so P
                               is never written.
``attention_flash``            never holds more than one (block_q x block_k) tile of A: an online
                               softmax carries the running max m, running sum l and an unnormalized
                               output accumulator across key blocks (Dao et al., 2022).

``softmax`` is the row-wise softmax by itself (an op of the interface; the naive attention's
middle step).

The three variants of every backend live in the module of the same name:
backends/opencl/attention.py (and kernels/attention.cl), backends/jax/attention.py.

Precision follows reference/group_norm.py: float64 in, float64 arithmetic; float32/float16 in,
float32 arithmetic, output rounded to the input dtype.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_array, check_block, check_qkv, check_softmax, compute_dtype, in_compute_dtype

__all__ = ["softmax", "attention", "attention_partial_softmax", "attention_flash", "softmax_stats", "merge_stats"]


def softmax(x, axis: int = -1):
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``.

    Subtracting the maximum changes nothing mathematically and keeps exp from overflowing.
    """
    check_softmax(x, axis)
    xc = in_compute_dtype(x)
    e = np.exp(xc - xc.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def _scores(q, k, scale, causal=False, row_offset=0, col_offset=0):
    """s * Q K^T; with ``causal`` the entries with key index > query index are -inf. The offsets
    place a tile of rows/columns inside the full N x M matrix (for the flash tiles)."""
    ct = compute_dtype(q.dtype)
    a = scale * np.einsum("bhnd,bhmd->bhnm", q.astype(ct), k.astype(ct))
    if causal:
        rows = row_offset + np.arange(a.shape[-2])[:, None]
        cols = col_offset + np.arange(a.shape[-1])[None, :]
        a = np.where(cols > rows, -np.inf, a)
    return a


def _exp_shifted(x, shift):
    """exp(x - shift), with 0 where shift = -inf (a block whose entries are all masked)."""
    finite = np.isfinite(shift)
    return np.where(finite, np.exp(x - np.where(finite, shift, 0)), 0)


def attention(q, k, v, scale=None, causal: bool = False):
    """Naive attention: O = softmax(s * Q K^T) V, with A and P both materialized."""
    scale = check_qkv(q, k, v, scale, causal=causal)
    a = _scores(q, k, scale, causal)
    p = np.exp(a - a.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("bhnm,bhmd->bhnd", p, v.astype(p.dtype)).astype(q.dtype)


def merge_stats(stats_a, stats_b):
    """Merge two partial (max, sum) statistics of disjoint column sets of the same rows:

        L = max(L_a, L_b),    S = S_a exp(L_a - L) + S_b exp(L_b - L)

    ``stats_*`` have shape (..., 2) holding (L, S). This is the associative step that lets
    the statistics of a row be reduced in parallel over column blocks.
    A block whose columns are all masked (causal attention) has L = -inf and S = 0 and merges as
    the identity.
    """
    la, sa = stats_a[..., 0], stats_a[..., 1]
    lb, sb = stats_b[..., 0], stats_b[..., 1]
    lm = np.maximum(la, lb)
    return np.stack([lm, sa * _exp_shifted(la, lm) + sb * _exp_shifted(lb, lm)], axis=-1)


def softmax_stats(a, block: int = 64):
    """The paper's reduction: the (..., N, 2) statistics (row max L, row sum S of exp(A - L))
    of a score tensor A (..., N, M), computed block-wise.

    A's columns are cut into ceil(M / block) blocks; each block b yields its own (L_b, S_b)
    independently (on a GPU: in parallel, one work-group per block), and the partial results are
    merged with ``merge_stats``. The last block may be ragged.
    """
    check_array("a", a)
    if a.ndim < 2:
        raise ValueError(f"a: expected at least 2 dimensions (..., N, M), got shape {a.shape}")
    block = check_block("block", block)
    ct = compute_dtype(a.dtype)
    stats = None
    for start in range(0, a.shape[-1], block):
        tile = a[..., start : start + block].astype(ct)
        lb = tile.max(axis=-1)
        sb = _exp_shifted(tile, lb[..., None]).sum(axis=-1)
        partial = np.stack([lb, sb], axis=-1)
        stats = partial if stats is None else merge_stats(stats, partial)
    return stats


def attention_partial_softmax(q, k, v, scale=None, block: int = 64, return_stats: bool = False,
                              causal: bool = False):
    """The paper's partially fused softmax attention.

    1. A = s * Q K^T is computed and stored (N x M per head).
    2. ``softmax_stats`` reduces A to the N x 2 tensor (L, S), block-wise over column blocks.
    3. The normalization is fused into the product with V, block by block over the columns:

           O = sum_b exp(A[:, b] - L) V[b] / S

       so the normalized N x M matrix P is never written.

    With ``return_stats=True`` returns (O, stats) with stats of shape (B, H, N, 2), for tests.
    """
    scale = check_qkv(q, k, v, scale, causal=causal)
    block = check_block("block", block)
    a = _scores(q, k, scale, causal)
    stats = softmax_stats(a, block=block)
    row_max, row_sum = stats[..., 0:1], stats[..., 1:2]
    vc = v.astype(a.dtype)
    out = np.zeros(q.shape[:3] + (v.shape[3],), dtype=a.dtype)
    for start in range(0, a.shape[-1], block):
        p_unnormalized = np.exp(a[..., start : start + block] - row_max)
        out += np.einsum("bhnm,bhmd->bhnd", p_unnormalized, vc[:, :, start : start + block])
    out = (out / row_sum).astype(q.dtype)
    return (out, stats) if return_stats else out


def attention_flash(q, k, v, scale=None, block_q: int = 64, block_k: int = 64, causal: bool = False):
    """FlashAttention's forward pass: tiled attention with an online softmax.

    For each block of block_q query rows, loop over key blocks j of block_k columns, holding
    only the tile A_j = s * Q_blk K_j^T:

        m_new = max(m, rowmax(A_j))
        l     = l * exp(m - m_new) + rowsum(exp(A_j - m_new))
        acc   = acc * exp(m - m_new) + exp(A_j - m_new) V_j
        m     = m_new

    and finally O_blk = acc / l. No N x M tensor exists at any time. With ``causal`` the key
    blocks start at column 0 (visible to every row), so m is finite from the first block on and
    fully masked tiles add exp(-inf) = 0.
    """
    scale = check_qkv(q, k, v, scale, causal=causal)
    block_q = check_block("block_q", block_q)
    block_k = check_block("block_k", block_k)
    ct = compute_dtype(q.dtype)
    qc, kc, vc = q.astype(ct), k.astype(ct), v.astype(ct)
    n, m_keys = q.shape[2], k.shape[2]
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=ct)
    for qs in range(0, n, block_q):
        q_blk = qc[:, :, qs : qs + block_q]
        row_max = np.full(q_blk.shape[:3] + (1,), -np.inf, dtype=ct)
        row_sum = np.zeros(q_blk.shape[:3] + (1,), dtype=ct)
        acc = np.zeros(q_blk.shape[:3] + (v.shape[3],), dtype=ct)
        for ks in range(0, m_keys, block_k):
            tile = _scores(q_blk, kc[:, :, ks : ks + block_k], scale, causal, qs, ks)
            new_max = np.maximum(row_max, tile.max(axis=-1, keepdims=True))
            correction = np.exp(row_max - new_max)
            p = np.exp(tile - new_max)
            row_sum = row_sum * correction + p.sum(axis=-1, keepdims=True)
            acc = acc * correction + np.einsum("bhnm,bhmd->bhnd", p, vc[:, :, ks : ks + block_k])
            row_max = new_max
        out[:, :, qs : qs + block_q] = acc / row_sum
    return out.astype(q.dtype)

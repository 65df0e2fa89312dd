"""The three attentions agree, and the paper's N x 2 statistics are what they claim to be."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import attention as att
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import random_array, scales, seeds

shapes = st.tuples(
    st.integers(1, 2),   # B
    st.integers(1, 3),   # H
    st.integers(1, 70),  # N: ragged against every block size below
    st.integers(1, 90),  # M
    st.sampled_from([1, 8, 40]),  # d (40: SD 1.4's 64x64 level)
)
blocks = st.integers(1, 33)


def qkv(seed, shape, scale=1.0, dv=None):
    b, h, n, m, d = shape
    return (random_array(seed, (b, h, n, d), scale=scale), random_array(seed + 1, (b, h, m, d), scale=scale),
            random_array(seed + 2, (b, h, m, dv or d)))


def attention_by_rows(q, k, v, scale):
    """The definition, one query row at a time."""
    out = np.empty(q.shape[:3] + (v.shape[3],))
    for idx in np.ndindex(*q.shape[:3]):
        b, h, _ = idx
        a = scale * k[b, h] @ q[idx]
        p = np.exp(a - a.max())
        out[idx] = (p / p.sum()) @ v[b, h]
    return out


@given(seed=seeds, shape=shapes, scale=scales)
def test_naive_attention_matches_definition(seed, shape, scale):
    q, k, v = qkv(seed, shape, scale=np.sqrt(scale))
    s = 1 / np.sqrt(q.shape[-1])
    assert_close(att.attention(q, k, v), attention_by_rows(q, k, v, s), atol=1e-12, rtol=1e-12)


@given(seed=seeds, shape=shapes, block=blocks, block_q=blocks, block_k=blocks, scale=scales)
def test_three_attentions_agree_in_float64(seed, shape, block, block_q, block_k, scale):
    q, k, v = qkv(seed, shape, scale=np.sqrt(scale))
    naive = att.attention(q, k, v)
    partial = att.attention_partial_softmax(q, k, v, block=block)
    flash = att.attention_flash(q, k, v, block_q=block_q, block_k=block_k)
    assert relative_frobenius_error(partial, naive) < 1e-12
    assert relative_frobenius_error(flash, naive) < 1e-12


@given(seed=seeds, shape=shapes, block=blocks, scale=scales)
def test_stats_tensor_is_row_max_and_row_sum_of_exp(seed, shape, block, scale):
    q, k, v = qkv(seed, shape, scale=np.sqrt(scale))
    _, stats = att.attention_partial_softmax(q, k, v, block=block, return_stats=True)
    b, h, n, m, _ = shape
    assert stats.shape == (b, h, n, 2)
    a = np.einsum("bhnd,bhmd->bhnm", q, k) / np.sqrt(q.shape[-1])
    assert_close(stats[..., 0], a.max(-1), atol=0, rtol=1e-15)
    assert_close(stats[..., 1], np.exp(a - a.max(-1, keepdims=True)).sum(-1), atol=0, rtol=1e-13)


@given(seed=seeds, parts=st.integers(2, 5))
def test_merge_stats_is_associative_and_order_free(seed, parts):
    a = random_array(seed, (3, 7, 10 * parts), scale=5.0)
    whole = att.softmax_stats(a, block=a.shape[-1])
    pieces = [att.softmax_stats(p, block=p.shape[-1]) for p in np.split(a, parts, axis=-1)]
    forward, backward = pieces[0], pieces[-1]
    for p in pieces[1:]:
        forward = att.merge_stats(forward, p)
    for p in reversed(pieces[:-1]):
        backward = att.merge_stats(p, backward)
    assert_close(forward, whole, atol=0, rtol=1e-13)
    assert_close(backward, whole, atol=0, rtol=1e-13)


def test_cross_attention_shapes_of_sd():
    # SD 1.4 cross-attention: N = 64 (8x8 latent level), M = 77 text tokens, d = 160, dv = d
    q, k, v = qkv(5, (1, 8, 64, 77, 160))
    ref = att.attention(q, k, v)
    assert ref.shape == (1, 8, 64, 160)
    assert relative_frobenius_error(att.attention_partial_softmax(q, k, v, block=32), ref) < 1e-12
    assert relative_frobenius_error(att.attention_flash(q, k, v, block_q=16, block_k=32), ref) < 1e-12


@pytest.mark.parametrize("fn", [att.attention, att.attention_partial_softmax, att.attention_flash])
def test_value_dim_may_differ_and_scale_is_used(fn):
    q, k, v = qkv(9, (1, 2, 13, 17, 8), dv=5)
    expected = attention_by_rows(q, k, v, 0.3)
    assert_close(fn(q, k, v, scale=0.3), expected, atol=1e-12, rtol=1e-12)


def test_large_scores_do_not_overflow():
    q, k, v = qkv(11, (1, 1, 9, 20, 4), scale=30.0)  # scores in the thousands
    for fn in (att.attention, att.attention_partial_softmax, att.attention_flash):
        out = fn(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 2e-3)])
def test_low_precision_attention_is_close_to_float64(dtype, tol):
    q, k, v = (t.astype(dtype) for t in qkv(13, (1, 2, 33, 47, 40)))
    exact = att.attention(*(t.astype(np.float64) for t in (q, k, v)))
    for fn in (att.attention, att.attention_partial_softmax, att.attention_flash):
        out = fn(q, k, v)
        assert out.dtype == dtype
        assert relative_frobenius_error(out, exact) < tol

"""OpenCL attention: naive, partially fused softmax and flash against the float64 reference, the
paper's N x 2 statistics, and what each variant launches and stores (the paper's point)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.opencl import attention as ocl_attention
from reference import attention as att

from ..helpers import (
    assert_matches, attention_inputs, attention_tolerance, check_attention_methods, examples, random_array, rounded,
    scales, seeds,
)


METHODS = ("naive", "partial_softmax", "flash")


shapes = st.tuples(
    st.integers(1, 2),    # B
    st.integers(1, 3),    # H
    st.integers(1, 100),  # N: ragged against the 16-row tiles and every flash block_q
    st.integers(1, 100),  # M: ragged against the 16-column tiles and every flash block_k
    st.sampled_from([8, 40, 80]),  # d = dv (40, 80: SD 1.4's 64x64 and 32x32 levels)
)


@examples()
@given(seed=seeds, shape=shapes, scale=scales)
def test_three_methods_match_the_reference(backend, dtype, seed, shape, scale):
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale)
    check_attention_methods(backend, inputs, inputs64, dtype)


@examples(3)
@given(seed=seeds, n=st.integers(1, 40))
def test_cross_attention_with_77_text_tokens(backend, dtype, seed, n):
    # SD 1.4's cross-attention: M = 77 CLIP tokens (ragged against every block), d = 40
    inputs, inputs64 = attention_inputs(seed, (2, 2, n, 77, 40), dtype)
    check_attention_methods(backend, inputs, inputs64, dtype)


@pytest.mark.parametrize("d", [160, 512], ids=["d160", "vae_d512"])
@examples(2)
@given(seed=seeds, n=st.integers(1, 9), m=st.integers(1, 40))
def test_large_head_dims(backend, dtype, d, seed, n, m):
    # d = 160: SD 1.4's 16x16 level; d = 512: the VAE's single-head attention (flash uses 4-key blocks)
    inputs, inputs64 = attention_inputs(seed, (1, 1, n, m, d), dtype)
    check_attention_methods(backend, inputs, inputs64, dtype)


@examples(3)
@given(seed=seeds, n=st.integers(1, 30), m=st.integers(1, 30))
def test_value_dim_may_differ_from_head_dim(backend, dtype, seed, n, m):
    # dv = 50 > d = 40; flash splits 50 columns over 8 work-items of 7 (the last one's are ragged)
    inputs, inputs64 = attention_inputs(seed, (1, 2, n, m, 40), dtype, dv=50)
    check_attention_methods(backend, inputs, inputs64, dtype)


@pytest.mark.parametrize("method", METHODS)
def test_huge_scores_stay_finite(backend, dtype, method):
    # every score equal to 1e4: exp without subtracting the row max overflows (inf / inf = NaN);
    # the softmax is uniform, so the output is the mean of v's rows
    b, h, n, m, d = 1, 2, 9, 77, 40
    c = np.sqrt(1e4 / np.sqrt(d))  # q = k = c: scale * q.k = c^2 d / sqrt(d) = 1e4
    q = np.full((b, h, n, d), c, dtype=dtype)
    v, v64 = rounded(random_array(3, (b, h, m, d)), dtype)
    out = backend.to_numpy(backend.attention(backend.asarray(q), backend.asarray(q[:, :, :1].repeat(m, 2)),
                                             backend.asarray(v), method=method))
    expected = np.broadcast_to(v64.mean(axis=2, keepdims=True), (b, h, n, d))
    assert_matches(out, expected, dtype)


@examples(4)
@given(seed=seeds, shape=shapes)
def test_scores_of_size_1e3_stay_finite_and_accurate(backend, dtype, seed, shape):
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=1e3)
    for method in METHODS:
        out = backend.to_numpy(backend.attention(*(backend.asarray(x) for x in inputs), method=method))
        assert np.all(np.isfinite(out)), method
    check_attention_methods(backend, inputs, inputs64, dtype)


@examples()
@given(seed=seeds, rows=st.tuples(st.integers(1, 3), st.integers(1, 20)), m=st.integers(1, 300),
       scale=scales, offset=st.sampled_from([0.0, -50.0, 1e3]))
def test_softmax_stats_is_row_max_and_row_sum_of_exp(backend, dtype, seed, rows, m, scale, offset):
    # M from 1 (most of the 64 work-items of a row hold no column) to 300 (each reduces ~5)
    a, a64 = rounded(random_array(seed, rows + (m,), scale=scale, offset=offset), dtype)
    stats = backend.to_numpy(ocl_attention.softmax_stats(backend.rt, backend.asarray(a)))
    expected = att.softmax_stats(a64)
    assert stats.shape == rows + (2,) and stats.dtype == np.float32
    np.testing.assert_array_equal(stats[..., 0], expected[..., 0])  # the max of the stored values is exact
    assert_matches(stats[..., 1], expected[..., 1], np.float32, name="row sum S")


@pytest.mark.parametrize("method", METHODS)
def test_launches_and_temporaries(backend, method):
    b, h, n, m, d, dv = 2, 3, 19, 23, 8, 5
    (q, k, v), _ = attention_inputs(0, (b, h, n, m, d), np.float16, dv=dv)
    args = [backend.asarray(x) for x in (q, k, v)]
    with backend.measure() as counted:
        out = backend.attention(*args, method=method)
    scores, stats = ((b, h, n, m), np.float32), ((b, h, n, 2), np.float32)
    expected = {
        "naive": (["attention_scores", "softmax_rows", "attention_pv"], [scores, scores]),
        "partial_softmax": (["attention_scores", "softmax_stats", "attention_pv_softmax"], [scores, stats]),
        "flash": (["flash_attention"], []),
    }[method]
    assert counted.kernels == expected[0] and counted.launches == len(expected[0])
    assert counted.temp_buffers == expected[1]
    assert counted.temp_bytes == sum(4 * np.prod(shape) for shape, _ in expected[1])
    assert out.shape == (b, h, n, dv) and out.dtype == np.float16


@pytest.mark.parametrize("d, block_k", [(40, 32), (80, 16), (160, 16), (512, 4)])
def test_flash_plan_fits_local_memory(d, block_k):
    plan = ocl_attention.flash_plan(d, d, local_mem_size=32 * 1024)
    assert plan.block_k == block_k
    assert plan.local_bytes <= ocl_attention.FLASH_LOCAL_BUDGET < 32 * 1024
    assert plan.cols_per_item * plan.threads_per_row >= d and plan.cols_per_item <= ocl_attention.FLASH_MAX_COLS
    assert plan.threads_per_row * plan.block_q == ocl_attention.FLASH_WG
    # a smaller device shrinks the key block; one that cannot hold even one key is told so
    assert ocl_attention.flash_plan(d, d, local_mem_size=plan.local_bytes - 1).block_k < block_k
    with pytest.raises(ValueError, match="use method='partial_softmax'"):
        ocl_attention.flash_plan(d, d, local_mem_size=4 * d)


# --------------------------------------------------------------------------- causal attention (CLIP)


@examples()
@given(seed=seeds, shape=shapes, scale=scales)
def test_causal_matches_the_reference(backend, dtype, seed, shape, scale):
    # N < M, N = M and N > M (rows n >= M see every key), ragged against every tile and block
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale)
    check_attention_methods(backend, inputs, inputs64, dtype, causal=True)


@examples(2)
@given(seed=seeds)
def test_causal_clip_text_encoder_shape(backend, dtype, seed):
    # CLIP ViT-L/14: 77 tokens, 12 heads of d = 64 (2 heads here); 77 is ragged against 16, 32, 64
    inputs, inputs64 = attention_inputs(seed, (1, 2, 77, 77, 64), dtype)
    check_attention_methods(backend, inputs, inputs64, dtype, causal=True)


@examples(2)
@given(seed=seeds, n=st.integers(1, 20), m=st.integers(1, 40))
def test_causal_large_head_dim(backend, dtype, seed, n, m):
    # d = 160: flash uses 4-row query blocks of 32 work-items each and 16-key blocks
    inputs, inputs64 = attention_inputs(seed, (1, 1, n, m, 160), dtype, dv=100)
    check_attention_methods(backend, inputs, inputs64, dtype, causal=True)


@pytest.mark.parametrize("method", METHODS)
def test_causal_masks_the_future_and_first_row_copies_v0(backend, method):
    # row 0 sees only key 0, so O[0] = V[0] whatever the scores; row n ignores keys > n: adding 100
    # to the last key's value changes only the last row, by 100 times that row's last weight
    (q, k, v), (q64, k64, _) = attention_inputs(5, (1, 2, 40, 40, 8), np.float32)
    v2 = v.copy()
    v2[:, :, -1] += 100.0
    out, out2 = (backend.to_numpy(backend.attention(*(backend.asarray(x) for x in (q, k, vv)), method=method,
                                                    causal=True)) for vv in (v, v2))
    np.testing.assert_allclose(out[:, :, 0], v[:, :, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[:, :, :-1], out2[:, :, :-1])
    scores = np.einsum("bhd,bhmd->bhm", q64[:, :, -1], k64) / np.sqrt(8)
    last_weight = np.exp(scores[..., -1] - scores.max(-1)) / np.exp(scores - scores.max(-1, keepdims=True)).sum(-1)
    np.testing.assert_allclose(out2[:, :, -1] - out[:, :, -1], 100 * last_weight[..., None] * np.ones(8), rtol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_causal_huge_scores_stay_finite(backend, method):
    # scores of size 1e4: a masked block whose max is -inf must not turn into exp(-inf + inf) = NaN
    (q, k, v), (q64, k64, v64) = attention_inputs(11, (1, 2, 70, 70, 40), np.float32, scale=1e4)
    out = backend.to_numpy(backend.attention(*(backend.asarray(x) for x in (q, k, v)), method=method, causal=True))
    assert np.all(np.isfinite(out))
    assert_matches(out, att.attention(q64, k64, v64, causal=True), np.float32,
                   rel_tol=attention_tolerance(q64, k64, np.float32))


def test_causal_flag_is_validated(backend):
    q = backend.asarray(np.ones((1, 1, 3, 8), np.float32))
    with pytest.raises(TypeError, match="causal: expected True or False, got 1"):
        backend.attention(q, q, q, causal=1)


@pytest.mark.parametrize("method", METHODS)
def test_causal_launches_and_temporaries_are_unchanged(backend, method):
    b, h, n, m, d = 1, 2, 21, 17, 8
    args = [backend.asarray(x) for x in attention_inputs(1, (b, h, n, m, d), np.float32)[0]]
    counts = []
    for causal in (False, True):
        with backend.measure() as counted:
            backend.attention(*args, method=method, causal=causal)
        counts.append((counted.kernels, counted.temp_buffers, counted.temp_bytes))
    assert counts[0] == counts[1]
    assert len(counts[1][0]) == (1 if method == "flash" else 3)

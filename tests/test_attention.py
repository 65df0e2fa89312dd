"""Attention, the paper's third idea: the reference's three attentions and the row softmax, then
every backend's naive, partially fused softmax and flash attention against the float64 reference.

The reference (reference/attention.py) against the definition row by row, the three functions
against each other in float64, the paper's N x 2 statistics (row max L, row sum S of
exp(A - L)) and their merge, which make the partially fused softmax possible, and the softmax
(normalized, overflow-free, float32 arithmetic for low-precision storage).

The backends (the ``backend`` fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes)
compute every method on the same rounded inputs as the float64 reference, within the dtype's bound
plus the conditioning of softmax (``helpers.attention_tolerance``): ragged N and M against every
tile and block, SD 1.4's head dims (40, 80, 160), the VAE's single head of 512, cross-attention
with 77 text tokens, a value dim unlike the head dim, huge scores (where exp without the row max
overflows), and causal attention (CLIP's text encoder), whose masked blocks must not turn into
exp(-inf + inf) = NaN. The GPU backends' statistics kernels are checked against the reference's
statistics, also with fully masked blocks. The row softmax op (A -> P of the naive attention)
runs on every backend too, against the reference's.

Example counts per backend (``given_for``): the OpenCL suite's counts for numpy and opencl, the
JAX suite's smaller ones for jax, whose Pallas kernels are interpreted (and compiled once per
shape) on a CPU. What each variant launches and stores is backend-specific:
tests/opencl/test_opencl_attention.py (launches, temporaries, the flash plan) and
tests/jax/test_jax_attention.py (the jaxpr, padding, block sizes, the kernels called directly).
"""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reference import attention as att
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import (
    ATTENTION_LENGTHS, ATTENTION_WORK, REL_TOL, assert_matches, attention_inputs, attention_shapes, attention_tolerance,
    check_attention_methods,
    check_low_precision_reference, given_for, random_array, rounded, scales, scales_for, seeds,
)

METHODS = ("naive", "partial_softmax", "flash")


# =========================================================================== the reference


reference_shapes = st.tuples(
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


@given(seed=seeds, shape=reference_shapes, scale=scales)
def test_naive_attention_matches_definition(seed, shape, scale):
    q, k, v = qkv(seed, shape, scale=np.sqrt(scale))
    s = 1 / np.sqrt(q.shape[-1])
    assert_close(att.attention(q, k, v), attention_by_rows(q, k, v, s), atol=1e-12, rtol=1e-12)


@given(seed=seeds, shape=reference_shapes, block=blocks, block_q=blocks, block_k=blocks, scale=scales)
def test_three_attentions_agree_in_float64(seed, shape, block, block_q, block_k, scale):
    q, k, v = qkv(seed, shape, scale=np.sqrt(scale))
    naive = att.attention(q, k, v)
    partial = att.attention_partial_softmax(q, k, v, block=block)
    flash = att.attention_flash(q, k, v, block_q=block_q, block_k=block_k)
    assert relative_frobenius_error(partial, naive) < 1e-12
    assert relative_frobenius_error(flash, naive) < 1e-12


@given(seed=seeds, shape=reference_shapes, block=blocks, scale=scales)
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


@given(seed=seeds, rows=st.integers(1, 5), cols=st.integers(1, 40), scale=scales)
def test_softmax_is_normalized_exp(seed, rows, cols, scale):
    x = random_array(seed, (rows, cols), scale=scale)
    y = att.softmax(x)
    assert_close(y.sum(-1), np.ones(rows), atol=1e-12, rtol=0)
    # ratios equal exp of differences (the defining property), checked where it is well-conditioned
    ref = np.exp(x - x.max(-1, keepdims=True))
    assert_close(y, ref / ref.sum(-1, keepdims=True), atol=1e-300, rtol=1e-12)
    assert_close(att.softmax(x.T, axis=0), y.T, atol=0, rtol=0)


def test_softmax_does_not_overflow():
    y = att.softmax(np.array([[1000.0, 1000.0, -1000.0]], np.float32))
    assert np.all(np.isfinite(y)) and abs(y[0, 0] - 0.5) < 1e-6


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_low_precision_softmax_is_fp32_arithmetic_rounded_to_storage(dtype, tol):
    check_low_precision_reference(att.softmax, dtype, tol)


# =========================================================================== every backend's softmax


#: OpenCL's softmax runs over the last axis only: rows of 1 to 300 (one work-group per row, ragged
#: against its work-items) under 0 to 2 leading axes. JAX: any axis of 1-D to 4-D arrays. numpy: both.
softmax_rows = st.builds(lambda lead, cols: (lead + (cols,), -1),
                         st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), st.integers(1, 300))
softmax_any_axis = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple).flatmap(
    lambda shape: st.tuples(st.just(shape), st.integers(-len(shape), len(shape) - 1)))
SOFTMAX_CASES = {"opencl": softmax_rows, "jax": softmax_any_axis, "numpy": st.one_of(softmax_rows, softmax_any_axis)}
#: |sum of a row - 1| at most: a few roundings of the storage dtype (bfloat16: 8 unit roundoffs)
SOFTMAX_SUM_ATOL = {"float32": 3e-5, "float16": 1e-3, "bfloat16": 8 * REL_TOL[np.dtype(ml_dtypes.bfloat16)]}


def test_softmax_matches_reference(backend, dtype):
    # scale 1e3 overflows exp unless the row maximum is subtracted (JAX's low-precision storage:
    # scales up to 10)
    @given_for(backend, jax=8, seed=seeds, case=SOFTMAX_CASES[backend.name],
               scale=scales_for(dtype) if backend.name == "jax" else scales)
    def check(seed, case, scale):
        shape, axis = case
        x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
        y = backend.to_numpy(backend.softmax(backend.asarray(x), axis))
        assert_matches(y, att.softmax(x64, axis), dtype, name=f"softmax axis={axis}")
        np.testing.assert_allclose(y.astype(np.float64).sum(axis=axis), 1.0, rtol=0,
                                   atol=SOFTMAX_SUM_ATOL[dtype.name])

    check()


@pytest.mark.parametrize("cols", [1, 2049, 4097])
def test_softmax_single_element_and_long_rows(backend, dtype, cols):
    x, x64 = rounded(random_array(5, (4, cols), scale=30.0), dtype)
    y = backend.to_numpy(backend.softmax(backend.asarray(x)))
    assert_matches(y, att.softmax(x64), dtype, name=f"softmax cols={cols}")
    if cols == 1:
        assert np.all(y == 1)


# =========================================================================== every backend's attention


#: (B, H, N, M, d): N and M from ``helpers.ATTENTION_LENGTHS`` (1 to 300, ragged against OpenCL's
#: 16 x 16 tiles and every flash block, several blocks in both directions at the longest) or any
#: integer up to 100; d in 8, 40, 80 (40, 80: SD 1.4's 64x64 and 32x32 levels; JAX pads 8 to 16).
#: B and H shrink for long N and M (``helpers.ATTENTION_WORK``).
shapes = attention_shapes()
#: multi-block in both directions for both flash kernels at d = 40 (OpenCL 16 x 32, JAX 64 x 64):
#: an explicit example of the tests that draw ``shapes``, whatever Hypothesis draws
MULTI_BLOCK = (1, 1, 257, 300, 40)


def test_attention_draws_cover_several_blocks_and_few_single_rows():
    """The ``shapes`` draws under the profile's settings (``ci``: 12, derandomized): N = M = 1 is
    rare, N and M reach 200 and more, some draw spans several JAX flash blocks (64) in both
    directions, and the work per draw stays bounded. MULTI_BLOCK spans several blocks of both
    flash kernels at d = 40 in both directions."""
    drawn = []

    @given(shape=shapes)
    def record(shape):
        drawn.append(shape)

    record()
    lengths = [(n, m) for _, _, n, m, _ in drawn]
    print("drawn (N, M):", lengths)
    assert sum(n == m == 1 for n, m in lengths) <= len(lengths) // 4, lengths
    assert sum(n == 1 or m == 1 for n, m in lengths) <= len(lengths) // 2, lengths
    assert max(n for n, _ in lengths) >= 200 and max(m for _, m in lengths) >= 200, lengths
    assert any(n > 128 and m > 128 for n, m in lengths), lengths  # 3+ JAX blocks of 64 both ways
    assert all(b * h * n * m <= max(ATTENTION_WORK, n * m) for b, h, n, m, _ in drawn), drawn
    assert set(ATTENTION_LENGTHS) >= {1, 7, 40, 77, 129, 257, 300}

    from backends.jax.attention import block_sizes, padded_dim
    from backends.opencl.attention import flash_plan  # pure Python: no OpenCL device needed

    _, _, n, m, d = MULTI_BLOCK
    plan = flash_plan(d, d + 10)
    assert n > 2 * plan.block_q and m > 2 * plan.block_k, plan
    block_q, block_k = block_sizes(n, m, padded_dim(d + 10))
    assert n > 2 * block_q and m > 2 * block_k, (block_q, block_k)


def test_three_methods_match_the_reference(backend, dtype):
    # dv = d + 10 (e.g. 50 against d = 40): JAX pads it to its own power of two, OpenCL's flash
    # splits it over work-items unevenly
    @example(seed=11, shape=MULTI_BLOCK, scale=1.0, dv_extra=10)
    @given_for(backend, jax=3, seed=seeds, shape=shapes, scale=scales, dv_extra=st.sampled_from([0, 10]))
    def check(seed, shape, scale, dv_extra):
        inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale, dv=shape[-1] + dv_extra)
        check_attention_methods(backend, inputs, inputs64, dtype)

    check()


def test_cross_attention_with_77_text_tokens(backend, dtype):
    # SD 1.4's cross-attention: M = 77 CLIP tokens (ragged against every block; JAX pads to 128
    # keys, 51 of them masked), d = 40
    @given_for(backend, n=3, jax=1, seed=seeds, queries=st.integers(1, 40))
    def check(seed, queries):
        inputs, inputs64 = attention_inputs(seed, (2, 2, queries, 77, 40), dtype)
        check_attention_methods(backend, inputs, inputs64, dtype)

    check()


@pytest.mark.parametrize("d", [160, 512], ids=["d160", "vae_d512"])
def test_large_head_dims(backend, dtype, d):
    # d = 160: SD 1.4's 16x16 level (OpenCL flash: 16-key blocks; JAX: padded to 256, 32-key blocks);
    # d = 512: the VAE's single-head attention (OpenCL flash: 4-key blocks; JAX: 16-key blocks, so
    # its M >= 17 spans at least two key blocks of the online softmax)
    @given_for(backend, n=2, jax=1, seed=seeds, queries=st.integers(1, 9),
               keys=st.integers(17 if backend.name == "jax" else 1, 40))
    def check(seed, queries, keys):
        inputs, inputs64 = attention_inputs(seed, (1, 1, queries, keys, d), dtype)
        check_attention_methods(backend, inputs, inputs64, dtype)

    check()


# JAX: dv = d + 10 is drawn in test_three_methods_match_the_reference (a kernel compile per shape)
@pytest.mark.backends("numpy", "opencl")
def test_value_dim_may_differ_from_head_dim(backend, dtype):
    # dv = 50 > d = 40; OpenCL's flash splits 50 columns over 8 work-items of 7 (the last one's are ragged)
    @given_for(backend, n=3, seed=seeds, queries=st.integers(1, 30), keys=st.integers(1, 30))
    def check(seed, queries, keys):
        inputs, inputs64 = attention_inputs(seed, (1, 2, queries, keys, 40), dtype, dv=50)
        check_attention_methods(backend, inputs, inputs64, dtype)

    check()


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
    assert_matches(out, expected, dtype, name=method)


def test_scores_of_size_1e3_stay_finite_and_accurate(backend, dtype):
    @given_for(backend, n=4, jax=1, seed=seeds, shape=shapes)
    def check(seed, shape):
        inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=1e3)
        for method in METHODS:
            out = backend.to_numpy(backend.attention(*(backend.asarray(x) for x in inputs), method=method))
            assert np.all(np.isfinite(out)), method
        check_attention_methods(backend, inputs, inputs64, dtype)

    check()


# --------------------------------------------------------------------------- causal attention (CLIP)


def test_causal_matches_the_reference(backend, dtype):
    # N < M, N = M and N > M (rows n >= M see every key), ragged against every tile and block. With
    # JAX's 64-row/key blocks, row block 0 has a fully masked key block 1 whenever M > 64 (the NaN
    # case of the statistics merge).
    @example(seed=6, shape=(1, 1, 100, 3, 8), scale=1e3)  # N > M: rows >= 3 see every key; huge scores
    @example(seed=12, shape=MULTI_BLOCK, scale=1.0)  # N < M, blocks above the diagonal in both kernels
    @example(seed=13, shape=(1, 1, 300, 129, 40), scale=10.0)  # N > M over several blocks
    @given_for(backend, jax=1, seed=seeds, shape=shapes, scale=scales)
    def check(seed, shape, scale):
        inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale)
        check_attention_methods(backend, inputs, inputs64, dtype, causal=True)

    check()


def test_causal_clip_text_encoder_shape(backend, dtype):
    # CLIP ViT-L/14: 77 tokens, 12 heads of d = 64 (2 heads here); 77 is ragged against 16, 32, 64
    # (with JAX's 64-row blocks, block 1 holds the last 13 rows and keys)
    @given_for(backend, n=2, jax=1, seed=seeds)
    def check(seed):
        inputs, inputs64 = attention_inputs(seed, (1, 2, 77, 77, 64), dtype)
        check_attention_methods(backend, inputs, inputs64, dtype, causal=True)

    check()


def test_causal_large_head_dim(backend, dtype):
    # d = 160, dv = 100: OpenCL's flash uses 4-row query blocks of 32 work-items each and 16-key blocks
    @given_for(backend, n=2, jax=1, seed=seeds, queries=st.integers(1, 20), keys=st.integers(1, 40))
    def check(seed, queries, keys):
        inputs, inputs64 = attention_inputs(seed, (1, 1, queries, keys, 160), dtype, dv=100)
        check_attention_methods(backend, inputs, inputs64, dtype, causal=True)

    check()


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
def test_causal_rows_ignore_later_keys(backend, method):
    # query i must not depend on keys or values j > i: change them all and compare exactly
    (q, k, v), _ = attention_inputs(11, (1, 1, 20, 20, 8), np.float32)
    k2, v2 = k.copy(), v.copy()
    k2[..., 10:, :] *= -3.0
    v2[..., 10:, :] += 100.0

    def run(k, v):
        return backend.to_numpy(backend.attention(backend.asarray(q), backend.asarray(k), backend.asarray(v),
                                                  method=method, causal=True))

    a, b = run(k, v), run(k2, v2)
    np.testing.assert_array_equal(a[..., :10, :], b[..., :10, :])
    assert not np.allclose(a[..., 10:, :], b[..., 10:, :])


@pytest.mark.parametrize("method", METHODS)
def test_causal_huge_scores_stay_finite(backend, method):
    # scores of size 1e4: a masked block whose max is -inf must not turn into exp(-inf + inf) = NaN
    (q, k, v), (q64, k64, v64) = attention_inputs(11, (1, 2, 70, 70, 40), np.float32, scale=1e4)
    out = backend.to_numpy(backend.attention(*(backend.asarray(x) for x in (q, k, v)), method=method, causal=True))
    assert np.all(np.isfinite(out))
    assert_matches(out, att.attention(q64, k64, v64, causal=True), np.float32,
                   rel_tol=attention_tolerance(q64, k64, np.float32))


@pytest.mark.parametrize("flag", [1, "yes"])
def test_causal_flag_is_validated(backend, flag):
    q = backend.asarray(np.ones((1, 1, 3, 8), np.float32))
    with pytest.raises(TypeError, match=f"causal: expected True or False, got {flag!r}"):
        backend.attention(q, q, q, causal=flag)


# --------------------------------------------------------------------------- the GPU backends' N x 2 statistics


def device_softmax_stats(backend, a):
    """The backend's statistics kernel (not an op of the interface) on the host array ``a``."""
    if backend.name == "opencl":
        from backends.opencl import attention as ocl_attention

        return backend.to_numpy(ocl_attention.softmax_stats(backend.rt, backend.asarray(a)))
    from backends.jax import attention as jax_attention

    return np.asarray(jax_attention.softmax_stats(backend.asarray(a), backend.interpret))


@pytest.mark.backends("opencl", "jax")
def test_softmax_stats_is_row_max_and_row_sum_of_exp(backend, dtype):
    # M from 1 (most of OpenCL's 64 work-items of a row hold no column) to 300 (each reduces ~5;
    # JAX: up to 5 column blocks merged online, the last one ragged and masked). The max is compared
    # exactly, so a running max that starts at 0 instead of -inf fails on negative rows.
    @example(seed=1, rows=(2, 5), m=150, scale=1.0, offset=-50.0)  # every row max negative, 3 blocks
    @given_for(backend, jax=3, seed=seeds, rows=st.tuples(st.integers(1, 3), st.integers(1, 20)),
               m=st.integers(1, 300), scale=scales, offset=st.sampled_from([0.0, -50.0, 1e3]))
    def check(seed, rows, m, scale, offset):
        a, a64 = rounded(random_array(seed, rows + (m,), scale=scale, offset=offset), dtype)
        stats = device_softmax_stats(backend, a)
        expected = att.softmax_stats(a64)
        assert stats.shape == rows + (2,) and stats.dtype == np.float32
        np.testing.assert_array_equal(stats[..., 0], expected[..., 0])  # the max of the stored values is exact
        assert_matches(stats[..., 1], expected[..., 1], np.float32, name="row sum S")

    check()


@pytest.mark.backends("opencl", "jax")
def test_softmax_stats_merge_fully_masked_blocks_without_nan(backend):
    # causally masked scores (-inf where column > row + shift): with JAX's 64-column blocks a row's
    # later blocks are all -inf (block max -inf); OpenCL's work-items whose strided columns are all
    # masked hold the empty statistics (-inf, 0); rows with row + shift < 0 are -inf entirely. The
    # reference gives L = -inf, S = 0 for those rows and the plain (L, S) of the visible keys for the
    # others; exp(-inf - (-inf)) = NaN anywhere in the merge poisons S.
    @given_for(backend, jax=2, seed=seeds, rows=st.integers(1, 20), m=st.integers(65, 200),
               shift=st.integers(-20, 5))
    def check(seed, rows, m, shift):
        a = random_array(seed, (rows, m)).astype(np.float32)
        a[np.arange(m)[None, :] > np.arange(rows)[:, None] + shift] = -np.inf
        stats = device_softmax_stats(backend, a)
        expected = att.softmax_stats(a.astype(np.float64))
        np.testing.assert_array_equal(stats[..., 0], expected[..., 0])
        assert np.all(np.isfinite(stats[..., 1])), "NaN or inf in the row sums"
        np.testing.assert_allclose(stats[..., 1], expected[..., 1], rtol=1e-5, atol=0)

    check()

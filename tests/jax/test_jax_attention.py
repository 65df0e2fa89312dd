"""JAX attention: naive (jnp), partially fused softmax (jnp scores + Pallas statistics and fused
P V kernels) and flash (one Pallas kernel) against the float64 reference, causal (CLIP) attention
of all three, the paper's N x 2 statistics (also with fully masked blocks), padding of head dims
and ragged N, M, and what each variant holds in memory (read from the jaxpr). On a CPU the Pallas
kernels run interpreted, so shapes stay small."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backends.jax import attention as jax_attention
from reference import attention as att

from ..helpers import (
    assert_matches, attention_inputs, attention_tolerance, check_attention_methods, examples,
    random_array, rounded, scales, seeds,
)

METHODS = ("naive", "partial_softmax", "flash")

shapes = st.tuples(
    st.integers(1, 2),             # B
    st.integers(1, 2),             # H
    st.integers(1, 100),           # N: ragged against every block
    st.integers(1, 100),           # M: ragged against every block (padded keys are masked)
    st.sampled_from([8, 40, 80]),  # d (40, 80: SD 1.4's 64x64 and 32x32 levels; 8 pads to 16)
)


# -- all three methods against the reference ----------------------------------------------------


@examples(3)
@given(seed=seeds, shape=shapes, scale=scales, dv_extra=st.sampled_from([0, 10]))
def test_three_methods_match_the_reference(backend, dtype, seed, shape, scale, dv_extra):
    # dv = d + 10 (e.g. 50 against d = 40) pads to its own power of two
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale, dv=shape[-1] + dv_extra)
    check_attention_methods(backend, inputs, inputs64, dtype)


@examples(1)
@given(seed=seeds, n=st.integers(1, 40))
def test_cross_attention_with_77_text_tokens(backend, dtype, seed, n):
    # SD 1.4's cross-attention: M = 77 CLIP tokens (padded to 128 keys, 51 of them masked), d = 40
    inputs, inputs64 = attention_inputs(seed, (1, 2, n, 77, 40), dtype)
    check_attention_methods(backend, inputs, inputs64, dtype)


@pytest.mark.parametrize("d", [160, 512], ids=["d160", "vae_d512"])
@examples(1)
@given(seed=seeds, n=st.integers(1, 9), m=st.integers(17, 40))
def test_large_head_dims(backend, dtype, d, seed, n, m):
    # d = 160 (SD 1.4's 16x16 level) pads to 256 with 32-key blocks; the VAE's d = 512 uses 16-key
    # blocks, so M >= 17 spans at least two key blocks of the online softmax
    inputs, inputs64 = attention_inputs(seed, (1, 1, n, m, d), dtype)
    check_attention_methods(backend, inputs, inputs64, dtype)


@examples(1)
@given(seed=seeds, n=st.integers(1, 40), m=st.integers(33, 100))
def test_flash_with_many_key_blocks(backend, dtype, seed, n, m):
    # 16-key blocks: 3 to 7 rounds of the online softmax, the last one ragged
    (q, k, v), (q64, k64, v64) = attention_inputs(seed, (1, 2, n, m, 40), dtype)
    out = jax_attention.attention_flash(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 40**-0.5,
                                        backend.interpret, block_q=16, block_k=16)
    assert_matches(np.asarray(out), att.attention(q64, k64, v64), dtype, rel_tol=attention_tolerance(q64, k64, dtype))


@pytest.mark.parametrize("blocks", [(8, 16), (16, 24)])
def test_flash_blocks_must_be_powers_of_two_of_at_least_16(blocks):
    x = jnp.ones((1, 1, 4, 8), jnp.float32)
    with pytest.raises(ValueError, match="power of two"):
        jax_attention.attention_flash(x, x, x, 1.0, True, block_q=blocks[0], block_k=blocks[1])


# -- causal attention (CLIP's text encoder) ------------------------------------------------------


@examples(1)
@given(seed=seeds, shape=shapes, scale=scales)
@example(seed=5, shape=(1, 2, 77, 77, 64), scale=1.0)  # CLIP ViT-L/14's text encoder: 77 tokens, d = 64
@example(seed=6, shape=(1, 1, 100, 3, 8), scale=1e3)  # N > M: rows >= 3 see every key; huge scores
def test_causal_methods_match_the_reference(backend, dtype, seed, shape, scale):
    # ragged N, M (N != M both ways). With 64-row/key blocks, row block 0 has a fully masked key
    # block 1 whenever M > 64 (the NaN case of the statistics merge); for N = M = 77 block 1 holds
    # the last 13 rows and keys.
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=scale)
    check_attention_methods(backend, inputs, inputs64, dtype, causal=True)


@pytest.mark.parametrize("blocks", [(32, 16), (16, 32)], ids=["tall_q_tiles", "wide_k_tiles"])
@examples(1)
@given(seed=seeds, n=st.integers(1, 70), m=st.integers(1, 70))
@example(seed=2, n=1, m=70)  # one query row: only key 0, in the first of up to 5 key blocks
def test_causal_flash_with_unequal_blocks(blocks, seed, n, m):
    # block_q > block_k: key blocks inside the loop bound that are fully masked for a tile's first
    # rows; block_q < block_k: the diagonal cuts the last key block. The loop bound skips the rest.
    (q, k, v), (q64, k64, v64) = attention_inputs(seed, (1, 2, n, m, 8), np.float32)
    out = jax_attention.attention_flash(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 8**-0.5, True,
                                        block_q=blocks[0], block_k=blocks[1], causal=True)
    assert_matches(np.asarray(out), att.attention(q64, k64, v64, causal=True), np.float32,
                   rel_tol=attention_tolerance(q64, k64, np.float32))


def test_causal_rows_ignore_later_keys(backend):
    # query i must not depend on keys or values j > i: change them all and compare exactly
    (q, k, v), _ = attention_inputs(11, (1, 1, 20, 20, 8), np.float32)
    k2, v2 = k.copy(), v.copy()
    k2[..., 10:, :] *= -3.0
    v2[..., 10:, :] += 100.0
    for method in METHODS:
        run = lambda k, v: backend.to_numpy(backend.attention(  # noqa: E731
            backend.asarray(q), backend.asarray(k), backend.asarray(v), method=method, causal=True))
        a, b = run(k, v), run(k2, v2)
        np.testing.assert_array_equal(a[..., :10, :], b[..., :10, :], err_msg=method)
        assert not np.allclose(a[..., 10:, :], b[..., 10:, :]), method


def test_causal_must_be_a_bool(backend):
    x = backend.asarray(np.ones((1, 1, 4, 8), np.float32))
    with pytest.raises(TypeError, match="causal: expected True or False"):
        backend.attention(x, x, x, causal="yes")


# -- large scores ---------------------------------------------------------------------------------


@examples(1)
@given(seed=seeds, shape=shapes)
def test_scores_of_size_1e3_stay_finite_and_accurate(backend, dtype, seed, shape):
    inputs, inputs64 = attention_inputs(seed, shape, dtype, scale=1e3)
    check_attention_methods(backend, inputs, inputs64, dtype)  # assert_matches rejects non-finite output


def test_equal_huge_scores_give_the_mean_of_v(backend, dtype):
    # every score equal to 1e4: exp without subtracting the row max overflows (inf / inf = NaN);
    # the softmax is uniform, so the output is the mean of v's rows
    b, h, n, m, d = 1, 2, 9, 77, 40
    c = np.sqrt(1e4 / np.sqrt(d))  # q = k = c: scale * q.k = c^2 d / sqrt(d) = 1e4
    q = np.full((b, h, n, d), c, dtype=dtype)
    v, v64 = rounded(random_array(3, (b, h, m, d)), dtype)
    expected = np.broadcast_to(v64.mean(axis=2, keepdims=True), (b, h, n, d))
    for method in METHODS:
        out = backend.attention(backend.asarray(q), backend.asarray(q[:, :, :1].repeat(m, 2)),
                                backend.asarray(v), method=method)
        assert_matches(backend.to_numpy(out), expected, dtype, name=method)


# -- the paper's statistics -----------------------------------------------------------------------


@examples(3)
@given(seed=seeds, rows=st.tuples(st.integers(1, 3), st.integers(1, 20)), m=st.integers(1, 300),
       scale=scales, offset=st.sampled_from([0.0, -50.0, 1e3]))
@example(seed=1, rows=(2, 5), m=150, scale=1.0, offset=-50.0)  # every row max negative, 3 blocks
def test_softmax_stats_is_row_max_and_row_sum_of_exp(backend, dtype, seed, rows, m, scale, offset):
    # M up to 300: up to 5 column blocks merged online, the last one ragged (masked). The max is
    # compared exactly, so a running max that starts at 0 instead of -inf fails on negative rows.
    a, a64 = rounded(random_array(seed, rows + (m,), scale=scale, offset=offset), dtype)
    stats = np.asarray(jax_attention.softmax_stats(backend.asarray(a), backend.interpret))
    expected = att.softmax_stats(a64)
    assert stats.shape == rows + (2,) and stats.dtype == np.float32
    np.testing.assert_array_equal(stats[..., 0], expected[..., 0])  # the max of the stored values is exact
    assert_matches(stats[..., 1], expected[..., 1], np.float32, name="row sum S")


@examples(2)
@given(seed=seeds, rows=st.integers(1, 20), m=st.integers(65, 200), shift=st.integers(-20, 5))
def test_softmax_stats_merge_fully_masked_blocks_without_nan(backend, seed, rows, m, shift):
    # causally masked scores (-inf where column > row + shift): with 64-column blocks a row's
    # later blocks are all -inf (block max -inf), and rows with row + shift < 0 are -inf entirely.
    # The reference gives L = -inf, S = 0 for those rows and the plain (L, S) of the visible keys
    # for the others; exp(-inf - (-inf)) = NaN anywhere in the merge poisons S.
    a = random_array(seed, (rows, m)).astype(np.float32)
    a[np.arange(m)[None, :] > np.arange(rows)[:, None] + shift] = -np.inf
    stats = np.asarray(jax_attention.softmax_stats(backend.asarray(a), backend.interpret))
    expected = att.softmax_stats(a.astype(np.float64))
    np.testing.assert_array_equal(stats[..., 0], expected[..., 0])
    assert np.all(np.isfinite(stats[..., 1])), "NaN or inf in the row sums"
    np.testing.assert_allclose(stats[..., 1], expected[..., 1], rtol=1e-5, atol=0)


# -- jit, block sizes, memory ---------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("method", METHODS)
def test_jit_through_the_backend(backend, method, causal):
    (q, k, v), (q64, k64, v64) = attention_inputs(7, (2, 1, 19, 23, 8), np.float16, dv=5)
    run = jax.jit(lambda q, k, v: backend.attention(q, k, v, method=method, causal=causal))
    out = run(*(backend.asarray(x) for x in (q, k, v)))
    assert out.shape == (2, 1, 19, 5) and out.dtype == np.float16
    assert_matches(np.asarray(out), att.attention(q64, k64, v64, causal=causal), np.float16)


def test_unknown_method_is_rejected():
    x = jnp.ones((1, 1, 4, 8), jnp.float32)
    with pytest.raises(ValueError, match="method"):
        jax_attention.attention(x, x, x, 1.0, "sparse", True)


def test_head_dims_pad_to_powers_of_two_and_blocks_shrink_with_them():
    assert [jax_attention.padded_dim(d) for d in (8, 40, 64, 80, 160, 512)] == [16, 64, 64, 128, 256, 512]
    # block <= 8192 / d_pad, within [16, 64]; no larger than N (or M) needs
    assert jax_attention.block_sizes(4096, 4096, 64) == (64, 64)
    assert jax_attention.block_sizes(4096, 77, 128) == (64, 64)
    assert jax_attention.block_sizes(256, 256, 256) == (32, 32)
    assert jax_attention.block_sizes(4096, 4096, 512) == (16, 16)
    assert jax_attention.block_sizes(3, 20, 64) == (16, 32)


def _equations_outside_kernels(jaxpr):
    """(primitive name, output aval) of every equation, recursing into jit bodies but not into the
    Pallas kernels (whose tiles may be N x M-sized for tiny N, M)."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield eqn.primitive.name, var.aval
        if eqn.primitive.name == "pallas_call":
            continue
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _equations_outside_kernels(inner)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("method", METHODS)
def test_which_n_by_m_arrays_exist(backend, method, causal):
    # N = M = 64 (and no other dim 64): an N x M intermediate is an aval with two dims of 64.
    # The causal mask must not change what is stored (it is built from iotas, inside the kernel
    # for flash; jnp's N x M iota/compare/select intermediates of partial_softmax are fused).
    (q, k, v), _ = attention_inputs(0, (1, 2, 64, 64, 8), np.float16)
    run = jax.jit(lambda q, k, v: backend.attention(q, k, v, method=method, causal=causal))
    closed = jax.make_jaxpr(run)(*(backend.asarray(x) for x in (q, k, v)))
    eqns = list(_equations_outside_kernels(closed.jaxpr))
    assert "pallas_call" in [name for name, _ in eqns] or method == "naive"
    n_by_m = [(name, aval) for name, aval in eqns if list(getattr(aval, "shape", ())).count(64) >= 2]
    # the causal mask of naive and partial_softmax: iota, compare and select of A, which XLA fuses
    # into one elementwise pass with the scaling; without causal there is no index array at all
    index_arrays = [name for name, aval in n_by_m if not jnp.issubdtype(aval.dtype, jnp.floating)]
    assert bool(index_arrays) == (causal and method != "flash"), index_arrays
    n_by_m = [(name, aval) for name, aval in n_by_m if jnp.issubdtype(aval.dtype, jnp.floating)]
    exps = [aval for name, aval in n_by_m if name == "exp"]
    if method == "flash":
        assert n_by_m == []  # only tiles inside the kernel
    elif method == "partial_softmax":
        # A is stored (float32) and fed to the kernels, but exp(A - L) is only formed tile by tile
        assert n_by_m and all(aval.dtype == jnp.float32 for _, aval in n_by_m)
        assert exps == []
    else:
        assert exps  # the naive softmax exponentiates the whole N x M score matrix

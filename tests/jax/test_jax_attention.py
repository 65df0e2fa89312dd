"""JAX attention: what only the JAX backend has. The flash kernel called with explicit block sizes
(many key blocks; unequal query and key blocks under the causal mask; blocks that are not powers
of two rejected), jit through the backend, the padding of head dims and the block sizes, and what
each variant holds in memory, read from the jaxpr (the paper's point: naive exponentiates the whole
N x M score matrix, the partially fused softmax stores only A, flash no N x M array at all).
On a CPU the Pallas kernels run interpreted, so shapes stay small.

Every method against the float64 reference, causal attention and the statistics kernel (also with
fully masked blocks) run on every backend in tests/test_attention.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backends import Optimizations, get_backend
from backends.jax import attention as jax_attention
from reference import attention as att

from ..helpers import (
    assert_matches, attention_inputs, attention_tolerance, equations_outside_kernels, examples, given_for,
    pallas_kernel_names, primitives_outside_kernels, seeds, triton_kernels_lowered_for_cuda,
)

pytestmark = pytest.mark.backends("jax")

METHODS = ("naive", "partial_softmax", "flash")


# -- the flash kernel with explicit block sizes ----------------------------------------------------


def test_flash_with_many_key_blocks(backend, dtype):
    # 16-key blocks: 3 to 7 rounds of the online softmax, the last one ragged
    @given_for(backend, n=1, seed=seeds, queries=st.integers(1, 40), keys=st.integers(33, 100))
    def check(seed, queries, keys):
        (q, k, v), (q64, k64, v64) = attention_inputs(seed, (1, 2, queries, keys, 40), dtype)
        out = jax_attention.attention_flash(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 40**-0.5,
                                            backend.interpret, block_q=16, block_k=16)
        assert_matches(np.asarray(out), att.attention(q64, k64, v64), dtype,
                       rel_tol=attention_tolerance(q64, k64, dtype))

    check()


@pytest.mark.parametrize("blocks", [(8, 16), (16, 24)])
def test_flash_blocks_must_be_powers_of_two_of_at_least_16(blocks):
    x = jnp.ones((1, 1, 4, 8), jnp.float32)
    with pytest.raises(ValueError, match="power of two"):
        jax_attention.attention_flash(x, x, x, 1.0, True, block_q=blocks[0], block_k=blocks[1])


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


def test_tensor_core_flash_cuts_head_dims_into_pieces_and_picks_measured_blocks():
    pieces = {d: jax_attention.head_dim_pieces(d, tensor_cores=True) for d in (8, 40, 64, 80, 160, 512)}
    assert pieces == {8: (16,), 40: (32, 16), 64: (64,), 80: (64, 16), 160: (128, 32), 512: (512,)}
    assert jax_attention.head_dim_pieces(40, tensor_cores=False) == (64,)  # float32: one padded piece
    assert jax_attention.flash_blocks(4096, 4096, 64, tensor_cores=True) == (64, 64, 4)
    assert jax_attention.flash_blocks(1024, 1024, 128, tensor_cores=True) == (64, 32, 4)
    assert jax_attention.flash_blocks(256, 256, 256, tensor_cores=True) == (128, 32, 8)
    assert jax_attention.flash_blocks(256, 256, 256, tensor_cores=False) == (32, 32, 8)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flash_head_dim_pieces_with_unequal_head_dims(dtype, causal):
    # d = 40 -> (32, 16) pieces of Q and K, dv = 80 -> (64, 16) accumulators and outputs
    (q, _, _), (q64, _, _) = attention_inputs(3, (1, 2, 37, 45, 40), dtype)
    (_, k, _), (_, k64, _) = attention_inputs(4, (1, 2, 37, 45, 40), dtype)
    (_, _, v), (_, _, v64) = attention_inputs(5, (1, 2, 37, 45, 80), dtype)
    out = jax_attention.attention_flash(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 40**-0.5, True,
                                        block_q=16, block_k=16, causal=causal)
    assert out.shape == (1, 2, 37, 80) and out.dtype == dtype
    assert_matches(np.asarray(out), att.attention(q64, k64, v64, causal=causal), np.dtype(dtype),
                   rel_tol=attention_tolerance(q64, k64, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flash_reads_and_writes_the_heads_in_place_in_either_layout(dtype, causal):
    # three heads of d = 40 side by side in (B, N, H, d): a piece reaching past column 40 lies in
    # the next head's columns (or, for the last head, past the array), so an unmasked load or
    # store would mix heads; N = 37 and M = 45 leave the last Q tile and key block ragged. (The
    # store's column mask is guarded on a GPU only: the interpreter drops writes past a block's
    # edge, and the next head's program, run later, overwrites its columns.)
    (q, k, v), (q64, k64, v64) = attention_inputs(7, (2, 3, 37, 45, 40), dtype)
    expected = att.attention(q64, k64, v64, causal=causal)
    for heads_axis, arrange in ((1, lambda x: x), (2, lambda x: x.swapaxes(1, 2))):
        out = jax_attention.attention_flash(*(jnp.asarray(arrange(x)) for x in (q, k, v)), 40**-0.5, True,
                                            block_q=16, block_k=16, causal=causal, heads_axis=heads_axis)
        assert out.shape == arrange(q).shape and out.dtype == dtype
        assert_matches(arrange(np.asarray(out)), expected, np.dtype(dtype), rel_tol=attention_tolerance(q64, k64, dtype))
    with pytest.raises(ValueError, match="heads_axis"):
        jax_attention.attention_flash(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 1.0, True, heads_axis=3)
    # the flash switch's entry on the network's layout (the sweep's in-place row) is the same kernel
    heads_last = [jnp.asarray(x.swapaxes(1, 2)) for x in (q, k, v)]
    out = jax_attention.attention_flash_heads_last(*heads_last, 40**-0.5, True, causal, "triton")
    assert_matches(np.asarray(out).swapaxes(1, 2), expected, np.dtype(dtype), rel_tol=attention_tolerance(q64, k64, dtype))
    with pytest.raises(ValueError, match="kernel: expected"):
        jax_attention.attention_flash_heads_last(*heads_last, 1.0, True, causal, "cuda")


def test_flash_has_no_copies_around_its_kernel():
    # (B, N, H, d) in, (B, N, H, dv) out, ragged N and M, d = 40 in pieces: one pallas_call and
    # no pad, concatenate, transpose or slice around it (v3 padded q, k, v and concatenated pieces)
    q, k, v = (x.swapaxes(1, 2) for x in attention_inputs(1, (1, 2, 37, 45, 40), np.float16)[0])
    run = jax.jit(lambda q, k, v: jax_attention.attention_flash(q, k, v, 0.1, True, heads_axis=2))
    names = [eqn.primitive.name for eqn in equations_outside_kernels(jax.make_jaxpr(run)(q, k, v).jaxpr)]
    assert names.count("pallas_call") == 1
    assert not {"pad", "concatenate", "transpose", "slice", "dynamic_slice"} & set(names), names


def test_backend_flash_reads_an_ops_operands_in_place_and_a_networks_heads_last():
    # the op called alone: its (B, H, N, d) operands straight into the kernel, no transpose; inside
    # a network program: swapped to the projections' (B, N, H, d), which XLA folds into the
    # network's own head transposes. Both give the reference's values and are counted.
    (q, k, v), (q64, k64, v64) = attention_inputs(2, (1, 2, 37, 45, 40), np.float16)
    q, k, v = (jnp.asarray(x) for x in (q, k, v))
    expected = att.attention(q64, k64, v64)
    backend = get_backend("jax", optimizations=Optimizations.none().with_(attention="flash"))

    def op(q, k, v):
        return backend.attention(q, k, v)

    def network(params, q, k, v):
        return backend.attention(q, k, v)

    transposes = {}
    for where, (program, args) in {"op": (jax.jit(op), (q, k, v)),
                                   "network": (backend.compile_network(network), ({}, q, k, v))}.items():
        backend.choices.clear()
        assert_matches(np.asarray(program(*args)), expected, np.float16, rel_tol=attention_tolerance(q64, k64, np.float16),
                       name=where)
        layout = "(B, H, N, d), the op's" if where == "op" else "(B, N, H, d), the linear layers'"
        assert backend.choices[("attention", "flash operands", layout)] == 1, where
        jaxpr = (program.jaxpr(*args) if where == "network" else jax.make_jaxpr(program)(*args)).jaxpr
        transposes[where] = primitives_outside_kernels(jaxpr).count("transpose")
    assert transposes == {"op": 0, "network": 4}  # q, k, v in and the output out
    with pytest.raises(ValueError, match="flash_heads_axis: expected one of"):
        jax_attention.attention(q, k, v, 0.1, "flash", True, flash_heads_axis=3)


@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
def test_kernels_lower_with_the_triton_backend(dtype_name):
    """The kernels pass the Pallas Triton lowering for "cuda" on the CPU
    (helpers.triton_kernels_lowered_for_cuda: masked loads and stores, dot operand dtypes, block
    shapes). Ragged N = 77 and M = 45, d = 40 in pieces; flash in both layouts and the partial
    softmax's two kernels in each form of its statistics."""
    pytest.importorskip("jax._src.lib.triton")
    dt = jnp.dtype(dtype_name)
    q, k = jnp.ones((2, 3, 77, 40), dt), jnp.ones((2, 3, 45, 40), dt)
    calls = {
        "flash (B, H, N, d)": (lambda q, k: jax_attention.attention_flash(q, k, k, 0.1, False), 1),
        "flash (B, N, H, d)": (lambda q, k: jax_attention.attention_flash(q.swapaxes(1, 2), k.swapaxes(1, 2),
                                                                           k.swapaxes(1, 2), 0.1, False,
                                                                           heads_axis=2), 1),
        "partial_softmax": (lambda q, k: jax_attention.attention_partial_softmax(q, k, k, 0.1, False), 2),
        "partial_softmax, stats in the scores kernel": (
            lambda q, k: jax_attention.attention_partial_softmax(q, k, k, 0.1, False, stats="scores"), 2),
    }
    for name, (call, kernels) in calls.items():
        assert triton_kernels_lowered_for_cuda(call, q, k) == kernels, name


# -- the partially fused softmax with its statistics in the scores kernel --------------------------


def test_partial_softmax_with_stats_in_the_scores_kernel(backend, dtype):
    # ragged N and M (padded rows, padded key columns in a 16-64 key block), d = 40 padded to 64
    # for the scores kernel's dot; causal: blocks above the diagonal fully masked for some rows
    @given_for(backend, n=2, seed=seeds, queries=st.integers(1, 70), keys=st.integers(1, 100), causal=st.booleans())
    @example(seed=0, queries=70, keys=70, causal=True)
    def check(seed, queries, keys, causal):
        (q, k, v), (q64, k64, v64) = attention_inputs(seed, (1, 2, queries, keys, 40), dtype, scale=4.0)
        out = jax_attention.attention_partial_softmax(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), 40**-0.5,
                                                      backend.interpret, causal, stats="scores")
        assert_matches(np.asarray(out), att.attention(q64, k64, v64, 40**-0.5, causal=causal), dtype,
                       rel_tol=attention_tolerance(q64, k64, dtype))

    check()


@pytest.mark.parametrize("stats, kernels", [("reduction", ["softmax_stats", "attention_pv_softmax"]),
                                            ("scores", ["attention_scores_stats", "attention_pv_softmax"])])
def test_partial_softmax_kernels_by_where_the_stats_are_formed(stats, kernels):
    # "reduction": jnp forms A (one N x M product outside the kernels), a kernel reduces it;
    # "scores": A comes out of the first kernel, so nothing N x M is computed outside them
    q = jnp.ones((1, 2, 64, 8), jnp.float16)
    closed = jax.make_jaxpr(lambda q: jax_attention.attention_partial_softmax(q, q, q, 0.1, True, stats=stats))(q)
    assert pallas_kernel_names(closed.jaxpr) == kernels
    products = [eqn for eqn in equations_outside_kernels(closed.jaxpr) if eqn.primitive.name == "dot_general"]
    assert len(products) == (1 if stats == "reduction" else 0)
    with pytest.raises(ValueError, match="stats: expected one of"):
        jax_attention.attention_partial_softmax(q, q, q, 0.1, True, stats="kernel")


def test_backend_option_partial_softmax_stats():
    from backends.jax.backend import JaxBackend

    with pytest.raises(ValueError, match="partial_softmax_stats: expected one of"):
        JaxBackend(partial_softmax_stats="fused")
    (q, k, v), (q64, k64, v64) = attention_inputs(3, (1, 2, 20, 30, 16), np.float32)
    backend = JaxBackend(partial_softmax_stats="scores")
    out = backend.attention(*(backend.asarray(x) for x in (q, k, v)), method="partial_softmax")
    assert_matches(np.asarray(out), att.attention(q64, k64, v64), np.float32, rel_tol=attention_tolerance(q64, k64, np.float32))
    run = jax.jit(lambda q: backend.attention(q, q, q, method="partial_softmax"))
    assert pallas_kernel_names(jax.make_jaxpr(run)(q).jaxpr) == ["attention_scores_stats", "attention_pv_softmax"]


@pytest.mark.parametrize("head_dim, form", [(40, "scores"), (80, "scores"), (96, "reduction"), (160, "reduction")])
def test_backend_default_partial_softmax_stats_by_head_dim(head_dim, form):
    """The default, "auto", forms the statistics in the scores kernel up to head dim 80 (measured
    faster there) and in the reduction kernel above; each call's form is counted and run."""
    from backends.jax.backend import JaxBackend

    backend = JaxBackend()
    assert backend.partial_softmax_stats == "auto"
    q = jnp.ones((1, 1, 16, head_dim), jnp.float16)
    run = jax.jit(lambda q: backend.attention(q, q, q, method="partial_softmax"))
    names = pallas_kernel_names(jax.make_jaxpr(run)(q).jaxpr)
    assert names == ["attention_scores_stats" if form == "scores" else "softmax_stats", "attention_pv_softmax"]
    assert backend.choices[("attention", "partial softmax statistics", form)] == 1
    assert JaxBackend(partial_softmax_stats="reduction").partial_softmax_stats == "reduction"
    with pytest.raises(ValueError, match="partial_softmax_stats: expected"):
        jax_attention.partial_softmax_stats_for(head_dim, "fused")


def _equations_outside_kernels(jaxpr):
    """(primitive name, output aval) of every equation outside the Pallas kernels (whose tiles may
    be N x M-sized for tiny N, M)."""
    for eqn in equations_outside_kernels(jaxpr):
        for var in eqn.outvars:
            yield eqn.primitive.name, var.aval


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
    # the causal mask where jnp forms A (naive, and the partial softmax's "reduction" form): iota,
    # compare and select of A, which XLA fuses into one elementwise pass with the scaling; flash
    # and the "scores" form (the default at d = 8) mask inside their kernels; without causal
    # there is no index array at all
    jnp_scores = method == "naive" or (method == "partial_softmax" and jax_attention.partial_softmax_stats_for(
        q.shape[-1], backend.partial_softmax_stats) == "reduction")
    index_arrays = [name for name, aval in n_by_m if not jnp.issubdtype(aval.dtype, jnp.floating)]
    assert bool(index_arrays) == (causal and jnp_scores), index_arrays
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

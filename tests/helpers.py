"""Helpers shared by the test modules: seeded arrays and hypothesis strategies.

Arrays always come from a seeded generator (never from raw float strategies, never zeros);
hypothesis draws the seed, the shape and the scale.
"""

import math
import os

import ml_dtypes
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import attention as ref_attention
from reference import ops
from reference.numerics import assert_close, relative_frobenius_error

#: True under the thorough profile: tests may draw larger shapes.
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "thorough"

seeds = st.integers(min_value=0, max_value=2**32 - 1)
#: Input scales across six orders of magnitude (kernels must not assume unit-scale data).
scales = st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3])


def random_array(seed: int, shape, scale: float = 1.0, dtype=np.float64, offset: float = 0.0):
    """Normal(offset, scale^2) values from a seeded generator."""
    rng = np.random.default_rng(seed)
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)



def examples(n: int | None = None):
    """Hypothesis settings for a slower test: ``n`` examples under the ``ci`` profile (10 n under
    ``thorough``); None keeps the profile's count."""
    return settings() if n is None else settings(max_examples=10 * n if THOROUGH else n)


def given_for(backend, n: int | None = None, jax: int | None = None, **strategies):
    """``@given(**strategies)`` with a number of examples chosen per backend, for a check defined
    inside a cross-backend test and called there:

        def test_softmax_matches_reference(backend, dtype):
            @given_for(backend, n=12, jax=3, seed=seeds, shape=shapes)
            def check(seed, shape):
                x, x64 = rounded(random_array(seed, shape), dtype)
                assert_matches(backend.to_numpy(backend.softmax(backend.asarray(x))), ops.softmax(x64), dtype)
            check()

    ``n`` examples for numpy and opencl (None: the profile's count), ``jax`` for the JAX backend,
    whose Pallas kernels compile (or, on a CPU, are interpreted) once per drawn shape; both times 10
    under the ``thorough`` profile. Hypothesis fixes a test's settings when it is decorated, so a
    per-backend count needs the check to be decorated inside the test."""
    count = jax if (backend.name == "jax" and jax is not None) else n

    def decorate(check):
        return examples(count)(given(**strategies)(check))

    return decorate


#: Relative Frobenius bound against the float64 reference on the same rounded inputs.
#: fp32: a few ulps of accumulated rounding; fp16 storage: ~ the fp16 unit roundoff (4.9e-4) times a few.
#: bfloat16 storage (JAX): unit roundoff 3.9e-3, so a few times that.
REL_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 3e-3, np.dtype(ml_dtypes.bfloat16): 2e-2}


#: The absolute resolution of each storage dtype near zero: values below the smallest normal number
#: keep only this absolute precision. fp16: its subnormal spacing 2^-24 (6e-8); fp32: its smallest
#: normal 2^-126, since GPUs may flush fp32 subnormals to zero.
STORAGE_FLOOR = {np.dtype(np.float32): float(np.finfo(np.float32).tiny), np.dtype(np.float16): 2.0**-24,
                 np.dtype(ml_dtypes.bfloat16): float(np.finfo(np.float32).tiny)}


def assert_matches(actual, expected, dtype, rel_tol=None, name="output"):
    """``actual`` (numpy, the backend's result) against ``expected`` (float64 reference computed on the
    same rounded inputs): relative Frobenius error within the dtype's bound, and every element within
    atol = bound * max|expected| + rtol = 20 * bound (so no NaN or single bad element hides in the norm).
    Both allow the storage's absolute floor (STORAGE_FLOOR) for outputs too small to be normal numbers."""
    dtype = np.dtype(dtype)
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values (an unwritten, poisoned element?)"
    if expected.size and not np.any(expected):
        # e.g. a one-element GroupNorm slab without bias, or an output that reads only padding:
        # the relative error is undefined, and the exact answer is 0
        assert not np.any(actual), f"{name}: expected exact zeros"
        return
    tol = REL_TOL[dtype] if rel_tol is None else rel_tol
    floor = STORAGE_FLOOR[dtype]
    err = float(np.linalg.norm(actual.astype(np.float64) - expected))
    allowed = tol * float(np.linalg.norm(expected)) + np.sqrt(expected.size) * floor
    assert err <= allowed, f"{name}: error norm {err:.3e} > {allowed:.3e} (relative bound {tol:.1e})"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    assert_close(actual, expected, atol=tol * scale + floor, rtol=20 * tol, name=name)


def rounded(x, dtype):
    """x rounded to the storage dtype, and the same values in float64 (the reference's input)."""
    low = np.asarray(x).astype(dtype)
    return low, low.astype(np.float64)


# --------------------------------------------------------------------------- GroupNorm test helpers


def affine_params(seed, c, dtype, with_weight, with_bias):
    """((weight, weight64) or (None, None), (bias, bias64) or (None, None)), rounded to dtype."""
    w = rounded(random_array(seed + 1, (c,), offset=1.0), dtype) if with_weight else (None, None)
    b = rounded(random_array(seed + 2, (c,)), dtype) if with_bias else (None, None)
    return w, b


def to_device(backend, a):
    """backend.asarray(a), passing None through (an absent weight or bias)."""
    return None if a is None else backend.asarray(a)


def group_norm_reference(x64, groups, w64, b64, eps, silu):
    y = ops.group_norm(x64, groups, w64, b64, eps)
    return ops.silu(y) if silu else y


def group_norm_tolerance(x64, groups, eps, dtype):
    """The dtype's bound plus the problem's conditioning: normalizing amplifies the float32 rounding of
    values of size max|x_g| by 1 / sqrt(var_g + eps), which is large when a slab's values nearly agree
    (e.g. two elements 0.300 and 0.301)."""
    slabs = x64.reshape(x64.shape[0], groups, -1)
    kappa = np.max(np.abs(slabs).max(-1) / np.sqrt(slabs.var(-1) + eps))
    return REL_TOL[np.dtype(dtype)] + 8 * 2.0**-24 * kappa


# --------------------------------------------------------------------------- attention test helpers


#: Query and key lengths (N, M) of the attention draws. The flash kernels' blocks at SD's d = 40:
#: OpenCL 64 query rows x 64 keys (``opencl.attention.flash_plan``), JAX 64 x 64
#: (``jax.attention.block_sizes``); the score/PV tiles are 16 x 16. So the list mixes one row or key,
#: sizes inside one block, exact block sizes and one past them (64, 65, 129), CLIP's 77 tokens, and a
#: few hundred (257, 300: 5 JAX blocks, 5 OpenCL row and key blocks), all ragged against
#: some block; half the draws are any integer in 2..300 instead. Not integers(1, 300) alone:
#: Hypothesis starts from and shrinks toward the smallest value and favours small integers, so
#: N = M = 1 would be common. The first (simplest) draw is 77 x 77, CLIP's length.
ATTENTION_LENGTHS = (77, 1, 7, 16, 40, 64, 65, 129, 257, 300)
attention_lengths = st.one_of(st.sampled_from(ATTENTION_LENGTHS), st.integers(2, 300))
#: most query-key pairs B * H * N * M of a draw: B and H shrink (to 1 for the longest N and M), so
#: that a draw costs at most about as much as a (2, 3, 100, 100) one or a single (300, 300) head
ATTENTION_WORK = 2 * 3 * 100 * 100


@st.composite
def attention_shapes(draw, lengths=attention_lengths, head_dims=(8, 40, 80)):
    """(B, H, N, M, d) with N and M from ``lengths``, B <= 2, H <= 3 and B * H * N * M at most
    ATTENTION_WORK (or N * M, with B = H = 1, where N * M alone is more)."""
    n, m = draw(lengths), draw(lengths)
    d = draw(st.sampled_from(head_dims))
    pairs = max(1, ATTENTION_WORK // (n * m))
    b = draw(st.integers(1, min(2, pairs)))
    h = draw(st.integers(1, min(3, pairs // b)))
    return b, h, n, m, d


def attention_inputs(seed, shape, dtype, scale=1.0, dv=None):
    """Rounded q, k (entries of size sqrt(scale), so the scores are of size ~scale) and v, and the
    same values in float64."""
    b, h, n, m, d = shape
    q, q64 = rounded(random_array(seed, (b, h, n, d), scale=np.sqrt(scale)), dtype)
    k, k64 = rounded(random_array(seed + 1, (b, h, m, d), scale=np.sqrt(scale)), dtype)
    v, v64 = rounded(random_array(seed + 2, (b, h, m, dv or d)), dtype)
    return (q, k, v), (q64, k64, v64)


def attention_tolerance(q64, k64, dtype):
    """The dtype's bound, plus the conditioning of softmax: an error e in a score is a relative error
    e in its weight, and a float32 dot product carries an error of a few eps * scale * sum|q k|. We
    allow 16 eps (2^-20) times the largest such sum; for unit-size scores it adds < 1e-5."""
    bound = np.max(np.einsum("bhnd,bhmd->bhnm", np.abs(q64), np.abs(k64))) / np.sqrt(q64.shape[-1])
    return REL_TOL[np.dtype(dtype)] + 2.0**-20 * bound


def check_attention_methods(backend, inputs, inputs64, dtype, causal=False,
                            methods=("naive", "partial_softmax", "flash")):
    """Every method (with ``causal``) against reference.attention.attention in float64."""
    expected = ref_attention.attention(*inputs64, causal=causal)
    tol = attention_tolerance(inputs64[0], inputs64[1], dtype)
    label = "causal " if causal else ""
    for method in methods:
        out = backend.attention(*(backend.asarray(x) for x in inputs), method=method, causal=causal)
        assert out.shape == expected.shape and out.dtype == dtype, method
        assert_matches(backend.to_numpy(out), expected, dtype, rel_tol=tol, name=f"{label}{method}")


def check_fused_gelu_accuracy(backend, tail_rel_tol):
    """The fused GELU in float32 over [-8, 8] (4001 points, so several ragged blocks): within 2e-6 of
    the reference in both forms, and in the negative tail, where x/2 (1 + erf(x / sqrt 2)) cancels,
    within ``tail_rel_tol`` relative (an fp32 1 + erf(...) is 5% off at x = -5). The tail bound
    allows the float32 rounding of -x/sqrt 2, amplified by 2 t^2 at t = x / sqrt 2."""
    x = np.linspace(-8, 8, 4001).astype(np.float32)
    x64 = x.astype(np.float64)
    y = backend.to_numpy(backend.gelu(backend.asarray(x), fused=True)).astype(np.float64)
    assert np.max(np.abs(y - ops.gelu(x64))) < 2e-6
    approx = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=True, fused=True))
    assert np.max(np.abs(approx - ops.gelu(x64, approximate=True))) < 2e-6
    tail = x < -2
    assert np.max(np.abs(y[tail] / ops.gelu(x64[tail]) - 1)) < tail_rel_tol


# --------------------------------------------------------------------------- convolution test helpers


#: Winograd F(m x m, 3 x 3): relative Frobenius bound vs float64 on the same rounded inputs, per
#: storage dtype and tile m (issue #2; tests/test_winograd.py checks the reference's medians against
#: it, the backends each call). bfloat16 (JAX), chosen from measurement: the reference's emulation
#: over 40 layers (SD-like and ragged, scales 0.1 to 10, bias, padding 0/1) gives medians 5.0e-3,
#: 2.8e-2, 5.7e-2 and maxima 5.8e-3, 3.4e-2, 7.0e-2 for m = 2, 4, 6: 8.0x the float16 medians, the
#: ratio of the unit roundoffs (2^-8 / 2^-11), since every storage rounding (V, U, M, y) is 8x
#: coarser. The bounds are ~2.5x those maxima (float16's are ~6x its maxima).
WINOGRAD_BOUNDS = {
    np.dtype(np.float32): {2: 3e-6, 4: 2e-5, 6: 5e-5},
    np.dtype(np.float16): {2: 4e-3, 4: 2.5e-2, 6: 6e-2},
    np.dtype(ml_dtypes.bfloat16): {2: 1.5e-2, 4: 8e-2, 6: 1.5e-1},
}


def conv_inputs(seed, x_shape, w_shape, dtype, scale=1.0, bias=True, w_scale=1.0):
    """A convolution's (x, w, b) rounded to ``dtype`` (x and b of size ``scale``, w of size
    ``w_scale``; b None without ``bias``), and the same values in float64."""
    x, x64 = rounded(random_array(seed, x_shape, scale), dtype)
    w, w64 = rounded(random_array(seed + 1, w_shape, w_scale), dtype)
    b, b64 = rounded(random_array(seed + 2, (w_shape[0],), scale), dtype) if bias else (None, None)
    return (x, w, b), (x64, w64, b64)


# --------------------------------------------------------------------------- helpers of the per-idea modules (T1)


#: float16 overflows past 65504: low-precision inputs of ops whose outputs grow with them stay below that
LOW_PRECISION_SCALES = st.sampled_from([1e-3, 0.1, 1.0, 10.0])


def scales_for(dtype):
    """The input scales to draw for a storage dtype: all of ``scales`` for float32, at most 10 for
    float16 and bfloat16."""
    return scales if np.dtype(dtype) == np.float32 else LOW_PRECISION_SCALES


def check_low_precision_reference(op, dtype, tol):
    """A reference op on float32 / float16 input keeps the dtype, and is within ``tol`` (relative
    Frobenius) of the same op on the float64 values: float32 arithmetic, rounded to the storage."""
    x = random_array(7, (4, 16), scale=3.0, dtype=dtype)
    y = op(x)
    assert y.dtype == dtype
    exact = op(x.astype(np.float64))
    assert relative_frobenius_error(y, exact) < tol


def equations_outside_kernels(jaxpr):
    """Every equation of a jaxpr and of its nested jaxprs (jit bodies, ...), not looking inside
    pallas_call kernels (the pallas_call equation itself is included)."""
    for eqn in jaxpr.eqns:
        yield eqn
        if eqn.primitive.name == "pallas_call":
            continue
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    yield from equations_outside_kernels(inner)


def pallas_kernel_names(jaxpr) -> list[str]:
    """The names of a jaxpr's Pallas kernels (``pallas_call``'s ``name``), in program order."""
    return [eqn.params["name"] for eqn in equations_outside_kernels(jaxpr) if eqn.primitive.name == "pallas_call"]


def primitives_outside_kernels(jaxpr) -> list[str]:
    """Names of the primitives of ``equations_outside_kernels``."""
    return [eqn.primitive.name for eqn in equations_outside_kernels(jaxpr)]


#: primitives a fused JAX op may run outside its kernel: layout only (views, the ragged pad and crop, nested jit)
JAX_LAYOUT_PRIMITIVES = {"jit", "pjit", "reshape", "pad", "slice", "squeeze", "broadcast_in_dim",
                         "convert_element_type", "copy"}


def assert_one_pallas_call(fn, *args, calls: int = 1, also_allowed: frozenset = frozenset()):
    """``jax.jit(fn)(*args)`` traces to exactly ONE pallas_call (``calls`` of them, where a form
    has more) and no math outside them (no reduction, no product: only JAX_LAYOUT_PRIMITIVES and
    ``also_allowed``, e.g. the transposes a channels-last form expects XLA to fold)."""
    import jax

    names = primitives_outside_kernels(jax.make_jaxpr(jax.jit(fn))(*args).jaxpr)
    assert names.count("pallas_call") == calls, names
    outside = [n for n in names if n != "pallas_call"]
    assert not [n for n in outside if n.startswith("reduce") or n in ("argmax", "cumsum", "dot_general")], names
    math_outside = sorted(set(outside) - JAX_LAYOUT_PRIMITIVES - set(also_allowed))
    assert not math_outside, f"math outside the kernel: {math_outside}"


def triton_kernels_lowered_for_cuda(fn, *args) -> int:
    """How many Pallas Triton kernels ``jax.jit(fn)(*args)`` has once lowered for "cuda". The
    cross-platform lowering runs the Pallas Triton lowering on a machine without a GPU (power-of-two
    tensors, masked loads and stores, supported primitives) but does not compile the PTX; callers
    skip without the Triton backend (``pytest.importorskip("jax._src.lib.triton")``)."""
    import jax

    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    return text.count("__gpu$xla.gpu.triton")


@st.composite
def shape_and_new_shape(draw):
    """A shape, and another with the same element count: its sizes reordered, some merged."""
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    order = draw(st.permutations(shape))
    merge = draw(st.integers(0, len(order)))
    new = ((math.prod(order[:merge]),) if merge else ()) + tuple(order[merge:])
    return shape, new or (1,)


@st.composite
def shape_and_axes(draw):
    """2 to 4 sizes ragged against OpenCL's 16 x 16 transpose tiles (some spanning two tiles), and a
    permutation of the axes."""
    shape = tuple(draw(st.lists(st.integers(1, 24), min_size=2, max_size=4)))
    return shape, tuple(draw(st.permutations(range(len(shape)))))


#: a concatenation's inputs: 1 to 4 arrays of shape (2, 3, 4, 5) except along ``axis`` (sizes 1 to 5)
concat_sizes = st.lists(st.integers(1, 5), min_size=1, max_size=4)


def concat_parts(seed, sizes, axis, dtype):
    """Host arrays of shape (2, 3, 4, 5) with ``sizes[i]`` along ``axis``, of ``dtype``."""
    parts = []
    for i, size in enumerate(sizes):
        shape = [2, 3, 4, 5]
        shape[axis] = size
        parts.append(random_array(seed + i, tuple(shape)).astype(dtype))
    return parts

"""The plain-jnp ops of the JAX backend (backends/jax/ops.py, the unfused baselines) against the
float64 reference on the same rounded inputs, through the ``backend`` fixture, for float32,
float16 and bfloat16 storage.

Shapes are drawn freely (ragged, one-element groups and rows, 2-D to 5-D GroupNorm inputs), as
are seeds, scales and offsets; every op is also jitted through the backend. Normalizations add
their conditioning to the dtype's bound (values far from their mean lose float32 digits in
x - mean, whatever the algorithm).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import REL_TOL, assert_matches, examples, random_array, rounded, scales, seeds

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)
#: float16 overflows past 65504: keep its inputs (and outputs) below that
LOW_PRECISION_SCALES = st.sampled_from([1e-3, 0.1, 1.0, 10.0])


def scale_for(dtype, data):
    return data.draw(scales if dtype == np.float32 else LOW_PRECISION_SCALES)


def check(actual, expected, dtype, name, rel_tol=None):
    """assert_matches, except that an all-zero reference (a one-element group or row without bias
    normalizes to exactly 0) is compared exactly: its relative error is undefined."""
    actual = np.asarray(actual)
    if not np.any(expected):
        assert actual.dtype == dtype and np.array_equal(actual, expected), f"{name}: expected exact zeros"
    else:
        assert_matches(actual, expected, dtype, rel_tol=rel_tol, name=name)


def normalization_tolerance(slabs64, eps, dtype):
    """The dtype's bound plus the conditioning of normalizing: the float32 rounding of values of
    size max|x| is amplified by 1 / sqrt(var + eps), large when a slab's values nearly agree.
    ``slabs64``: (..., L), one normalized slab per row."""
    kappa = np.max(np.abs(slabs64).max(-1) / np.sqrt(slabs64.var(-1) + eps))
    return REL_TOL[np.dtype(dtype)] + 8 * 2.0**-24 * kappa


def on_device(backend, *arrays):
    return [None if a is None else backend.asarray(a) for a in arrays]


# ----------------------------------------------------------------------------------- normalization


@examples(8)
@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 7), min_size=0, max_size=3).map(tuple), offset=st.sampled_from([0.0, 3.0]),
       with_weight=st.booleans(), with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]), silu=st.booleans(),
       data=st.data())
def test_group_norm_matches_reference(backend, dtype, seed, n, groups, per, spatial, offset, with_weight,
                                      with_bias, eps, silu, data):
    c = groups * per
    scale = scale_for(dtype, data)
    x, x64 = rounded(random_array(seed, (n, c) + spatial, scale=scale, offset=offset * scale), dtype)
    w, w64 = rounded(random_array(seed + 1, (c,), offset=1.0), dtype) if with_weight else (None, None)
    b, b64 = rounded(random_array(seed + 2, (c,)), dtype) if with_bias else (None, None)
    y = backend.group_norm(*on_device(backend, x), groups, *on_device(backend, w, b), eps, fused=False, silu=silu)
    expected = ops.group_norm(x64, groups, w64, b64, eps)
    expected = ops.silu(expected) if silu else expected
    tol = normalization_tolerance(x64.reshape(n, groups, -1), eps, dtype)
    check(backend.to_numpy(y), expected, dtype, f"group_norm silu={silu}", rel_tol=tol)


def test_group_norm_variance_is_two_pass(backend):
    # mean 1e3, std 0.1: E[x^2] - E[x]^2 would lose every digit in float32 (and can go negative);
    # the centred variance keeps the error at the rounding of the float32 mean (3e-5 of 0.1).
    x = random_array(0, (2, 6, 21, 23), scale=0.1, offset=1e3).astype(np.float32)
    y = backend.to_numpy(backend.group_norm(backend.asarray(x), 3, fused=False))
    assert relative_frobenius_error(y, ops.group_norm(x.astype(np.float64), 3)) < 1e-3


@examples(8)
@given(seed=seeds, shape=shapes, offset=st.sampled_from([0.0, 3.0]), with_weight=st.booleans(),
       with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]), data=st.data())
def test_layer_norm_matches_reference(backend, dtype, seed, shape, offset, with_weight, with_bias, eps, data):
    scale = scale_for(dtype, data)
    c = shape[-1]
    x, x64 = rounded(random_array(seed, shape, scale=scale, offset=offset * scale), dtype)
    w, w64 = rounded(random_array(seed + 1, (c,), offset=1.0), dtype) if with_weight else (None, None)
    b, b64 = rounded(random_array(seed + 2, (c,)), dtype) if with_bias else (None, None)
    y = backend.layer_norm(*on_device(backend, x, w, b), eps)
    tol = normalization_tolerance(x64.reshape(-1, c), eps, dtype)
    check(backend.to_numpy(y), ops.layer_norm(x64, w64, b64, eps), dtype, "layer_norm", rel_tol=tol)


@examples(8)
@given(seed=seeds, shape=shapes, data=st.data())
def test_softmax_matches_reference(backend, dtype, seed, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x, x64 = rounded(random_array(seed, shape, scale=scale_for(dtype, data)), dtype)
    y = backend.to_numpy(backend.softmax(backend.asarray(x), axis))
    assert_matches(y, ops.softmax(x64, axis), dtype, name=f"softmax axis={axis}")
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=axis), 1.0, rtol=0, atol=8 * REL_TOL[np.dtype(dtype)])


# ----------------------------------------------------------------------------------- activations


@examples(8)
@given(seed=seeds, shape=shapes, approximate=st.booleans(), data=st.data())
def test_gelu_and_geglu_match_reference(backend, dtype, seed, shape, approximate, data):
    x, x64 = rounded(random_array(seed, shape[:-1] + (2 * shape[-1],), scale=scale_for(dtype, data)), dtype)
    y = backend.gelu(backend.asarray(x), approximate=approximate, fused=False)
    assert_matches(backend.to_numpy(y), ops.gelu(x64, approximate), dtype,
                   name=f"gelu approximate={approximate}")
    y = backend.geglu(backend.asarray(x), approximate=approximate, fused=False)
    assert_matches(backend.to_numpy(y), ops.geglu(x64, approximate), dtype,
                   name=f"geglu approximate={approximate}")


def test_gelu_is_the_erfc_form_and_approximate_the_tanh_form(backend):
    # the exact form to a few float32 ulps over [-10, 10] (1 + erf would cancel for x < 0), and the
    # two forms differ by up to 5e-4 (ops' own test): the float32 bound tells them apart
    x = np.linspace(-10, 10, 4001).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = backend.to_numpy(backend.gelu(backend.asarray(x), fused=False))
    approx = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=True, fused=False))
    assert np.max(np.abs(exact - ops.gelu(x64))) < 4e-6
    assert np.max(np.abs(approx - ops.gelu(x64, approximate=True))) < 4e-6
    negative = x64 < -3
    np.testing.assert_allclose(exact[negative], ops.gelu(x64)[negative], rtol=1e-4)  # relative, where tiny
    with pytest.raises(AssertionError):
        assert_matches(approx, ops.gelu(x64), np.float32)


@examples(8)
@given(seed=seeds, shape=shapes, data=st.data())
def test_silu_and_quick_gelu_match_reference(backend, dtype, seed, shape, data):
    x, x64 = rounded(random_array(seed, shape, scale=scale_for(dtype, data)), dtype)
    assert_matches(backend.to_numpy(backend.silu(backend.asarray(x))), ops.silu(x64), dtype, name="silu")
    assert_matches(backend.to_numpy(backend.quick_gelu(backend.asarray(x))), ops.quick_gelu(x64), dtype,
                   name="quick_gelu")


# ----------------------------------------------------------------------------------- matrix products


@examples(8)
@given(seed=seeds, lead=st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple),
       k=st.integers(1, 70), out=st.integers(1, 40), bias=st.booleans(), data=st.data())
def test_linear_matches_reference(backend, dtype, seed, lead, k, out, bias, data):
    scale = scale_for(dtype, data)
    x, x64 = rounded(random_array(seed, lead + (k,), scale=scale), dtype)
    w, w64 = rounded(random_array(seed + 1, (out, k), scale=1 / math.sqrt(k)), dtype)
    b, b64 = rounded(random_array(seed + 2, (out,), scale=scale), dtype) if bias else (None, None)
    y = backend.to_numpy(backend.linear(*on_device(backend, x, w, b)))
    assert_matches(y, ops.linear(x64, w64, b64), dtype, name="linear")


@examples(8)
@given(seed=seeds, n=st.integers(1, 2), c=st.integers(1, 6), o=st.integers(1, 9), h=st.integers(1, 13),
       w=st.integers(1, 13), k=st.sampled_from([(1, 1), (3, 3), (5, 5), (1, 3), (3, 2)]),
       stride=st.sampled_from([1, 2, (2, 1)]), ph=st.integers(0, 2), pw=st.integers(0, 2), bias=st.booleans(),
       data=st.data())
def test_conv2d_direct_matches_reference(backend, dtype, seed, n, c, o, h, w, k, stride, ph, pw, bias, data):
    scale = scale_for(dtype, data)
    h, w = max(h, k[0] - 2 * ph), max(w, k[1] - 2 * pw)  # the padded input must hold the kernel
    x, x64 = rounded(random_array(seed, (n, c, h, w), scale=scale), dtype)
    wt, wt64 = rounded(random_array(seed + 1, (o, c) + k, scale=1 / math.sqrt(c * k[0] * k[1])), dtype)
    b, b64 = rounded(random_array(seed + 2, (o,), scale=scale), dtype) if bias else (None, None)
    y = backend.conv2d(*on_device(backend, x, wt, b), stride=stride, padding=(ph, pw), method="direct")
    expected = ops.conv2d(x64, wt64, b64, stride=stride, padding=(ph, pw))
    out = backend.to_numpy(y)
    assert out.shape == expected.shape
    if not np.any(expected):  # every output reads only padding (e.g. 1x1 input, stride 2, padding 2)
        assert np.array_equal(out, np.zeros_like(out))
        return
    assert_matches(out, expected, dtype, name="conv2d")


@given(seed=seeds, shape=st.lists(st.integers(1, 5), min_size=4, max_size=4).map(tuple), s=st.integers(1, 3))
def test_upsample_nearest2d_is_exact(backend, dtype, seed, shape, s):
    x, x64 = rounded(random_array(seed, shape), dtype)
    y = backend.to_numpy(backend.upsample_nearest2d(backend.asarray(x), s))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.astype(np.float64), ops.upsample_nearest2d(x64, s))


# ----------------------------------------------------------------------------------- jit, precision, bad input


def test_every_op_jits_through_the_backend(backend, dtype):
    """One jax.jit over the backend's methods gives the eager results (validation runs at trace time)."""
    x, _ = rounded(random_array(0, (2, 4, 5, 6)), dtype)
    w, _ = rounded(random_array(1, (3, 4, 3, 3), scale=0.3), dtype)
    lin, _ = rounded(random_array(2, (7, 6), scale=0.4), dtype)
    vec, _ = rounded(random_array(3, (4,), offset=1.0), dtype)
    x, w, lin, vec = on_device(backend, x, w, lin, vec)

    def graph(x, w, lin, vec):
        return [backend.group_norm(x, 2, vec, vec, fused=False, silu=True), backend.layer_norm(x, vec[:1].repeat(6)),
                backend.softmax(x, 1), backend.gelu(x, fused=False), backend.geglu(x, fused=False),
                backend.silu(x), backend.quick_gelu(x), backend.linear(x, lin),
                backend.conv2d(x, w, stride=(1, 2), padding=1, method="direct"), backend.upsample_nearest2d(x, 2)]

    jitted = jax.jit(graph)(x, w, lin, vec)
    for name, a, b in zip(["group_norm", "layer_norm", "softmax", "gelu", "geglu", "silu", "quick_gelu", "linear",
                           "conv2d", "upsample"], jitted, graph(x, w, lin, vec)):
        assert a.dtype == b.dtype == dtype, name
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=REL_TOL[dtype],
                                   atol=REL_TOL[dtype] * float(jnp.max(jnp.abs(b.astype(jnp.float32)))), err_msg=name)


def test_float32_products_are_not_tf32(backend):
    # Operands with 16+ significant bits: a TF32 (10-bit) or bf16 pass would be ~1e-4 off.
    x = (1.0 + random_array(0, (8, 64), scale=1e-3)).astype(np.float32)
    w = (1.0 + random_array(1, (16, 64), scale=1e-3)).astype(np.float32)
    y = backend.to_numpy(backend.linear(backend.asarray(x), backend.asarray(w)))
    assert relative_frobenius_error(y, ops.linear(x.astype(np.float64), w.astype(np.float64))) < 1e-6
    xc = x.reshape(2, 4, 8, 8)
    wc = w[:4, :36].reshape(4, 4, 3, 3)
    yc = backend.to_numpy(backend.conv2d(backend.asarray(xc), backend.asarray(wc), padding=1, method="direct"))
    assert relative_frobenius_error(yc, ops.conv2d(xc.astype(np.float64), wc.astype(np.float64), padding=1)) < 1e-6


def test_bad_input_raises_with_a_message(backend):
    x = backend.asarray(random_array(0, (1, 6, 4, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="not divisible by num_groups"):
        backend.group_norm(x, 4, fused=False)
    with pytest.raises(ValueError, match="weight: expected shape"):
        backend.linear(x, backend.asarray(np.ones((3, 5), np.float32)))
    with pytest.raises(ValueError, match="even size"):
        backend.geglu(backend.asarray(np.ones((2, 3), np.float32)), fused=False)
    with pytest.raises(TypeError, match="dtype"):
        backend.softmax(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="scale_factor"):
        backend.upsample_nearest2d(x, 0)


"""The reference ops against their definitions, independent formulas and invariances."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import random_array, scales, seeds

# ----------------------------------------------------------------------------- group_norm


def group_norm_by_loops(x, groups, weight, bias, eps):
    """The definition, one (sample, group) at a time, with Python's statistics in float64."""
    n, c = x.shape[:2]
    per = c // groups
    y = np.empty_like(x)
    for i in range(n):
        for g in range(groups):
            slab = x[i, g * per:(g + 1) * per]
            values = slab.ravel().tolist()
            mean = math.fsum(values) / len(values)
            var = math.fsum((v - mean) ** 2 for v in values) / len(values)
            y[i, g * per:(g + 1) * per] = (slab - mean) / math.sqrt(var + eps)
    return y * weight.reshape(1, c, 1, 1) + bias.reshape(1, c, 1, 1)


@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
       hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), scale=scales)
def test_group_norm_matches_definition(seed, n, groups, per, hw, scale):
    c = groups * per
    x = random_array(seed, (n, c) + hw, scale=scale, offset=3 * scale)
    w, b = random_array(seed + 1, (c,)), random_array(seed + 2, (c,))
    expected = group_norm_by_loops(x, groups, w, b, 1e-5)
    assert_close(ops.group_norm(x, groups, w, b), expected, atol=1e-10, rtol=1e-10)


@given(seed=seeds, shift=st.floats(-1e3, 1e3), log_scale=st.floats(-3, 3))
def test_group_norm_is_invariant_to_per_group_shift_and_positive_scale(seed, shift, log_scale):
    groups, per = 4, 2
    x = random_array(seed, (2, groups * per, 5, 3))
    # a different shift and scale for each group: the output of every group is unchanged
    g_shift = shift * np.arange(1, groups + 1).repeat(per).reshape(1, -1, 1, 1)
    g_scale = 10.0 ** (log_scale * np.linspace(0.5, 1, groups)).repeat(per).reshape(1, -1, 1, 1)
    base = ops.group_norm(x, groups, eps=0.0)
    moved = ops.group_norm(x * g_scale + g_shift, groups, eps=0.0)
    assert_close(moved, base, atol=1e-8, rtol=1e-8)


def test_group_norm_two_pass_variance_survives_a_large_mean():
    # mean 1e3, std 0.1 in float32: E[x^2] - E[x]^2 cancels catastrophically, the centred
    # two-pass variance does not
    x = random_array(0, (1, 4, 16, 16), scale=0.1, offset=1e3).astype(np.float32)
    exact = ops.group_norm(x.astype(np.float64), 2)
    assert relative_frobenius_error(ops.group_norm(x, 2), exact) < 1e-3
    slabs = x.reshape(1, 2, -1)
    mean = slabs.mean(-1, keepdims=True)
    one_pass_var = np.maximum((slabs * slabs).mean(-1, keepdims=True) - mean * mean, 0)
    one_pass = ((slabs - mean) / np.sqrt(one_pass_var + np.float32(1e-5))).reshape(x.shape)
    assert relative_frobenius_error(one_pass, exact) > 0.1  # the failure the two-pass form avoids


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_group_norm_keeps_dtype_and_normalizes(dtype):
    x = random_array(3, (2, 6, 4, 4), scale=2.0, offset=1.0, dtype=dtype)
    y = ops.group_norm(x, 3)
    assert y.dtype == dtype
    slabs = y.astype(np.float64).reshape(2, 3, -1)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    assert np.all(np.abs(slabs.mean(-1)) < tol)
    assert np.all(np.abs(slabs.std(-1) - 1) < 10 * tol)


# ----------------------------------------------------------------------------- activations


@given(seed=seeds, scale=scales)
def test_gelu_matches_libm_erf(seed, scale):
    x = random_array(seed, (257,), scale=scale)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    assert_close(ops.gelu(x), expected, atol=1e-300, rtol=1e-13)


def test_gelu_keeps_relative_accuracy_for_negative_x():
    # x/2 (1 + erf(x/sqrt2)) cancels for x << 0; the reference must not
    x = np.array([-8.0, -10.0, -20.0])
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.all(expected < 0)
    assert_close(ops.gelu(x), expected, atol=0, rtol=1e-13)


def test_gelu_known_values():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    # Phi(1) = 0.8413447460685429, Phi(3) = 0.9986501019683699
    expected = np.array([-3 * (1 - 0.9986501019683699), -(1 - 0.8413447460685429), 0.0,
                         0.8413447460685429, 3 * 0.9986501019683699])
    assert_close(ops.gelu(x), expected, atol=1e-15, rtol=1e-14)


def test_gelu_tanh_form_is_within_its_known_error():
    x = np.linspace(-8, 8, 20001)
    err = np.abs(ops.gelu(x, approximate=True) - ops.gelu(x))
    assert err.max() < 5e-4          # the published bound of the tanh approximation
    assert err.max() > 1e-5          # ...and it really is a different function


@given(seed=seeds, rows=st.integers(1, 4), half=st.integers(1, 9), scale=scales)
def test_geglu_is_first_half_times_gelu_of_second(seed, rows, half, scale):
    x = random_array(seed, (rows, 3, 2 * half), scale=scale)
    a, b = x[..., :half], x[..., half:]
    expected = a * 0.5 * b * np.vectorize(math.erfc)(-b / math.sqrt(2))
    assert_close(ops.geglu(x), expected, atol=1e-300, rtol=1e-12)


def sigmoid_by_libm(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


@given(seed=seeds, scale=scales)
def test_silu_and_quick_gelu(seed, scale):
    x = random_array(seed, (101,), scale=scale)
    assert_close(ops.silu(x), [v * sigmoid_by_libm(v) for v in x], atol=1e-300, rtol=1e-13)
    assert_close(ops.quick_gelu(x), [v * sigmoid_by_libm(1.702 * v) for v in x], atol=1e-300, rtol=1e-13)


# ----------------------------------------------------------------------------- softmax, norms, linear


@given(seed=seeds, rows=st.integers(1, 5), cols=st.integers(1, 40), scale=scales)
def test_softmax_is_normalized_exp(seed, rows, cols, scale):
    x = random_array(seed, (rows, cols), scale=scale)
    y = ops.softmax(x)
    assert_close(y.sum(-1), np.ones(rows), atol=1e-12, rtol=0)
    # ratios equal exp of differences (the defining property), checked where it is well-conditioned
    ref = np.exp(x - x.max(-1, keepdims=True))
    assert_close(y, ref / ref.sum(-1, keepdims=True), atol=1e-300, rtol=1e-12)
    assert_close(ops.softmax(x.T, axis=0), y.T, atol=0, rtol=0)


def test_softmax_does_not_overflow():
    y = ops.softmax(np.array([[1000.0, 1000.0, -1000.0]], np.float32))
    assert np.all(np.isfinite(y)) and abs(y[0, 0] - 0.5) < 1e-6


@given(seed=seeds, c=st.integers(2, 33), scale=scales)
def test_layer_norm_matches_definition(seed, c, scale):
    x = random_array(seed, (2, 3, c), scale=scale, offset=scale)
    w, b = random_array(seed + 1, (c,)), random_array(seed + 2, (c,))
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    assert_close(ops.layer_norm(x, w, b), (x - mu) / sd * w + b, atol=1e-12, rtol=1e-10)


@given(seed=seeds, n=st.integers(1, 7), fin=st.integers(1, 9), fout=st.integers(1, 9))
def test_linear_is_x_wt_plus_b(seed, n, fin, fout):
    x = random_array(seed, (2, n, fin))
    w, b = random_array(seed + 1, (fout, fin)), random_array(seed + 2, (fout,))
    expected = np.array([[[sum(x[i, j, k] * w[o, k] for k in range(fin)) + b[o] for o in range(fout)]
                          for j in range(n)] for i in range(2)])
    assert_close(ops.linear(x, w, b), expected, atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------- conv2d


def conv2d_by_loops(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y + b.reshape(1, o, 1, 1)


@given(seed=seeds, c=st.integers(1, 3), o=st.integers(1, 3), k=st.sampled_from([1, 3, 5]),
       hw=st.tuples(st.integers(5, 9), st.integers(5, 9)), stride=st.integers(1, 2), padding=st.integers(0, 2))
def test_conv2d_matches_loops(seed, c, o, k, hw, stride, padding):
    x = random_array(seed, (2, c) + hw)
    w, b = random_array(seed + 1, (o, c, k, k)), random_array(seed + 2, (o,))
    assert_close(ops.conv2d(x, w, b, stride=stride, padding=padding),
                 conv2d_by_loops(x, w, b, stride, padding), atol=1e-12, rtol=1e-12)


def test_upsample_nearest2d():
    x = random_array(0, (1, 2, 3, 4))
    y = ops.upsample_nearest2d(x, 2)
    assert y.shape == (1, 2, 6, 8)
    for i in range(6):
        for j in range(8):
            assert np.array_equal(y[:, :, i, j], x[:, :, i // 2, j // 2])


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("op", [ops.gelu, ops.silu, ops.softmax, ops.geglu, ops.layer_norm])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_low_precision_is_fp32_arithmetic_rounded_to_storage(op, dtype, tol):
    x = random_array(7, (4, 16), scale=3.0, dtype=dtype)
    y = op(x)
    assert y.dtype == dtype
    exact = op(x.astype(np.float64))
    assert relative_frobenius_error(y, exact) < tol

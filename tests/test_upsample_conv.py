"""upsample_conv2d: nearest upsampling then a convolution (SD's Upsample2D), and its four output
phases (reference/upsample_conv.py; the JAX backend's ``upsample_conv="phases"``, whose values are
checked in tests/jax/test_jax_upsample_conv.py)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.optimizations import Optimizations
from reference import ops
from reference import upsample_conv as ref_upsample_conv
from reference.numerics import relative_frobenius_error

from .helpers import assert_matches, conv_inputs, examples, given_for, random_array, scales_for, seeds, to_device


@examples(30)
@given(seed=seeds, n=st.integers(1, 2), c=st.integers(1, 5), o=st.integers(1, 6), h=st.integers(1, 7),
       w=st.integers(1, 7), bias=st.booleans())
def test_phases_equal_upsample_then_conv_in_float64(seed, n, c, o, h, w, bias):
    # the identity of the module docstring, exact up to float64 reassociation; 1 x 1 images and
    # odd sizes put every phase against the zero border
    x = random_array(seed, (n, c, h, w))
    k = random_array(seed + 1, (o, c, 3, 3))
    b = random_array(seed + 2, (o,)) if bias else None
    expected = ops.conv2d(ops.upsample_nearest2d(x, 2), k, b, padding=1)
    assert relative_frobenius_error(ref_upsample_conv.upsample_conv2d_phases(x, k, b), expected) < 1e-13
    assert relative_frobenius_error(ops.upsample_conv2d(x, k, b, 2, padding=1), expected) == 0


def test_phase_kernels_sum_the_kernel_rows_each_phase_reads():
    # phase (0, 0) of output (2i, 2j) reads x rows/columns (i-1, i): kernel row 0 alone on i-1, rows 1 + 2 on i
    w = random_array(3, (2, 3, 3, 3))
    k = ref_upsample_conv.phase_kernels(w)
    assert k.shape == (2, 2, 2, 3, 2, 2)
    np.testing.assert_allclose(k[0, 0, :, :, 0, 0], w[:, :, 0, 0])
    np.testing.assert_allclose(k[0, 0, :, :, 1, 1], w[:, :, 1:, 1:].sum(axis=(2, 3)))
    np.testing.assert_allclose(k[1, 0, :, :, 0, 1], w[:, :, :2, 1:].sum(axis=(2, 3)))
    np.testing.assert_allclose(k[1, 1, :, :, 1, 1], w[:, :, 2, 2])
    np.testing.assert_allclose(k.sum(axis=(4, 5)), np.broadcast_to(w.sum(axis=(2, 3)), (2, 2, 2, 3)))


def test_phase_form_rejects_other_kernels():
    with pytest.raises(ValueError, match=r"w: the phase form needs a 3x3 kernel, got kernel size \(1, 1\)"):
        ref_upsample_conv.upsample_conv2d_phases(np.ones((1, 2, 3, 3)), np.ones((4, 2, 1, 1)))


def test_upsample_conv2d_matches_reference(backend, dtype):
    # SD's case (x2, 3x3, padding 1) and others (any factor, kernel and padding), each against the
    # float64 definition on the same rounded inputs
    @given_for(backend, jax=6, seed=seeds, c=st.integers(1, 6), o=st.integers(1, 7), h=st.integers(1, 6),
               w=st.integers(1, 6), case=st.sampled_from([(2, (3, 3), 1)] * 3 + [(1, (3, 3), 1), (3, (3, 3), 1),
                                                                                 (2, (1, 1), 0), (2, (3, 2), (2, 0))]),
               bias=st.booleans(), scale=scales_for(dtype))
    def check(seed, c, o, h, w, case, bias, scale):
        factor, kernel, padding = case
        arrays, (x64, w64, b64) = conv_inputs(seed, (2, c, h, w), (o, c) + kernel, dtype, scale, bias,
                                              w_scale=1 / math.sqrt(c * kernel[0] * kernel[1]))
        y = backend.upsample_conv2d(*[to_device(backend, a) for a in arrays], factor, padding=padding, method="direct")
        expected = ops.upsample_conv2d(x64, w64, b64, factor, padding=padding)
        assert y.shape == expected.shape
        assert_matches(backend.to_numpy(y), expected, dtype)

    check()


@pytest.mark.parametrize("name", ["paper", "none"])
def test_upsample_conv2d_takes_conv2ds_method(backend, name, monkeypatch):
    # with the paper's switches the convolution of the upsampled image is Winograd F(4x4, 3x3), as conv2d's would be
    monkeypatch.setattr(backend, "optimizations", Optimizations.named(name))
    arrays, (x64, w64, b64) = conv_inputs(5, (1, 8, 6, 6), (8, 8, 3, 3), np.float32, w_scale=1 / math.sqrt(72))
    backend.choices.clear()
    y = backend.upsample_conv2d(*[to_device(backend, a) for a in arrays])
    chosen = {key[2] for key in backend.choices if key[0] == "conv2d"}
    assert chosen == ({"winograd4"} if name == "paper" else {"direct"})
    assert_matches(backend.to_numpy(y), ops.upsample_conv2d(x64, w64, b64), np.float32,
                   rel_tol=1e-4 if name == "paper" else None)

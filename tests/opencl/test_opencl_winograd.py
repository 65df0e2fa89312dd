"""OpenCL convolutions: the launch and memory budget of the direct kernel and of Winograd's plan,
the cache of transformed weights, and the direct kernel's __local memory limit.

The direct convolution is one launch with no temporaries. Winograd F(m x m, 3 x 3) is 3 launches
(input transform, alpha^2 batched GEMMs, output transform) with two temporaries, V (alpha^2, C, T)
and M (alpha^2, O, T) in the storage dtype, plus one filter-transform launch and one cache entry
U (alpha^2, O, C) per new weight tensor and tile size. Their accuracy on every backend is in
tests/test_winograd.py.
"""

import math

import numpy as np
import pytest
from hypothesis import strategies as st

from backends.opencl import gemm, winograd
from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import WINOGRAD_BOUNDS, conv_inputs, given_for, random_array, rounded, seeds, to_device

pytestmark = pytest.mark.backends("opencl")

WINOGRAD_KERNELS = ["winograd_input_transform", "gemm_batched", "winograd_output_transform"]


def on_device(backend, arrays):
    return [to_device(backend, a) for a in arrays]


# ----------------------------------------------------------------------------------- direct


def test_direct_is_one_launch_without_temporaries(backend, dtype):
    @given_for(backend, seed=seeds, k=st.sampled_from([(1, 1), (3, 3), (5, 5), (1, 3), (3, 2)]),
               stride=st.sampled_from([1, 2, (2, 1)]), ph=st.integers(0, 2), pw=st.integers(0, 2),
               bias=st.booleans())
    def check(seed, k, stride, ph, pw, bias):
        arrays, _ = conv_inputs(seed, (2, 3, 9, 10), (5, 3) + k, dtype, bias=bias)
        with backend.measure() as counted:
            y = backend.conv2d(*on_device(backend, arrays), stride=stride, padding=(ph, pw), method="direct")
        # one launch and no temporaries, or where the tile table splits K (few tiles of the
        # output), the float32 partial sums (splits, O, N*Ho*Wo) and their reduction
        o, pixels = y.shape[1], y.shape[0] * y.shape[2] * y.shape[3]
        splits = gemm.choose_tile(backend.rt, "conv", dtype, o, pixels, 3 * k[0] * k[1]).splits
        if splits == 1:
            assert counted.kernels == ["conv2d_implicit_gemm"] and counted.temp_bytes == 0
        else:
            assert counted.kernels == ["conv2d_implicit_gemm", "conv2d_splitk_reduce"]
            assert counted.temp_bytes == 4 * splits * o * pixels

    check()


def test_direct_kernel_has_no_kernel_size_limit(backend):
    # the implicit GEMM stages slabs of the weight and im2col matrices, whose size does not depend
    # on the kernel's: a 31 x 31 kernel (K = 2 * 961, ragged against every slab depth) is computed
    x, x64 = rounded(random_array(0, (1, 2, 32, 33)), np.float32)
    w, w64 = rounded(random_array(1, (3, 2, 31, 31), scale=0.04), np.float32)
    y = backend.to_numpy(backend.conv2d(backend.asarray(x), backend.asarray(w), method="direct"))
    assert relative_frobenius_error(y, ops.conv2d(x64, w64)) < 1e-5


# --------------------------------------------------------------------------------- Winograd


def _check_winograd_call(counted, dtype, m, x_shape, o, padding, new_weights, rt):
    """The plan's budget: launches, kernel order, temporaries V and M (M as float32 split-K
    partial sums (splits, alpha^2, O, T) where the tile table splits the products), cache bytes."""
    n, c, h, w = x_shape
    alpha = m + 2
    tiles = n * -(-(h + 2 * padding[0] - 2) // m) * -(-(w + 2 * padding[1] - 2) // m)
    expected = (["winograd_filter_transform"] if new_weights else []) + WINOGRAD_KERNELS
    assert counted.kernels == expected
    splits = gemm.choose_tile(rt, "gemm", dtype, o, tiles, c, alpha**2).splits
    products = ((alpha**2, o, tiles), dtype) if splits == 1 else ((splits, alpha**2, o, tiles), np.dtype(np.float32))
    assert counted.temp_buffers == [((alpha**2, c, tiles), dtype), products]
    assert counted.temp_bytes == alpha**2 * c * tiles * dtype.itemsize + math.prod(products[0]) * products[1].itemsize
    assert counted.cache_bytes == (alpha**2 * o * c * dtype.itemsize if new_weights else 0)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_winograd_launches_temporaries_and_cache_bytes(backend, dtype, m):
    # the shapes of the SD-like and ragged layers of tests/test_winograd.py, with new weights each call
    @given_for(backend, n=10, seed=seeds, batch=st.integers(1, 2), c=st.sampled_from([2, 5, 8, 16, 32]),
               o=st.sampled_from([1, 8, 16, 32]), h=st.integers(7, 16), w=st.integers(7, 16), ph=st.integers(0, 1),
               pw=st.integers(0, 1), bias=st.booleans())
    def check(seed, batch, c, o, h, w, ph, pw, bias):
        x_shape = (batch, c, h, w)
        arrays, _ = conv_inputs(seed, x_shape, (o, c, 3, 3), dtype, bias=bias)
        with backend.measure() as counted:
            backend.conv2d(*on_device(backend, arrays), padding=(ph, pw), method="winograd", tile=m)
        _check_winograd_call(counted, dtype, m, x_shape, o, (ph, pw), new_weights=True, rt=backend.rt)

    check()


def test_winograd_weight_cache(backend, dtype):
    m, x_shape = 4, (1, 8, 10, 10)
    arrays, (x64, w64, b64) = conv_inputs(11, x_shape, (6, 8, 3, 3), dtype)
    xd, wd, bd = on_device(backend, arrays)
    cache = winograd.winograd_cache(backend.rt)

    with backend.measure() as first:
        y1 = backend.to_numpy(backend.conv2d(xd, wd, bd, padding=1, method="winograd", tile=m))
    _check_winograd_call(first, dtype, m, x_shape, 6, (1, 1), new_weights=True, rt=backend.rt)
    entries = len(cache)

    # same weights: U comes from the cache (3 launches, no new cache bytes), same result
    with backend.measure() as again:
        y2 = backend.to_numpy(backend.conv2d(xd, wd, bd, padding=1, method="winograd", tile=m))
    _check_winograd_call(again, dtype, m, x_shape, 6, (1, 1), new_weights=False, rt=backend.rt)
    assert again.launches == 3 and len(cache) == entries
    np.testing.assert_array_equal(y2, y1)

    # other weights of the same shape: a new entry, and the new weights are used
    w_new, w_new64 = rounded(random_array(12, (6, 8, 3, 3)), dtype)
    with backend.measure() as other:
        y3 = backend.to_numpy(backend.conv2d(xd, backend.asarray(w_new), bd, padding=1, method="winograd", tile=m))
    _check_winograd_call(other, dtype, m, x_shape, 6, (1, 1), new_weights=True, rt=backend.rt)
    assert other.launches == 4 and len(cache) == entries + 1
    expected = ops.conv2d(x64, w_new64, b64, padding=1)
    assert relative_frobenius_error(y3, expected) < WINOGRAD_BOUNDS[dtype][m]

    # the same weights with another tile size: another entry (U has alpha^2 planes)
    with backend.measure() as other_m:
        backend.conv2d(xd, wd, bd, padding=1, method="winograd", tile=2)
    assert other_m.launches == 4 and other_m.cache_bytes == 16 * 6 * 8 * dtype.itemsize
    assert len(cache) == entries + 2

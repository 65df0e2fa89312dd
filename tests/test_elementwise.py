"""The remaining ops of the SD network, in the reference and on every backend: SiLU, quick GELU,
nearest upsampling, add, add_broadcast, mul_scalar, and the layout ops concat, reshape, transpose.

The reference (reference/elementwise.py): SiLU and quick GELU against libm's exp, nearest
upsampling against its index formula, float32 arithmetic rounded to the storage dtype.

The backends (the ``backend`` fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes)
against the float64 reference on the same rounded inputs: the activations and arithmetic within
the dtype's bound (element counts drawn freely, so OpenCL's last work-group is ragged); upsampling
and the layout ops bit-exact against numpy (a copy of elements), for drawn shapes and
permutations (ragged against OpenCL's 16 x 16 transpose tiles), the axes Stable Diffusion uses
(head split and merge, NCHW <-> tokens), views of views, empty arrays. Example counts per backend
(``given_for``): the OpenCL suite's for numpy and opencl, the JAX suite's for jax. Bad arguments:
tests/test_bad_input.py. Backend-specific checks: tests/opencl/test_opencl_elementwise.py
(launches, kernel names, the transpose kernels, reshape as a view, subnormal sigmoid),
tests/jax/test_jax_device.py (jit).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import assert_close

from .helpers import (
    assert_matches, check_low_precision_reference, concat_parts, concat_sizes, given_for, random_array, rounded, scales,
    seeds, shape_and_axes, shape_and_new_shape,
)

# =========================================================================== the reference


def sigmoid_by_libm(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


@given(seed=seeds, scale=scales)
def test_silu_and_quick_gelu(seed, scale):
    x = random_array(seed, (101,), scale=scale)
    assert_close(ops.silu(x), [v * sigmoid_by_libm(v) for v in x], atol=1e-300, rtol=1e-13)
    assert_close(ops.quick_gelu(x), [v * sigmoid_by_libm(1.702 * v) for v in x], atol=1e-300, rtol=1e-13)


def test_upsample_nearest2d():
    x = random_array(0, (1, 2, 3, 4))
    y = ops.upsample_nearest2d(x, 2)
    assert y.shape == (1, 2, 6, 8)
    for i in range(6):
        for j in range(8):
            assert np.array_equal(y[:, :, i, j], x[:, :, i // 2, j // 2])


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_silu_low_precision_is_fp32_arithmetic_rounded_to_storage(dtype, tol):
    check_low_precision_reference(ops.silu, dtype, tol)


# =========================================================================== every backend: arithmetic

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


def assert_same(out, expected):
    """A copy of elements: the same dtype, shape and values, exactly."""
    out = np.asarray(out)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_silu_and_quick_gelu_match_reference(backend, dtype):
    @given_for(backend, jax=8, seed=seeds, shape=shapes, scale=scales)
    def check(seed, shape, scale):
        x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
        for name, reference in (("silu", ops.silu), ("quick_gelu", ops.quick_gelu)):
            y = getattr(backend, name)(backend.asarray(x))
            assert_matches(backend.to_numpy(y), reference(x64), dtype, name=name)

    check()


def test_upsample_nearest2d_is_exact(backend, dtype):
    @given_for(backend, seed=seeds, factor=st.integers(1, 3),
               shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 19), st.integers(1, 21)))
    def check(seed, shape, factor):
        x, x64 = rounded(random_array(seed, shape), dtype)
        out = backend.to_numpy(backend.upsample_nearest2d(backend.asarray(x), factor))
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.astype(np.float64), ops.upsample_nearest2d(x64, factor))

    check()


def test_add_add_broadcast_and_mul_scalar(backend, dtype):
    # (new on JAX, whose eager ops compile per shape: fewer examples there)
    @given_for(backend, jax=4, seed=seeds, scale=scales, s=st.sampled_from([-1.5, 0.18215, 0.3, 3.0]),
               shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 9), st.integers(1, 11)))
    def check(seed, shape, scale, s):
        (a, a64), (b, b64) = (rounded(random_array(seed + i, shape, scale=scale), dtype) for i in (0, 1))
        v, v64 = rounded(random_array(seed + 2, shape[:2], scale=scale), dtype)
        da, db, dv = backend.asarray(a), backend.asarray(b), backend.asarray(v)
        for name, y, expected in (("add", backend.add(da, db), a64 + b64),
                                  ("add_broadcast", backend.add_broadcast(da, dv), a64 + v64[:, :, None, None]),
                                  ("mul_scalar", backend.mul_scalar(da, s), s * a64)):
            assert_matches(backend.to_numpy(y), expected, dtype, name=name)

    check()


# =========================================================================== every backend: layout


def test_concat_matches_numpy(backend, dtype):
    @given_for(backend, seed=seeds, sizes=concat_sizes, axis=st.integers(0, 3))
    def check(seed, sizes, axis):
        parts = concat_parts(seed, sizes, axis, dtype)
        y = backend.concat([backend.asarray(p) for p in parts], axis=axis)
        assert_same(backend.to_numpy(y), np.concatenate(parts, axis=axis))

    check()


def test_reshape_matches_numpy(backend, dtype):
    @given_for(backend, seed=seeds, shapes=shape_and_new_shape(), pick=st.integers(0, 100))
    def check(seed, shapes, pick):
        shape, new_shape = shapes
        x = random_array(seed, shape).astype(dtype)
        dx = backend.asarray(x)
        size = math.prod(shape)
        # also: merge everything, reverse the sizes, split the flat size into (size / f, f) for a divisor f
        divisors = [f for f in range(1, size + 1) if size % f == 0]
        factor = divisors[pick % len(divisors)]
        for target in [new_shape, (size,), tuple(reversed(shape)), (size // factor, factor), shape + (1,)]:
            assert_same(backend.to_numpy(backend.reshape(dx, target)), x.reshape(target))
        view = backend.reshape(backend.reshape(dx, (size,)), new_shape)  # a view of a view
        assert_same(backend.to_numpy(view), x.reshape(new_shape))

    check()


def test_reshape_splits_and_merges_heads(backend, dtype):
    # SD's attention: tokens (B, N, H*d) -> (B, N, H, d) -> heads (B, H, N, d) and back
    b, n, h, d = 2, 7, 3, 5
    x, _ = rounded(random_array(1, (b, n, h * d)), dtype)
    heads = backend.transpose(backend.reshape(backend.asarray(x), (b, n, h, d)), (0, 2, 1, 3))
    assert_same(backend.to_numpy(heads), x.reshape(b, n, h, d).transpose(0, 2, 1, 3))
    back = backend.reshape(backend.transpose(heads, (0, 2, 1, 3)), (b, n, h * d))
    assert_same(backend.to_numpy(back), x)


def test_nchw_to_tokens_and_back(backend):
    # SD's spatial transformer: (B, C, H, W) -> (B, H*W, C) tokens -> (B, C, H, W)
    b, c, h, w = 2, 6, 3, 5
    x, _ = rounded(random_array(3, (b, c, h, w)), np.float16)
    tokens = backend.reshape(backend.transpose(backend.asarray(x), (0, 2, 3, 1)), (b, h * w, c))
    assert_same(backend.to_numpy(tokens), x.transpose(0, 2, 3, 1).reshape(b, h * w, c))
    image = backend.transpose(backend.reshape(tokens, (b, h, w, c)), (0, 3, 1, 2))
    assert_same(backend.to_numpy(image), x)


def test_transpose_matches_numpy_for_any_permutation(backend, dtype):
    @given_for(backend, seed=seeds, case=shape_and_axes())
    def check(seed, case):
        shape, axes = case
        x = random_array(seed, shape).astype(dtype)
        dx = backend.asarray(x)
        out = backend.to_numpy(backend.transpose(dx, axes))
        assert_same(out, np.transpose(x, axes))
        assert out.flags.c_contiguous
        assert_same(backend.to_numpy(backend.transpose(dx, list(axes))), np.transpose(x, axes))  # any sequence of ints

    check()


@pytest.mark.parametrize("shape, axes", [
    ((2, 77, 8, 40), (0, 2, 1, 3)),   # head split (B, N, H, d) -> (B, H, N, d)
    ((2, 8, 77, 40), (0, 2, 1, 3)),   # head merge
    ((2, 20, 9, 11), (0, 2, 3, 1)),   # NCHW -> NHWC (tokens after a reshape)
    ((2, 9, 11, 20), (0, 3, 1, 2)),   # NHWC -> NCHW
    ((1, 4, 64, 64), (0, 2, 3, 1)),   # the SD latent: 4 channels, 64 x 64
    ((17, 33), (1, 0)),
    ((3, 1, 5), (1, 0, 2)),           # moves only a size-1 axis
    ((2, 3, 4, 5), (3, 2, 1, 0)),
    ((2, 3, 4, 5), (0, 1, 2, 3)),     # the identity: still a C-contiguous copy
    ((2, 3, 4, 5), (0, 2, 3, 1)),
    ((2, 3, 4, 5), (0, 3, 1, 2)),
])
def test_transpose_with_the_axes_sd_uses(backend, dtype, shape, axes):
    x, _ = rounded(random_array(2, shape), dtype)
    out = backend.to_numpy(backend.transpose(backend.asarray(x), axes))
    assert_same(out, np.transpose(x, axes))
    assert out.flags.c_contiguous


def test_layout_of_empty_arrays(backend):
    empty = backend.reshape(backend.asarray(np.ones((0, 3), np.float32)), (3, 0))
    assert empty.shape == (3, 0)
    y = backend.transpose(backend.asarray(np.ones((2, 0, 3), np.float16)), (2, 0, 1))
    assert y.shape == (3, 2, 0) and y.dtype == np.float16

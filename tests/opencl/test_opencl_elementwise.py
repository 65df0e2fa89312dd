"""OpenCL elementwise and layout ops: launches, kernel names and temporaries per op, the transpose's
choice of kernel, reshape as a view, and a sigmoid that stays finite where exp(-x) is subnormal.

Every elementwise op (silu, quick_gelu, upsample, add, add_broadcast, mul_scalar) is one launch
with no temporary; concat one ``copy_into_slice`` launch per input; reshape no launch and no copy
(a view of the same buffer); transpose one launch, ``permute`` when the innermost (non-trivial)
axis stays innermost, ``permute_tiled`` (16 x 16 tiles through local memory) when it moves, after
``simplify_permutation`` merged the axes that move together (at most 4 groups). Values on every
backend: tests/test_elementwise.py.
"""

import math

import numpy as np
import pyopencl as cl
import pytest
from hypothesis import strategies as st

from backends.opencl import elementwise
from reference import ops
from reference.numerics import assert_close

from ..helpers import concat_parts, concat_sizes, given_for, random_array, seeds, shape_and_axes, shape_and_new_shape

pytestmark = pytest.mark.backends("opencl")


# ----------------------------------------------------------------------------------- one launch per op


def test_silu_and_quick_gelu_are_one_launch(backend, dtype):
    @given_for(backend, seed=seeds, shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple))
    def check(seed, shape):
        x = backend.asarray(random_array(seed, shape).astype(dtype))
        for name in ("silu", "quick_gelu"):
            with backend.measure() as counted:
                getattr(backend, name)(x)
            assert counted.launches == 1 and counted.kernels == [name] and counted.temp_bytes == 0

    check()


def test_sigmoid_does_not_overflow_for_very_negative_inputs(backend):
    # x / (1 + exp(-x)) turns exp(89) = inf into -0; the kernels' e / (1 + e) with e = exp(-|x|)
    # keeps these results, which are normal floats although e itself is subnormal.
    if not backend.rt.device.single_fp_config & cl.device_fp_config.DENORM:
        pytest.skip("the device flushes fp32 subnormals, so exp(-89) is 0 there")
    x = np.array([-88.0, -89.0, -89.5, -90.0], np.float32)
    for name, beta in (("silu", 1.0), ("quick_gelu", 1.702)):
        xs = x / np.float32(beta)
        y = backend.to_numpy(getattr(backend, name)(backend.asarray(xs))).astype(np.float64)
        expected = getattr(ops, name)(xs.astype(np.float64))
        assert np.all(np.abs(expected) > np.finfo(np.float32).tiny)
        assert_close(y, expected, atol=0, rtol=1e-4, name=name)


def test_upsample_is_one_launch(backend, dtype):
    @given_for(backend, seed=seeds, factor=st.integers(1, 3),
               shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 19), st.integers(1, 21)))
    def check(seed, shape, factor):
        x = backend.asarray(random_array(seed, shape).astype(dtype))
        with backend.measure() as counted:
            backend.upsample_nearest2d(x, factor)
        assert counted.launches == 1 and counted.temp_bytes == 0

    check()


def test_add_add_broadcast_and_mul_scalar_are_one_launch(backend, dtype):
    @given_for(backend, seed=seeds,
               shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 9), st.integers(1, 11)))
    def check(seed, shape):
        a, b = (backend.asarray(random_array(seed + i, shape).astype(dtype)) for i in (0, 1))
        v = backend.asarray(random_array(seed + 2, shape[:2]).astype(dtype))
        for kernel, run in (("add", lambda: backend.add(a, b)), ("add_broadcast", lambda: backend.add_broadcast(a, v)),
                            ("scale_shift", lambda: backend.mul_scalar(a, 0.18215))):
            with backend.measure() as counted:
                run()
            assert counted.launches == 1 and counted.kernels == [kernel] and counted.temp_bytes == 0

    check()


def test_concat_is_one_copy_per_input(backend, dtype):
    @given_for(backend, seed=seeds, sizes=concat_sizes, axis=st.integers(0, 3))
    def check(seed, sizes, axis):
        parts = [backend.asarray(p) for p in concat_parts(seed, sizes, axis, dtype)]
        with backend.measure() as counted:
            backend.concat(parts, axis=axis)
        assert counted.launches == len(parts) and counted.temp_bytes == 0
        assert counted.kernels == ["copy_into_slice"] * len(parts)

    check()


# ----------------------------------------------------------------------------------- reshape: a view


def test_reshape_is_a_view_without_launches(backend, dtype):
    @given_for(backend, seed=seeds, shapes=shape_and_new_shape())
    def check(seed, shapes):
        shape, new_shape = shapes
        dx = backend.asarray(random_array(seed, shape).astype(dtype))
        with backend.measure() as counted:
            y = backend.reshape(dx, new_shape)
        assert counted.launches == 0 and counted.temp_bytes == 0
        assert y.shape == new_shape and y.dtype == dtype
        backend._check_arrays(y=y)  # contiguous, offset 0: every op accepts it
        assert y.base_data is dx.base_data  # no copy

    check()


# ----------------------------------------------------------------------------------- transpose: the kernels


def expected_kernel(shape, axes):
    """permute when the innermost (non-trivial) axis stays innermost, permute_tiled when it moves."""
    _, perm = elementwise.simplify_permutation(shape, axes)
    return "permute" if not perm or perm[-1] == len(perm) - 1 else "permute_tiled"


def test_transpose_is_one_launch_of_the_right_kernel(backend, dtype):
    @given_for(backend, seed=seeds, case=shape_and_axes())
    def check(seed, case):
        shape, axes = case
        x = random_array(seed, shape).astype(dtype)
        with backend.measure() as counted:
            y = backend.transpose(backend.asarray(x), axes)
        assert counted.kernels == [expected_kernel(shape, axes)] and counted.temp_bytes == 0
        assert y.dtype == dtype and y.flags.c_contiguous and y.offset == 0

    check()


@pytest.mark.parametrize("shape, axes, kernel", [
    ((2, 77, 8, 40), (0, 2, 1, 3), "permute"),        # head split (B, N, H, d) -> (B, H, N, d)
    ((2, 8, 77, 40), (0, 2, 1, 3), "permute"),        # head merge
    ((2, 20, 9, 11), (0, 2, 3, 1), "permute_tiled"),  # NCHW -> NHWC (tokens after a reshape)
    ((2, 9, 11, 20), (0, 3, 1, 2), "permute_tiled"),  # NHWC -> NCHW
    ((1, 4, 64, 64), (0, 2, 3, 1), "permute_tiled"),  # the SD latent: 4 channels, 64 x 64
    ((17, 33), (1, 0), "permute_tiled"),
    ((3, 1, 5), (1, 0, 2), "permute"),                # moves only a size-1 axis: a plain copy
])
def test_transpose_kernel_for_sd_layouts(backend, dtype, shape, axes, kernel):
    x = random_array(1, shape).astype(dtype)
    with backend.measure() as counted:
        y = backend.transpose(backend.asarray(x), axes)
    assert counted.kernels == [kernel]
    assert np.array_equal(backend.to_numpy(y), np.transpose(x, axes))


def test_transpose_of_more_than_4_axes_merges_adjacent_ones(backend):
    # any permutation that leaves at most 4 runs of adjacent axes runs; others name the limit
    @given_for(backend, n=4, seed=seeds, shape=st.lists(st.integers(1, 4), min_size=5, max_size=6), data=st.data())
    def check(seed, shape, data):
        axes = data.draw(st.permutations(range(len(shape))))
        x = random_array(seed, tuple(shape)).astype(np.float32)
        simple_shape, _ = elementwise.simplify_permutation(tuple(shape), tuple(axes))
        if len(simple_shape) <= 4:
            y = backend.transpose(backend.asarray(x), axes)
            assert np.array_equal(backend.to_numpy(y), np.transpose(x, axes))
        else:
            with pytest.raises(ValueError, match="axes: the opencl transpose moves at most 4 groups of adjacent axes"):
                backend.transpose(backend.asarray(x), axes)

    check()


def test_simplify_permutation():
    simplify = elementwise.simplify_permutation
    assert simplify((2, 3, 4, 5), (0, 2, 3, 1)) == ((2, 3, 20), (0, 2, 1))
    assert simplify((1, 6, 3, 5), (0, 2, 1, 3)) == ((6, 3, 5), (1, 0, 2))
    assert simplify((2, 3, 4), (0, 1, 2)) == ((24,), (0,))
    assert simplify((2, 1, 3), (1, 2, 0)) == ((2, 3), (1, 0))
    assert simplify((1, 1), (1, 0)) == ((), ())
    assert simplify((5, 4, 3, 2, 6), (4, 3, 2, 1, 0)) == ((5, 4, 3, 2, 6), (4, 3, 2, 1, 0))
    # the element count is kept
    assert math.prod(simplify((2, 1, 3, 4), (3, 1, 0, 2))[0]) == 24


def test_transpose_of_an_empty_array_launches_nothing(backend):
    with backend.measure() as counted:
        y = backend.transpose(backend.asarray(np.ones((2, 0, 3), np.float16)), (2, 0, 1))
    assert y.shape == (3, 2, 0) and counted.launches == 0

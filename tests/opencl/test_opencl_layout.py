"""OpenCL reshape (a view: no copy, no launch), transpose (one permute launch) and the device
memory counters (in use, peak since reset) against numpy and against known byte counts."""

import gc
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.opencl import layout

from ..helpers import attention_inputs, examples, random_array, seeds

dims = st.integers(1, 24)  # ragged against the 16 x 16 tiles of permute_tiled, some spanning two tiles


@st.composite
def shape_and_axes(draw, min_dims=2, max_dims=4):
    shape = tuple(draw(st.lists(dims, min_size=min_dims, max_size=max_dims)))
    return shape, tuple(draw(st.permutations(range(len(shape)))))


def expected_kernel(shape, axes):
    """permute when the innermost (non-trivial) axis stays innermost, permute_tiled when it moves."""
    _, perm = layout.simplify_permutation(shape, axes)
    return "permute" if not perm or perm[-1] == len(perm) - 1 else "permute_tiled"


# ------------------------------------------------------------------------------------------ reshape


@st.composite
def shape_and_new_shape(draw):
    """A shape, and another with the same element count: its sizes reordered, some merged."""
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    order = draw(st.permutations(shape))
    merge = draw(st.integers(0, len(order)))
    new = ((math.prod(order[:merge]),) if merge else ()) + tuple(order[merge:])
    return shape, new or (1,)


@given(seed=seeds, shapes=shape_and_new_shape())
def test_reshape_is_a_view_without_launches(backend, dtype, seed, shapes):
    shape, new_shape = shapes
    x = random_array(seed, shape).astype(dtype)
    dx = backend.asarray(x)
    with backend.measure() as counted:
        y = backend.reshape(dx, new_shape)
    assert counted.launches == 0 and counted.temp_bytes == 0
    assert y.shape == new_shape and y.dtype == dtype
    backend._check("y", y)  # contiguous, offset 0: every op accepts it
    assert y.base_data is dx.base_data  # no copy
    assert np.array_equal(backend.to_numpy(y), x.reshape(new_shape))


def test_reshape_result_feeds_other_ops(backend, dtype):
    # the SD head split: (B, N, H*d) -> (B, N, H, d) view -> transpose (0, 2, 1, 3)
    x = random_array(0, (2, 7, 3 * 5)).astype(dtype)
    y = backend.transpose(backend.reshape(backend.asarray(x), (2, 7, 3, 5)), (0, 2, 1, 3))
    assert np.array_equal(backend.to_numpy(y), x.reshape(2, 7, 3, 5).transpose(0, 2, 1, 3))


def test_reshape_empty_and_bad_input(backend):
    empty = backend.reshape(backend.asarray(np.ones((0, 3), np.float32)), (3, 0))
    assert empty.shape == (3, 0)
    x = backend.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape: expected non-negative sizes with 6 elements in all"):
        backend.reshape(x, (4, 2))
    with pytest.raises(ValueError, match="shape: expected non-negative sizes"):
        backend.reshape(x, (-1, 6))
    with pytest.raises(TypeError, match="shape: expected a tuple of ints"):
        backend.reshape(x, 6)
    with pytest.raises(TypeError, match=r"x: expected a pyopencl.Array, got ndarray \(convert it"):
        backend.reshape(np.ones((2, 3), np.float32), (6,))


# ---------------------------------------------------------------------------------------- transpose


@given(seed=seeds, case=shape_and_axes())
def test_transpose_is_one_launch_and_exact(backend, dtype, seed, case):
    shape, axes = case
    x = random_array(seed, shape).astype(dtype)
    with backend.measure() as counted:
        y = backend.transpose(backend.asarray(x), axes)
    assert counted.kernels == [expected_kernel(shape, axes)] and counted.temp_bytes == 0
    assert y.dtype == dtype and y.flags.c_contiguous and y.offset == 0
    assert np.array_equal(backend.to_numpy(y), np.transpose(x, axes))  # a copy: bit-exact


@pytest.mark.parametrize("shape, axes, kernel", [
    ((2, 77, 8, 40), (0, 2, 1, 3), "permute"),        # head split (B, N, H, d) -> (B, H, N, d)
    ((2, 8, 77, 40), (0, 2, 1, 3), "permute"),        # head merge
    ((2, 20, 9, 11), (0, 2, 3, 1), "permute_tiled"),  # NCHW -> NHWC (tokens after a reshape)
    ((2, 9, 11, 20), (0, 3, 1, 2), "permute_tiled"),  # NHWC -> NCHW
    ((1, 4, 64, 64), (0, 2, 3, 1), "permute_tiled"),  # the SD latent: 4 channels, 64 x 64
    ((17, 33), (1, 0), "permute_tiled"),
    ((3, 1, 5), (1, 0, 2), "permute"),                # moves only a size-1 axis: a plain copy
])
def test_transpose_sd_layouts(backend, dtype, shape, axes, kernel):
    x = random_array(1, shape).astype(dtype)
    with backend.measure() as counted:
        y = backend.transpose(backend.asarray(x), axes)
    assert counted.kernels == [kernel]
    assert np.array_equal(backend.to_numpy(y), np.transpose(x, axes))


@examples(4)
@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=5, max_size=6), data=st.data())
def test_transpose_of_more_than_4_axes_merges_adjacent_ones(backend, seed, shape, data):
    # any permutation that leaves at most 4 runs of adjacent axes runs; others name the limit
    axes = data.draw(st.permutations(range(len(shape))))
    x = random_array(seed, tuple(shape)).astype(np.float32)
    simple_shape, _ = layout.simplify_permutation(tuple(shape), tuple(axes))
    if len(simple_shape) <= 4:
        y = backend.transpose(backend.asarray(x), axes)
        assert np.array_equal(backend.to_numpy(y), np.transpose(x, axes))
    else:
        with pytest.raises(ValueError, match="axes: the opencl transpose moves at most 4 groups of adjacent axes"):
            backend.transpose(backend.asarray(x), axes)


def test_simplify_permutation():
    assert layout.simplify_permutation((2, 3, 4, 5), (0, 2, 3, 1)) == ((2, 3, 20), (0, 2, 1))
    assert layout.simplify_permutation((1, 6, 3, 5), (0, 2, 1, 3)) == ((6, 3, 5), (1, 0, 2))
    assert layout.simplify_permutation((2, 3, 4), (0, 1, 2)) == ((24,), (0,))
    assert layout.simplify_permutation((2, 1, 3), (1, 2, 0)) == ((2, 3), (1, 0))
    assert layout.simplify_permutation((1, 1), (1, 0)) == ((), ())
    assert layout.simplify_permutation((5, 4, 3, 2, 6), (4, 3, 2, 1, 0)) == ((5, 4, 3, 2, 6), (4, 3, 2, 1, 0))


def test_transpose_empty_and_bad_input(backend):
    with backend.measure() as counted:
        y = backend.transpose(backend.asarray(np.ones((2, 0, 3), np.float16)), (2, 0, 1))
    assert y.shape == (3, 2, 0) and counted.launches == 0
    x = backend.asarray(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"axes: expected a permutation of \(0, 1, 2\) for x of shape \(2, 3, 4\)"):
        backend.transpose(x, (0, 1))
    with pytest.raises(ValueError, match="axes: expected a permutation"):
        backend.transpose(x, (0, 1, 1))
    with pytest.raises(TypeError, match="axes: expected a tuple of ints"):
        backend.transpose(x, None)


# ------------------------------------------------------------------------------------ device memory


def fresh_window(backend):
    """Collect garbage arrays (whose bytes would otherwise leave at a random moment), start a new peak
    window, and return the bytes in use."""
    gc.collect()
    backend.reset_peak_memory()
    stats = backend.memory_stats()
    assert stats["peak_bytes"] == stats["in_use_bytes"] and stats["peak_scope"] == "since reset"
    return stats["in_use_bytes"]


def test_memory_counts_uploads_and_views_once(backend):
    base = fresh_window(backend)
    x = backend.asarray(np.ones((1000,), np.float32))
    assert backend.memory_stats()["in_use_bytes"] == base + 4000
    view = backend.reshape(x, (10, 100))
    view2 = backend.reshape(view, (100, 10))  # a view of a view
    assert backend.memory_stats()["in_use_bytes"] == base + 4000  # not counted twice
    del x, view
    assert backend.memory_stats()["in_use_bytes"] == base + 4000  # view2 still holds the buffer
    del view2
    stats = backend.memory_stats()
    assert stats["in_use_bytes"] == base and stats["peak_bytes"] == base + 4000
    backend.reset_peak_memory()
    assert backend.memory_stats()["peak_bytes"] == base


def test_memory_counts_outputs_and_temporaries(backend):
    # naive attention holds A and P (two float32 (B, H, N, M)) and the output at its peak; flash only
    # the output. The peak since reset shows exactly that: the paper's memory argument.
    b, h, n, m, d = 1, 2, 50, 60, 8
    inputs = [backend.asarray(x) for x in attention_inputs(0, (b, h, n, m, d), np.float32)[0]]
    out_bytes, scores_bytes = 4 * b * h * n * d, 4 * b * h * n * m
    for method, extra in (("naive", 2 * scores_bytes), ("partial_softmax", scores_bytes + 4 * b * h * n * 2),
                          ("flash", 0)):
        base = fresh_window(backend)
        out = backend.attention(*inputs, method=method)
        stats = backend.memory_stats()
        assert stats["in_use_bytes"] == base + out_bytes, method  # the temporaries are gone
        assert stats["peak_bytes"] == base + out_bytes + extra, method
        del out
        assert backend.memory_stats()["in_use_bytes"] == base, method


def test_memory_counts_persistent_caches(backend):
    base = fresh_window(backend)
    with backend.measure() as counted:
        cache = backend.rt.cache((3, 5), np.float16)
    assert counted.cache_bytes == 30 and counted.temp_bytes == 0
    assert backend.memory_stats()["in_use_bytes"] == base + 30
    del cache
    assert backend.memory_stats()["in_use_bytes"] == base


def test_memory_peak_covers_only_the_window(backend):
    big = backend.asarray(np.ones((4096,), np.float16))
    del big
    base = fresh_window(backend)
    small = backend.transpose(backend.asarray(np.ones((8, 4), np.float32)), (1, 0))
    assert backend.memory_stats()["in_use_bytes"] == base + 128  # the input upload is gone
    assert backend.memory_stats()["peak_bytes"] == base + 256  # input and output both lived
    del small


def test_synchronize_waits_and_returns_its_argument(backend):
    x = backend.asarray(random_array(2, (64, 48)).astype(np.float32))
    y = backend.transpose(x, (1, 0))
    assert backend.synchronize(y) is y
    assert backend.synchronize() is None
    assert np.array_equal(backend.to_numpy(y), backend.to_numpy(x).T)

"""JAX layout ops and device memory: ``reshape`` / ``transpose`` against numpy (the axes Stable
Diffusion uses, random permutations, under jit, the reference's error messages), and
``memory_stats`` / ``reset_peak_memory`` / ``synchronize``.

Memory: on a GPU the numbers are the XLA allocator's (``bytes_in_use``, ``peak_bytes_in_use``) and
are checked against an allocation of known size; on a CPU JAX reports no statistics, so the
backend must say "unavailable". The parsing of the device's dict is checked on any platform with a
stand-in device."""

import gc
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.numpy_backend import NumpyBackend

from ..helpers import random_array, rounded, seeds

shapes = st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple)


def device_array(backend, seed, shape, dtype):
    """(x on the backend, the same values as a numpy array of the storage dtype)."""
    x, _ = rounded(random_array(seed, shape), dtype)
    return backend.asarray(x), x


def assert_same(out, expected):
    out = np.asarray(out)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)  # a copy of elements: exact


# -- reshape ----------------------------------------------------------------------------------------


@given(seed=seeds, shape=shapes, pick=st.integers(0, 100))
def test_reshape_matches_numpy(backend, dtype, seed, shape, pick):
    x, x_np = device_array(backend, seed, shape, dtype)
    size = math.prod(shape)
    # merge everything, reverse the sizes, split the flat size into (size / f, f) for a divisor f
    divisors = [f for f in range(1, size + 1) if size % f == 0]
    factor = divisors[pick % len(divisors)]
    for target in [(size,), tuple(reversed(shape)), (size // factor, factor), shape + (1,)]:
        assert_same(backend.reshape(x, target), x_np.reshape(target))


def test_reshape_splits_and_merges_heads(backend, dtype):
    # SD's attention: tokens (B, N, H*d) -> (B, N, H, d) -> heads (B, H, N, d) and back
    b, n, h, d = 2, 7, 3, 5
    x, x_np = device_array(backend, 1, (b, n, h * d), dtype)
    heads = backend.transpose(backend.reshape(x, (b, n, h, d)), (0, 2, 1, 3))
    assert_same(heads, x_np.reshape(b, n, h, d).transpose(0, 2, 1, 3))
    back = backend.reshape(backend.transpose(heads, (0, 2, 1, 3)), (b, n, h * d))
    assert_same(back, x_np)


# -- transpose --------------------------------------------------------------------------------------


@pytest.mark.parametrize("axes", [(0, 2, 1, 3), (0, 2, 3, 1), (0, 3, 1, 2), (3, 2, 1, 0), (0, 1, 2, 3)])
def test_transpose_with_the_axes_sd_uses(backend, dtype, axes):
    # (0, 2, 1, 3): head split/merge; (0, 2, 3, 1): NCHW -> NHWC tokens; (0, 3, 1, 2): back
    x, x_np = device_array(backend, 2, (2, 3, 4, 5), dtype)
    out = backend.transpose(x, axes)
    assert_same(out, np.transpose(x_np, axes))
    assert np.asarray(out).flags.c_contiguous


@given(seed=seeds, shape=shapes, data=st.data())
def test_transpose_matches_numpy_for_any_permutation(backend, seed, shape, data):
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    x, x_np = device_array(backend, seed, shape, np.float32)
    assert_same(backend.transpose(x, axes), np.transpose(x_np, axes))
    assert_same(backend.transpose(x, list(axes)), np.transpose(x_np, axes))  # any sequence of ints


def test_nchw_to_tokens_and_back(backend):
    # SD's spatial transformer: (B, C, H, W) -> (B, H*W, C) tokens -> (B, C, H, W)
    b, c, h, w = 2, 6, 3, 5
    x, x_np = device_array(backend, 3, (b, c, h, w), np.float16)
    tokens = backend.reshape(backend.transpose(x, (0, 2, 3, 1)), (b, h * w, c))
    assert_same(tokens, x_np.transpose(0, 2, 3, 1).reshape(b, h * w, c))
    image = backend.transpose(backend.reshape(tokens, (b, h, w, c)), (0, 3, 1, 2))
    assert_same(image, x_np)


def test_layout_ops_jit_through_the_backend(backend):
    x, x_np = device_array(backend, 4, (2, 6, 3, 5), np.float32)
    run = jax.jit(lambda x: backend.transpose(backend.reshape(x, (2, 6, 15)), (0, 2, 1)))
    assert_same(run(x), x_np.reshape(2, 6, 15).transpose(0, 2, 1))


# -- bad input: the reference's messages ------------------------------------------------------------


@pytest.mark.parametrize("op, arg, error, match", [
    ("reshape", (4, 4), ValueError, "shape: expected non-negative sizes with 24 elements"),
    ("reshape", (-1, 6), ValueError, "shape: expected non-negative sizes"),
    ("reshape", 24, TypeError, "shape: expected a tuple of ints"),
    ("transpose", (0, 0, 1), ValueError, "axes: expected a permutation of \\(0, 1, 2\\)"),
    ("transpose", (1, 0), ValueError, "axes: expected a permutation"),
    ("transpose", (0, 1, 3), ValueError, "axes: expected a permutation"),
    ("transpose", None, TypeError, "axes: expected a tuple of ints"),
])
def test_bad_layout_arguments_fail_as_in_the_reference(backend, op, arg, error, match):
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(error, match=match) as jax_error:
        getattr(backend, op)(backend.asarray(x), arg)
    with pytest.raises(error) as numpy_error:
        getattr(NumpyBackend(), op)(x, arg)
    assert str(jax_error.value) == str(numpy_error.value)


@pytest.mark.parametrize("op, arg", [("reshape", (6, 4)), ("transpose", (1, 0, 2))])
def test_layout_ops_take_jax_arrays_only(backend, op, arg):
    with pytest.raises(TypeError, match=r"x: expected a jax\..*Array, got ndarray"):
        getattr(backend, op)(np.ones((2, 3, 4), np.float32), arg)


# -- device memory ----------------------------------------------------------------------------------


class StandInDevice:
    """A device whose ``memory_stats()`` returns a given value (JAX's Device cannot be patched)."""

    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


UNAVAILABLE = {"in_use_bytes": None, "peak_bytes": None, "peak_scope": "unavailable"}


@pytest.mark.parametrize("stats", [None, {}, {"bytes_in_use": 5}, {"peak_bytes_in_use": 5}],
                         ids=["none", "empty", "no_peak", "no_in_use"])
def test_memory_stats_are_unavailable_without_both_counters(backend, monkeypatch, stats):
    monkeypatch.setattr(backend, "device", StandInDevice(stats))
    assert backend.memory_stats() == UNAVAILABLE


def test_memory_stats_read_the_allocator_counters(backend, monkeypatch):
    stats = {"bytes_in_use": np.int64(1000), "peak_bytes_in_use": 5000, "bytes_limit": 10**9, "num_allocs": 3}
    monkeypatch.setattr(backend, "device", StandInDevice(stats))
    got = backend.memory_stats()
    assert got == {"in_use_bytes": 1000, "peak_bytes": 5000, "peak_scope": "process"}
    assert all(type(got[key]) is int for key in ("in_use_bytes", "peak_bytes"))


def test_memory_stats_of_this_device(backend):
    stats = backend.device.memory_stats()
    got = backend.memory_stats()
    if not stats or "bytes_in_use" not in stats or "peak_bytes_in_use" not in stats:
        assert got == UNAVAILABLE  # e.g. the CPU, whose memory_stats() is None
        backend.reset_peak_memory()  # a no-op, and allowed
        return
    assert got["peak_scope"] == "process"
    assert 0 <= got["in_use_bytes"] <= got["peak_bytes"]


def test_memory_stats_follow_an_allocation(backend):
    if backend.memory_stats()["peak_scope"] == "unavailable":
        pytest.skip(f"no memory statistics on {backend.device.platform}")
    nbytes = 64 * 2**20  # 64 MiB of float32, far above the allocator's rounding
    slack = 2**20  # small arrays of earlier code that Python frees in between (seen: 1 KiB)
    gc.collect()
    before = backend.memory_stats()
    x = backend.synchronize(jnp.full((nbytes // 4,), 1.5, jnp.float32))
    held = backend.memory_stats()
    assert held["in_use_bytes"] >= before["in_use_bytes"] + nbytes - slack
    assert held["peak_bytes"] >= max(held["in_use_bytes"], before["peak_bytes"])
    x.delete()
    freed = backend.memory_stats()
    assert freed["in_use_bytes"] <= held["in_use_bytes"] - nbytes + slack
    # the peak covers the process: it keeps the allocation, and reset_peak_memory cannot lower it
    backend.reset_peak_memory()
    after_reset = backend.memory_stats()
    assert after_reset["peak_bytes"] >= held["in_use_bytes"]
    assert after_reset["peak_scope"] == "process"


# -- synchronize ------------------------------------------------------------------------------------


def test_synchronize_returns_what_it_waited_for(backend):
    x = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = backend.transpose(x, (1, 0))
    assert backend.synchronize(y) is y
    pair = (y, backend.reshape(x, (6,)))
    assert backend.synchronize(pair) is pair  # a pytree of arrays
    assert backend.synchronize() is None
    np.testing.assert_array_equal(np.asarray(y), np.arange(6).reshape(2, 3).T)

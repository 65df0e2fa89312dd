"""The JAX backend as a device: every op traced by one ``jax.jit`` gives the eager results
(validation runs at trace time), the layout ops under jit, and ``memory_stats`` /
``reset_peak_memory``.

Memory: on a GPU the numbers are the XLA allocator's (``bytes_in_use``, ``peak_bytes_in_use``) and
are checked against an allocation of known size; on a CPU JAX reports no statistics, so the
backend must say "unavailable". The parsing of the device's dict is checked on any platform with a
stand-in device. ``synchronize``: tests/test_backends.py (every backend).
"""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ..helpers import REL_TOL, random_array, rounded, to_device

pytestmark = pytest.mark.backends("jax")


# ----------------------------------------------------------------------------------- jit


def test_every_op_jits_through_the_backend(backend, dtype):
    """One jax.jit over the backend's methods gives the eager results (validation runs at trace time)."""
    x, _ = rounded(random_array(0, (2, 4, 5, 6)), dtype)
    w, _ = rounded(random_array(1, (3, 4, 3, 3), scale=0.3), dtype)
    lin, _ = rounded(random_array(2, (7, 6), scale=0.4), dtype)
    vec, _ = rounded(random_array(3, (4,), offset=1.0), dtype)
    x, w, lin, vec = (to_device(backend, a) for a in (x, w, lin, vec))

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


def test_layout_ops_jit_through_the_backend(backend):
    x_np = random_array(4, (2, 6, 3, 5)).astype(np.float32)
    run = jax.jit(lambda x: backend.transpose(backend.reshape(x, (2, 6, 15)), (0, 2, 1)))
    out = np.asarray(run(backend.asarray(x_np)))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x_np.reshape(2, 6, 15).transpose(0, 2, 1))


# ----------------------------------------------------------------------------------- device memory


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

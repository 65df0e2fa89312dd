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


# -- XLA's autotuning results (JaxBackend's autotune_results) --------------------------------------


def test_autotune_results_options(tmp_path):
    from backends.jax import backend as jax_backend

    assert jax_backend.autotune_results_dir("NVIDIA H100 80GB HBM3").name == "NVIDIA_H100_80GB_HBM3"
    # a directory to build: created, read and written by XLA; the programs still compile and run
    db = tmp_path / "results"
    built = jax_backend.JaxBackend(autotune_results=db)
    assert db.is_dir() and built.compiler_options == {
        "xla_gpu_per_fusion_autotune_cache_dir": str(db),
        "xla_gpu_experimental_autotune_cache_mode": "AUTOTUNE_CACHE_MODE_UPDATE"}
    x = jnp.arange(12.0).reshape(3, 4)
    assert np.array_equal(np.asarray(built.compile(lambda x: x @ x.T)(x)), np.asarray(x) @ np.asarray(x).T)
    # "committed": the repository's directory for this model, read only; none for this CPU
    assert jax_backend.JaxBackend().choices[("xla", "autotune results", "none committed")] == 1
    assert jax_backend.JaxBackend(autotune_results="off").compiler_options == {}
    # an XLA option given by name wins over the backend's choice
    mine = jax_backend.JaxBackend(autotune_results=db, compiler_options={"xla_gpu_per_fusion_autotune_cache_dir": "x"})
    assert mine.compiler_options["xla_gpu_per_fusion_autotune_cache_dir"] == "x"
    with pytest.raises(TypeError, match="autotune_results: expected"):
        jax_backend.JaxBackend(autotune_results=3)


def test_committed_autotune_results_are_read_only_on_their_gpu(tmp_path, monkeypatch):
    from backends.jax import backend as jax_backend

    monkeypatch.setattr(jax_backend, "AUTOTUNE_RESULTS", tmp_path)
    (tmp_path / "NVIDIA_H200").mkdir()
    options, chosen = jax_backend._autotune_options("committed", "NVIDIA H200", "gpu")
    assert chosen == "committed" and options == {
        "xla_gpu_per_fusion_autotune_cache_dir": str(tmp_path / "NVIDIA_H200"),
        "xla_gpu_experimental_autotune_cache_mode": "AUTOTUNE_CACHE_MODE_READ"}
    assert jax_backend._autotune_options("committed", "NVIDIA H100 80GB HBM3", "gpu") == ({}, "none committed")
    assert jax_backend._autotune_options("committed", "NVIDIA H200", "cpu") == ({}, "none committed")
    # the read-only mode's name is one XLA parses (a misspelt one fails the compile)
    program = jax.jit(lambda x: x + 1.0, compiler_options=options)
    assert float(program(jnp.float32(1.0))) == 2.0
    with pytest.raises(Exception):
        jax.jit(lambda x: x + 2.0, compiler_options={**options, "xla_gpu_experimental_autotune_cache_mode": "READ"})(
            jnp.float32(1.0))

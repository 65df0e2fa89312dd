"""The OpenCL runtime: device choice, build errors, NVIDIA ICD registration, poisoned outputs, the
device-memory counters (uploads, views, outputs, temporaries, persistent caches, the peak window)
and the GEMM's single launch.

Memory is counted by the runtime (backends/opencl/runtime.py): the bytes of the live buffers it
allocated and their peak since ``reset_peak_memory``; every number here is exact.
"""

import gc
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from backends.opencl import gemm, runtime
from backends.opencl.runtime import KernelBuildError, Runtime

from ..helpers import attention_inputs, given_for, random_array, seeds

pytestmark = pytest.mark.backends("opencl")


# ----------------------------------------------------------------------------------- device, build, ICD


def test_select_device_by_index_and_by_name():
    rt = Runtime.for_device(None)
    assert runtime.select_device("0:0") == runtime.cl.get_platforms()[0].get_devices()[0]
    name = rt.device.name.split()[0]
    assert name.lower() in runtime.select_device(name).name.lower()
    with pytest.raises(ValueError, match="device: no OpenCL device matches 'no-such-device'; available: 0:0"):
        runtime.select_device("no-such-device")
    with pytest.raises(ValueError, match="device: no OpenCL device '7:0'"):
        runtime.select_device("7:0")


def test_build_failure_raises_with_the_build_log(tmp_path, monkeypatch):
    (tmp_path / "common.h").write_text((runtime.KERNEL_DIR / "common.h").read_text())
    (tmp_path / "broken.cl").write_text("__kernel void broken(__global float *x) { x[0] = undeclared_name; }\n")
    monkeypatch.setattr(runtime, "KERNEL_DIR", tmp_path)
    rt = Runtime(Runtime.for_device(None).device)
    with pytest.raises(KernelBuildError, match="building broken.cl .* failed") as info:
        rt.program("broken.cl", np.float32)
    assert "undeclared_name" in str(info.value)


def test_register_nvidia_icd_writes_a_vendor_folder(tmp_path, monkeypatch):
    fake_lib = tmp_path / "libnvidia-opencl.so.1"
    fake_lib.write_bytes(b"")
    monkeypatch.delenv("OCL_ICD_VENDORS", raising=False)
    monkeypatch.setattr(runtime, "NVIDIA_OPENCL_LIBS", (str(fake_lib),))
    folder = runtime.register_nvidia_icd()
    assert folder is not None
    assert os.environ["OCL_ICD_VENDORS"] == folder
    assert (Path(folder) / "nvidia.icd").read_text().strip() == str(fake_lib)
    monkeypatch.delenv("OCL_ICD_VENDORS")


def test_poison_fills_outputs_with_nan(backend):
    out = backend.rt.empty((5,), np.float32)
    assert np.all(np.isnan(out.get()))


def test_a_backend_without_profiling_computes_the_same_and_reports_no_device_time():
    from backends import get_backend

    profiled, plain = get_backend("opencl"), get_backend("opencl", profiling=False)
    assert profiled.rt.profiling and not plain.rt.profiling and plain.rt is not profiled.rt
    assert not plain.rt.queue.properties & runtime.cl.command_queue_properties.PROFILING_ENABLE
    x = random_array(3, (2, 64, 40), dtype=np.float32)
    w = random_array(4, (24, 40), dtype=np.float32)
    expected = profiled.to_numpy(profiled.linear(profiled.asarray(x), profiled.asarray(w)))
    xs, ws = plain.asarray(x), plain.asarray(w)
    np.testing.assert_array_equal(plain.to_numpy(plain.linear(xs, ws)), expected)
    timing = plain.time(lambda: plain.linear(xs, ws), repeats=2, warmup=1)
    assert timing.device_median is None and len(timing.wall) == 2 and timing.launches >= 1
    assert "without profiling" in timing.timer
    with plain.measure() as counted:
        plain.linear(xs, ws)
    assert counted.launches >= 1
    with pytest.raises(RuntimeError, match="device_seconds: the launches ran on a queue without profiling"):
        counted.device_seconds()


# ----------------------------------------------------------------------------------- the GEMM


def test_linear_is_one_gemm_launch(backend, dtype):
    @given_for(backend, seed=seeds, rows=st.integers(1, 40), fin=st.integers(1, 50), fout=st.integers(1, 40),
               bias=st.booleans())
    def check(seed, rows, fin, fout, bias):
        x = backend.asarray(random_array(seed, (2, rows, fin)).astype(dtype))
        w = backend.asarray(random_array(seed + 1, (fout, fin)).astype(dtype))
        b = backend.asarray(random_array(seed + 2, (fout,)).astype(dtype)) if bias else None
        with backend.measure() as counted:
            backend.linear(x, w, b)
        # one launch and no temporaries, or where the tile table splits K (few tiles of the
        # output), the float32 partial sums (splits, 1, rows, out) and their reduction
        splits = gemm.choose_tile(backend.rt, "gemm", dtype, 2 * rows, fout, fin).splits
        if splits == 1:
            assert counted.kernels == ["gemm_batched"] and counted.temp_bytes == 0
        else:
            assert counted.kernels == ["gemm_batched", "gemm_splitk_reduce"]
            assert counted.temp_bytes == 4 * splits * 2 * rows * fout

    check()


# ----------------------------------------------------------------------------------- device memory


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


def test_arrays_come_from_the_pool_and_their_buffers_return_to_it(backend):
    # an op's output, once dead, hands its buffer back to the runtime's pool, and the next array of
    # its size class reuses it instead of a new clCreateBuffer; the memory count follows the arrays
    rt = backend.rt
    base = fresh_window(backend)
    x = rt.empty((1000,), np.float32)
    held = rt.pool.held_blocks
    assert backend.memory_stats()["in_use_bytes"] == base + 4000
    del x
    gc.collect()
    assert rt.pool.held_blocks == held + 1 and backend.memory_stats()["in_use_bytes"] == base
    y = rt.temp((1000,), np.float32)
    assert rt.pool.held_blocks == held and backend.memory_stats()["in_use_bytes"] == base + 4000
    del y
    backend.clear_caches()  # gives the pool's unused buffers back to OpenCL
    assert rt.pool.held_blocks == 0

"""The OpenCL runtime: device choice, build errors, counters, poison, and the batched GEMM."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.opencl import runtime
from backends.opencl.runtime import KernelBuildError, Runtime
from reference import ops

from ..helpers import assert_matches, random_array, rounded, seeds


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


def test_unsupported_storage_dtype_is_named(backend):
    with pytest.raises(TypeError, match="x: the opencl backend stores float32 or float16, got float64"):
        backend.asarray(np.ones(3))


def test_register_nvidia_icd_writes_a_vendor_folder(tmp_path, monkeypatch):
    fake_lib = tmp_path / "libnvidia-opencl.so.1"
    fake_lib.write_bytes(b"")
    monkeypatch.delenv("OCL_ICD_VENDORS", raising=False)
    monkeypatch.setattr(runtime, "NVIDIA_OPENCL_LIBS", (str(fake_lib),))
    folder = runtime.register_nvidia_icd()
    assert folder is not None
    import os
    from pathlib import Path

    assert os.environ["OCL_ICD_VENDORS"] == folder
    assert (Path(folder) / "nvidia.icd").read_text().strip() == str(fake_lib)
    monkeypatch.delenv("OCL_ICD_VENDORS")


@given(seed=seeds, rows=st.integers(1, 40), fin=st.integers(1, 50), fout=st.integers(1, 40), bias=st.booleans())
def test_linear_is_one_gemm_launch(backend, seed, rows, fin, fout, bias):
    for dtype in (np.float32, np.float16):
        x, x64 = rounded(random_array(seed, (2, rows, fin)), dtype)
        w, w64 = rounded(random_array(seed + 1, (fout, fin)), dtype)
        b, b64 = rounded(random_array(seed + 2, (fout,)), dtype) if bias else (None, None)
        args = [backend.asarray(x), backend.asarray(w), None if b is None else backend.asarray(b)]
        with backend.measure() as counted:
            y = backend.linear(*args)
        assert counted.launches == 1 and counted.temp_bytes == 0
        assert_matches(backend.to_numpy(y), ops.linear(x64, w64, b64), dtype)


def test_poison_fills_outputs_with_nan(backend):
    out = backend.rt.empty((5,), np.float32)
    assert np.all(np.isnan(out.get()))


def test_elementwise_helpers_match_the_numpy_backend(backend, dtype):
    from backends import get_backend

    ref = get_backend("numpy")
    x = random_array(1, (2, 3, 4, 5)).astype(dtype)
    y = random_array(2, (2, 3, 4, 5)).astype(dtype)
    v = random_array(3, (2, 3)).astype(dtype)
    dx, dy, dv = backend.asarray(x), backend.asarray(y), backend.asarray(v)
    for got, want in ((backend.add(dx, dy), ref.add(x, y)), (backend.add_broadcast(dx, dv), ref.add_broadcast(x, v)),
                      (backend.mul_scalar(dx, 0.3), ref.mul_scalar(x, 0.3))):
        assert_matches(backend.to_numpy(got), want.astype(np.float64), dtype)


@given(seed=seeds, sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4), axis=st.integers(0, 3))
def test_concat_is_one_copy_per_input(backend, dtype, seed, sizes, axis):
    base = [2, 3, 4, 5]
    parts = []
    for i, s in enumerate(sizes):
        shape = list(base)
        shape[axis] = s
        parts.append(random_array(seed + i, tuple(shape)).astype(dtype))
    with backend.measure() as counted:
        y = backend.concat([backend.asarray(p) for p in parts], axis=axis)
    assert counted.launches == len(parts) and counted.temp_bytes == 0
    assert np.array_equal(backend.to_numpy(y), np.concatenate(parts, axis=axis))


def test_concat_rejects_mismatched_shapes(backend):
    a = backend.asarray(np.ones((1, 2, 3, 3), np.float32))
    b = backend.asarray(np.ones((1, 2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"arrays\[1\]: shape \(1, 2, 4, 3\) does not match"):
        backend.concat([a, b], axis=1)

"""Fixtures for the OpenCL suite: one poisoned backend per session, dtypes and tolerances.

The backend runs on PYOPENCL_CTX's device if set (on CI: PoCL on the CPU), else the first GPU,
else the first device. ``poison=True`` fills every output with NaN before the kernels write it,
so an element a kernel forgets to write fails the comparison.
"""

import numpy as np
import pytest

from reference.numerics import assert_close

#: Relative Frobenius bound against the float64 reference on the same rounded inputs.
#: fp32: a few ulps of accumulated rounding; fp16 storage: ~ the fp16 unit roundoff (4.9e-4) times a few.
REL_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 3e-3}


@pytest.fixture(scope="session")
def backend():
    from backends.opencl import OpenCLBackend

    return OpenCLBackend(poison=True)


@pytest.fixture(scope="session", params=[np.float32, np.float16], ids=["fp32", "fp16"])
def dtype(request):
    return np.dtype(request.param)


#: The absolute resolution of each storage dtype near zero: values below the smallest normal number
#: keep only this absolute precision. fp16: its subnormal spacing 2^-24 (6e-8); fp32: its smallest
#: normal 2^-126, since GPUs may flush fp32 subnormals to zero.
STORAGE_FLOOR = {np.dtype(np.float32): float(np.finfo(np.float32).tiny), np.dtype(np.float16): 2.0**-24}


def assert_matches(actual, expected, dtype, rel_tol=None, name="output"):
    """``actual`` (numpy, the backend's result) against ``expected`` (float64 reference computed on the
    same rounded inputs): relative Frobenius error within the dtype's bound, and every element within
    atol = bound * max|expected| + rtol = 20 * bound (so no NaN or single bad element hides in the norm).
    Both allow the storage's absolute floor (STORAGE_FLOOR) for outputs too small to be normal numbers."""
    dtype = np.dtype(dtype)
    tol = REL_TOL[dtype] if rel_tol is None else rel_tol
    floor = STORAGE_FLOOR[dtype]
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values (an unwritten, poisoned element?)"
    err = float(np.linalg.norm(actual.astype(np.float64) - expected))
    allowed = tol * float(np.linalg.norm(expected)) + np.sqrt(expected.size) * floor
    assert err <= allowed, f"{name}: error norm {err:.3e} > {allowed:.3e} (relative bound {tol:.1e})"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    assert_close(actual, expected, atol=tol * scale + floor, rtol=20 * tol, name=name)


def rounded(x, dtype):
    """x rounded to the storage dtype, and the same values in float64 (the reference's input)."""
    low = np.asarray(x).astype(dtype)
    return low, low.astype(np.float64)

"""Fixtures for the OpenCL suite: one poisoned backend per session, dtypes and tolerances.

The backend runs on PYOPENCL_CTX's device if set (on CI: PoCL on the CPU), else the first GPU,
else the first device. ``poison=True`` fills every output with NaN before the kernels write it,
so an element a kernel forgets to write fails the comparison.
"""

import numpy as np
import pytest

from reference.numerics import assert_close, relative_frobenius_error

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


def assert_matches(actual, expected, dtype, rel_tol=None, name="output"):
    """``actual`` (numpy, the backend's result) against ``expected`` (float64 reference computed on the
    same rounded inputs): relative Frobenius error within the dtype's bound, and every element within
    atol = bound * max|expected| + rtol = 20 * bound (so no NaN or single bad element hides in the norm)."""
    tol = REL_TOL[np.dtype(dtype)] if rel_tol is None else rel_tol
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values (an unwritten, poisoned element?)"
    err = relative_frobenius_error(actual, expected)
    assert err < tol, f"{name}: relative error {err:.3e} >= {tol:.1e}"
    scale = float(np.max(np.abs(expected)))
    assert_close(actual, expected, atol=tol * scale, rtol=20 * tol, name=name)


def rounded(x, dtype):
    """x rounded to the storage dtype, and the same values in float64 (the reference's input)."""
    low = np.asarray(x).astype(dtype)
    return low, low.astype(np.float64)

"""Fixtures for the OpenCL suite: one poisoned backend per session and the storage dtypes.

The backend runs on PYOPENCL_CTX's device if set (on CI: PoCL on the CPU), else the first GPU,
else the first device. ``poison=True`` fills every output with NaN before the kernels write it,
so an element a kernel forgets to write fails the comparison.
"""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def backend():
    from backends.opencl import OpenCLBackend

    return OpenCLBackend(poison=True)


@pytest.fixture(scope="session", params=[np.float32, np.float16], ids=["fp32", "fp16"])
def dtype(request):
    return np.dtype(request.param)

"""Fixtures for the JAX suite: one backend per session (Pallas interpreted on a CPU, compiled on a
GPU) and the storage dtypes. JAX is told to use HIGHEST matmul precision nowhere globally: the
backend passes it explicitly, and the tests would catch a TF32 product on a GPU."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def backend():
    from backends.jax import JaxBackend

    return JaxBackend()


@pytest.fixture(scope="session", params=["float32", "float16", "bfloat16"])
def dtype(request):
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16) if request.param == "bfloat16" else np.dtype(request.param)

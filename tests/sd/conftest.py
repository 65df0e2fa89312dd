"""Fixtures for the Stable Diffusion tests: tiny configs, inputs, and the backends to run on.

Every backend that can start on this machine is tested (numpy always; opencl on PoCL or a GPU;
jax on CPU or GPU). The float64 numpy model is the reference every backend is compared with.
"""

import numpy as np
import pytest

from reference.sd.tiny import TINY_TEXT_ENCODER, TINY_UNET, TINY_VAE

BACKENDS = ["numpy", "opencl", "jax"]


def make_backend(name, optimizations=None):
    """The backend object the models and the pipeline run on (OpenCL poisons fresh buffers, so
    that a kernel reading memory it never wrote shows up as NaNs)."""
    from backends import get_backend

    options = {"poison": True} if name == "opencl" else {}
    return get_backend(name, optimizations=optimizations, **options)


@pytest.fixture(scope="session", params=BACKENDS)
def backend_name(request):
    return request.param


@pytest.fixture(scope="session")
def numpy_backend():
    """The unoptimized numpy backend, for tests about checkpoints, inputs and errors."""
    return make_backend("numpy")


@pytest.fixture(scope="session")
def tiny_text_config():
    return {**TINY_TEXT_ENCODER, "vocab_size": 120}


@pytest.fixture(scope="session")
def tiny_unet_config():
    return dict(TINY_UNET)


@pytest.fixture(scope="session")
def tiny_vae_config():
    """force_upcast off: with float16 storage the decoder then runs in float16, which the
    float16 tests are about (tests/sd/test_golden.py tests the upcast)."""
    return {**TINY_VAE, "force_upcast": False}


@pytest.fixture(scope="session")
def unet_inputs():
    """A batch of 2 latents (as with guidance), a timestep and 77 tokens of context."""
    rng = np.random.default_rng(1234)
    sample = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    context = rng.standard_normal((2, 77, 32)).astype(np.float32)
    return sample, 451, context

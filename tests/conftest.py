"""Hypothesis profiles, and the ``backend`` / ``dtype`` parametrization of the cross-backend tests.

Profiles: choose with HYPOTHESIS_PROFILE: ``ci`` (default) keeps `make test` within minutes on two
cores; ``thorough`` runs many more examples and larger shapes.

Backends. A test that takes the ``backend`` fixture runs once per backend available on this
machine (numpy always; opencl on PoCL or a GPU, with NaN-poisoned outputs; jax on CPU or GPU); a
test that also takes ``dtype`` runs once per (backend, storage dtype) pair, the backend's own
storage dtypes (``STORAGE_DTYPES``). ``@pytest.mark.backends("opencl", "jax")`` restricts a test to
some backends, ``@pytest.mark.dtypes("float32")`` to some dtypes. A backend that cannot start here
is skipped with the reason.
"""

import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("numpy", "opencl", "jax")
#: the storage dtypes each backend is tested with (numpy: as the GPU backends; float64 is the reference itself)
STORAGE_DTYPES = {
    "numpy": ("float32", "float16"),
    "opencl": ("float32", "float16"),
    "jax": ("float32", "float16", "bfloat16"),
}
SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run a cross-backend test on these backends only")
    config.addinivalue_line("markers", "dtypes(*names): run a cross-backend test with these storage dtypes only")


def _marked(metafunc, name, default):
    marker = metafunc.definition.get_closest_marker(name)
    return tuple(n for n in default if marker is None or n in marker.args)


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = _marked(metafunc, "backends", BACKENDS)
    if "dtype" in metafunc.fixturenames:
        pairs = [(b, d) for b in names for d in _marked(metafunc, "dtypes", STORAGE_DTYPES[b])]
        metafunc.parametrize(("backend", "dtype"), pairs, indirect=True,
                             ids=[f"{b}-{SHORT[d]}" for b, d in pairs])
    else:
        metafunc.parametrize("backend", names, indirect=True)


_started: dict = {}


def _start(name):
    """The backend ``name`` (one per session), or the reason it cannot start here."""
    if name not in _started:
        from backends import get_backend

        options = {"poison": True} if name == "opencl" else {}
        try:
            _started[name] = get_backend(name, **options)
        except (ImportError, RuntimeError) as exc:  # no pyopencl / no OpenCL platform / no jax
            _started[name] = f"{name} backend unavailable: {exc}"
    return _started[name]


@pytest.fixture
def backend(request):
    started = _start(request.param)
    if isinstance(started, str):
        pytest.skip(started)
    return started


@pytest.fixture
def dtype(request):
    return np.dtype(ml_dtypes.bfloat16) if request.param == "bfloat16" else np.dtype(request.param)

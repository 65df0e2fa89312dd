"""Backends: the op interface of ../shared/DESIGN.md on NumPy (the reference), OpenCL and JAX.

    from backends import get_backend, Optimizations
    be = get_backend("opencl", optimizations=Optimizations.paper())
    y = be.to_numpy(be.group_norm(be.asarray(x), 32))

Every backend is a ``Backend`` (``backends/base.py``, the op interface as code): ``asarray``,
``to_numpy`` and the ops with the reference's signatures plus their variant switches
(``fused=``, ``method=``, ``tile=``, whose defaults follow the ``Optimizations``); arrays stay on
the device between ops. Each paper idea has one module per backend, under the same name:

    idea                      reference/      backends/opencl/ (+ kernels/*.cl)   backends/jax/
    fused GroupNorm           group_norm.py   group_norm.py, group_norm.cl        group_norm.py
    fused GELU / GEGLU        gelu.py         gelu.py, gelu.cl                    gelu.py
    attention (3 variants)    attention.py    attention.py, attention.cl          attention.py
    Winograd F(m x m, 3 x 3)  winograd.py     winograd.py, winograd.cl            winograd.py
    matrix products           gemm.py         gemm.py, gemm.cl                    gemm.py
    the other ops             elementwise.py  elementwise.py, elementwise.cl      elementwise.py
"""

from __future__ import annotations

from .base import Backend, Timing
from .optimizations import Optimizations

__all__ = ["get_backend", "available_backends", "Backend", "Optimizations", "Timing"]

_BACKENDS = {
    "numpy": ("backends.numpy_backend", "NumpyBackend"),
    "opencl": ("backends.opencl", "OpenCLBackend"),
    "jax": ("backends.jax", "JaxBackend"),
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name, **options) -> Backend:
    """A backend by name: ``"numpy"``, ``"opencl"`` or ``"jax"`` (options: ``optimizations=``; for
    OpenCL ``device=``, ``poison=``, ``profiling=``; for JAX ``interpret=``, ``compiler_options=``), or a ``Backend`` as it is (then no
    options: they belong to the constructor of the backend you pass)."""
    if isinstance(name, Backend):
        if any(value is not None for value in options.values()):
            raise ValueError(f"{', '.join(options)}: pass options to the backend's constructor, not beside a backend "
                             f"object ({name!r})")
        return name
    if not isinstance(name, str):
        raise TypeError(f"name: expected a backend name or a Backend, got {type(name).__name__}")
    if name not in _BACKENDS:
        raise ValueError(f"name: unknown backend {name!r}; available: {', '.join(available_backends())}")
    import importlib

    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(**options)

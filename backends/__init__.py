"""Backends: the op interface of ../shared/DESIGN.md on NumPy (the reference), OpenCL and JAX.

    from backends import get_backend, Optimizations
    be = get_backend("opencl", optimizations=Optimizations.paper())
    y = be.to_numpy(be.group_norm(be.asarray(x), 32))

Every backend has ``asarray``, ``to_numpy`` and the ops with the reference's signatures plus
their variant switches (``fused=``, ``method=``, ``tile=``); arrays stay on the device between
ops. See ``backends/base.py`` for how defaults follow the ``Optimizations``.
"""

from __future__ import annotations

from .optimizations import Optimizations

__all__ = ["get_backend", "available_backends", "Optimizations"]

_BACKENDS = {
    "numpy": ("backends.numpy_backend", "NumpyBackend"),
    "opencl": ("backends.opencl", "OpenCLBackend"),
    "jax": ("backends.jax", "JaxBackend"),
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str, **options):
    """A backend by name: ``"numpy"``, ``"opencl"`` or ``"jax"`` (options: ``optimizations=``; for
    OpenCL ``device=``, ``poison=``; for JAX ``interpret=``)."""
    if name not in _BACKENDS:
        raise ValueError(f"name: unknown backend {name!r}; available: {', '.join(available_backends())}")
    import importlib

    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(**options)

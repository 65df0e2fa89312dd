"""Backends: the op interface of ../shared/DESIGN.md implemented on JAX and OpenCL.

The registry (``get_backend``) and the implementations arrive with the backend issues; the
NumPy semantics they must match live in ``reference/``.
"""

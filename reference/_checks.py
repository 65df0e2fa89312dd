"""Argument checks shared by the reference ops (and reused by the backends).

Every public op validates its inputs with these helpers so that bad input raises the same
clear error on every backend: the message names the argument, what it got and what was
expected. Nothing here converts silently; a wrong dtype is an error, not a cast.
"""

from __future__ import annotations

import numpy as np

#: Floating dtypes every op accepts. float16 means fp16 *storage*: the reference computes in
#: float32 and rounds the result back, as the GPU kernels do (DESIGN.md, "Numerics").
SUPPORTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_array(name: str, x, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as an ndarray after checking its dtype (and number of dimensions)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name}: unsupported dtype {x.dtype}; expected one of float16, float32, float64"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected {want} dimensions, got shape {x.shape}")
    return x


def check_same_dtype(**arrays) -> np.dtype:
    """All given arrays (None entries skipped) must share one dtype; return it."""
    present = {k: v for k, v in arrays.items() if v is not None}
    dtypes = {k: v.dtype for k, v in present.items()}
    first = next(iter(dtypes.values()))
    if any(d != first for d in dtypes.values()):
        listed = ", ".join(f"{k}={d}" for k, d in dtypes.items())
        raise TypeError(f"dtypes differ ({listed}); convert them to one dtype first")
    return first


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Arithmetic dtype for a storage dtype: float64 stays float64, the rest compute in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def check_vector(name: str, v, length: int) -> None:
    """``v`` is None or a 1-D array of ``length`` elements."""
    if v is None:
        return
    check_array(name, v, ndim=1)
    if v.shape[0] != length:
        raise ValueError(f"{name}: expected shape ({length},), got {v.shape}")


def pair(name: str, value) -> tuple[int, int]:
    """An int or a pair of non-negative ints, as (height, width)."""
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}") from None
    if a < 0 or b < 0:
        raise ValueError(f"{name}: expected non-negative values, got {value!r}")
    return a, b

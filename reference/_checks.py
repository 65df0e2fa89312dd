"""Argument checks shared by the reference ops (and reused by the backends).

Every public op validates its inputs with these helpers so that bad input raises the same
clear error on every backend: the message names the argument, what it got and what was
expected. Nothing here converts silently; a wrong dtype is an error, not a cast.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import ml_dtypes  # ships with jax
except ImportError:  # pragma: no cover
    ml_dtypes = None

#: Floating dtypes every op accepts. float16 (and bfloat16, from ml_dtypes, which JAX ships) mean
#: *storage*: the reference computes in float32 and rounds the result back, as the GPU kernels do
#: (DESIGN.md, "Numerics").
SUPPORTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)) + (
    (np.dtype(ml_dtypes.bfloat16),) if ml_dtypes is not None else ()
)


def check_array(name: str, x, ndim: int | tuple[int, ...] | None = None, array_type=np.ndarray):
    """Return ``x`` after checking its type, dtype (and number of dimensions).

    ``array_type`` is the backend's array class (numpy.ndarray for the reference)."""
    if not isinstance(x, array_type):
        expected = f"{array_type.__module__.split('.')[0]}.{array_type.__name__}"
        hint = " (convert it with the backend's asarray)" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"{name}: expected a {expected}, got {type(x).__name__}{hint}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name}: unsupported dtype {x.dtype}; expected one of {', '.join(str(d) for d in SUPPORTED_DTYPES)}"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected {want} dimensions, got shape {x.shape}")
    return x


def check_same_dtype(**arrays) -> np.dtype:
    """All given arrays (None entries skipped) must share one dtype; return it."""
    dtypes = [v.dtype for v in arrays.values() if v is not None]
    first = dtypes[0]
    if any(d != first for d in dtypes):
        listed = ", ".join(f"{k}={v.dtype}" for k, v in arrays.items() if v is not None)
        raise TypeError(f"dtypes differ ({listed}); convert them to one dtype first")
    return first


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Arithmetic dtype for a storage dtype: float64 stays float64, the rest compute in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def in_compute_dtype(x: np.ndarray) -> np.ndarray:
    """``x`` in its arithmetic dtype (``compute_dtype``); no copy when it already is."""
    return x.astype(compute_dtype(x.dtype), copy=False)


def check_vector(name: str, v, length: int, array_type=np.ndarray) -> None:
    """``v`` is None or a 1-D array of ``length`` elements."""
    if v is None:
        return
    check_array(name, v, ndim=1, array_type=array_type)
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


# --------------------------------------------------------------------------- per-op validators
# Shared by the reference and every backend, so that bad input gets the same error everywhere.


def check_eps(eps) -> float:
    """A normalization's ``eps``: a finite real number >= 0 (not a bool, not a string); returned
    as a float. 0 is allowed, as in torch.nn.GroupNorm / LayerNorm: the normalization is then
    exact, and a constant slab or row gives 0 / 0 = NaN there as it does in torch."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps: expected a finite number >= 0, got {eps!r}")
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    return value


def check_group_norm(x, num_groups, weight, bias, array_type=np.ndarray, eps=1e-5) -> float:
    """Validate a GroupNorm's arguments; return eps as a float."""
    check_array("x", x, ndim=tuple(range(2, 6)), array_type=array_type)
    c = x.shape[1]
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, (int, np.integer)) \
            or num_groups <= 0:
        raise ValueError(f"num_groups: expected a positive int, got {num_groups!r}")
    if c % num_groups != 0:
        raise ValueError(
            f"num_groups: the channel count C={c} of x is not divisible by num_groups={num_groups}"
        )
    check_vector("weight", weight, c, array_type)
    check_vector("bias", bias, c, array_type)
    check_same_dtype(x=x, weight=weight, bias=bias)
    return check_eps(eps)


def check_layer_norm(x, weight, bias, array_type=np.ndarray, eps=1e-5) -> float:
    """Validate a LayerNorm's arguments; return eps as a float."""
    check_array("x", x, array_type=array_type)
    if x.ndim == 0:
        raise ValueError("x: expected at least one dimension, got a scalar")
    check_vector("weight", weight, x.shape[-1], array_type)
    check_vector("bias", bias, x.shape[-1], array_type)
    check_same_dtype(x=x, weight=weight, bias=bias)
    return check_eps(eps)


def check_geglu(x, array_type=np.ndarray) -> None:
    check_array("x", x, array_type=array_type)
    if x.ndim == 0 or x.shape[-1] % 2 != 0:
        raise ValueError(f"x: the last axis must have an even size to split in halves, got shape {x.shape}")


def check_softmax(x, axis, array_type=np.ndarray) -> None:
    check_array("x", x, array_type=array_type)
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: {axis!r} is out of range for x of shape {x.shape}")


def check_linear(x, weight, bias, array_type=np.ndarray) -> None:
    check_array("x", x, array_type=array_type)
    check_array("weight", weight, ndim=2, array_type=array_type)
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight: expected shape (out_features, {x.shape[-1] if x.ndim else '?'}) to match the "
            f"last axis of x {x.shape}, got {weight.shape}"
        )
    check_vector("bias", bias, weight.shape[0], array_type)
    check_same_dtype(x=x, weight=weight, bias=bias)


def check_conv2d(x, w, b, stride, padding, array_type=np.ndarray, scale_factor: int = 1) -> tuple[int, int, int, int]:
    """Validate a convolution's arguments; return (stride_h, stride_w, pad_h, pad_w). With a
    ``scale_factor``, the convolution reads x upsampled by it (``upsample_conv2d``)."""
    check_array("x", x, ndim=4, array_type=array_type)
    check_array("w", w, ndim=4, array_type=array_type)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w: expected {x.shape[1]} input channels (shape (O, {x.shape[1]}, kh, kw)) to match x "
            f"{x.shape}, got {w.shape}"
        )
    check_vector("b", b, w.shape[0], array_type)
    check_same_dtype(x=x, w=w, b=b)
    sh, sw = pair("stride", stride)
    if sh == 0 or sw == 0:
        raise ValueError(f"stride: expected positive values, got {stride!r}")
    ph, pw = pair("padding", padding)
    height, width = x.shape[2] * scale_factor + 2 * ph, x.shape[3] * scale_factor + 2 * pw
    if height < w.shape[2] or width < w.shape[3]:
        upsampled = f" (x upsampled {scale_factor}x)" if scale_factor != 1 else ""
        raise ValueError(
            f"x: the padded input{upsampled} {height}x{width} is smaller than the kernel "
            f"{w.shape[2]}x{w.shape[3]}"
        )
    return sh, sw, ph, pw


def check_winograd(x, w, b, padding, m, stride, array_type=np.ndarray, scale_factor: int = 1) -> tuple[int, int]:
    """Validate a Winograd convolution's arguments (of x upsampled by ``scale_factor``, as
    check_conv2d); return (pad_h, pad_w)."""
    if pair("stride", stride) != (1, 1):
        raise ValueError(f"stride: Winograd convolution needs stride 1, got {stride!r}; use method='direct'")
    check_array("x", x, ndim=4, array_type=array_type)
    check_array("w", w, ndim=4, array_type=array_type)
    if tuple(w.shape[2:]) != (3, 3):
        raise ValueError(f"w: Winograd F(m x m, 3 x 3) needs a 3x3 kernel, got kernel size {tuple(w.shape[2:])}")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m: expected a positive int output tile size, got {m!r}")
    _, _, ph, pw = check_conv2d(x, w, b, 1, padding, array_type, scale_factor)
    return ph, pw


def check_qkv(q, k, v, scale, array_type=np.ndarray, causal=False) -> float:
    """Validate attention inputs q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) and the ``causal``
    flag; return the scale."""
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal: expected True or False, got {causal!r}")
    check_array("q", q, ndim=4, array_type=array_type)
    check_array("k", k, ndim=4, array_type=array_type)
    check_array("v", v, ndim=4, array_type=array_type)
    check_same_dtype(q=q, k=k, v=v)
    b, h, _, d = q.shape
    if tuple(k.shape[:2]) != (b, h) or k.shape[3] != d:
        raise ValueError(f"k: expected shape ({b}, {h}, M, {d}) to match q {tuple(q.shape)}, got {tuple(k.shape)}")
    if tuple(v.shape[:3]) != tuple(k.shape[:3]):
        raise ValueError(
            f"v: expected shape {tuple(k.shape[:3]) + ('dv',)} to match k {tuple(k.shape)}, got {tuple(v.shape)}"
        )
    if 0 in q.shape or 0 in k.shape or 0 in v.shape:
        raise ValueError(f"q, k, v: empty dimensions are not allowed, got {q.shape}, {k.shape}, {v.shape}")
    if scale is None:
        return 1.0 / math.sqrt(d)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale: expected a finite number, got {scale}")
    return scale


def check_same_shape(a, b, array_type=np.ndarray) -> None:
    """Two arrays of one shape and dtype (an elementwise op of two operands)."""
    check_array("a", a, array_type=array_type)
    check_array("b", b, array_type=array_type)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    check_same_dtype(a=a, b=b)


def check_add_broadcast(x, v, array_type=np.ndarray) -> None:
    """x (N, C, *spatial) and a per-(sample, channel) vector v (N, C) of x's dtype."""
    check_array("x", x, array_type=array_type)
    check_array("v", v, ndim=2, array_type=array_type)
    if x.ndim < 2 or tuple(v.shape) != tuple(x.shape[:2]):
        raise ValueError(f"v: expected shape {tuple(x.shape[:2])} (N, C) to match x {tuple(x.shape)}, got {tuple(v.shape)}")
    check_same_dtype(x=x, v=v)


def check_scalar(name: str, s) -> float:
    """A real Python or NumPy number (not a bool, not an array); returned as a float."""
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {s!r}")
    return float(s)


def check_upsample(x, scale_factor, array_type=np.ndarray) -> int:
    """x (N, C, H, W) and a positive int factor; return the factor."""
    check_array("x", x, ndim=4, array_type=array_type)
    if isinstance(scale_factor, (bool, np.bool_)) or not isinstance(scale_factor, (int, np.integer)) \
            or scale_factor < 1:
        raise ValueError(f"scale_factor: expected a positive int, got {scale_factor!r}")
    return int(scale_factor)


def check_block(name: str, block) -> int:
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"{name}: expected a positive int, got {block!r}")
    return int(block)


def check_concat(arrays, axis, array_type=np.ndarray) -> int:
    """Validate a concatenation; return the axis as a non-negative int."""
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise ValueError(f"arrays: expected a non-empty list of arrays, got {type(arrays).__name__}")
    for i, a in enumerate(arrays):
        check_array(f"arrays[{i}]", a, array_type=array_type)
    first = arrays[0]
    if not isinstance(axis, (int, np.integer)) or not -first.ndim <= axis < first.ndim:
        raise ValueError(f"axis: {axis!r} is out of range for arrays of {first.ndim} dimensions")
    axis = int(axis) % first.ndim
    for i, a in enumerate(arrays[1:], start=1):
        if a.ndim != first.ndim or any(a.shape[d] != first.shape[d] for d in range(first.ndim) if d != axis):
            raise ValueError(
                f"arrays[{i}]: shape {tuple(a.shape)} does not match arrays[0] {tuple(first.shape)} outside axis {axis}"
            )
    check_same_dtype(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    return axis


def check_reshape(x, shape, array_type=np.ndarray) -> tuple[int, ...]:
    """Validate a reshape of x to ``shape`` (a tuple of ints, no -1); return the shape."""
    check_array("x", x, array_type=array_type)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape: expected a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape) or math.prod(shape) != math.prod(x.shape):
        raise ValueError(f"shape: expected non-negative sizes with {math.prod(x.shape)} elements in all "
                         f"(x has shape {tuple(x.shape)}), got {shape}")
    return shape


def check_transpose(x, axes, array_type=np.ndarray) -> tuple[int, ...]:
    """Validate a permutation ``axes`` of x's axes (as numpy.transpose); return it as a tuple."""
    check_array("x", x, array_type=array_type)
    try:
        axes = tuple(int(a) for a in axes)
    except TypeError:
        raise TypeError(f"axes: expected a tuple of ints, got {axes!r}") from None
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"axes: expected a permutation of {tuple(range(x.ndim))} for x of shape "
                         f"{tuple(x.shape)}, got {axes}")
    return axes

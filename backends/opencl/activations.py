"""Host side of kernels/activations.cl: GELU and GEGLU (fused and unfused), SiLU, quick GELU,
nearest upsampling and the elementwise ops of the SD network.

The math (reference/ops.py defines it):

    gelu(x)       = x/2 * (1 + erf(x / sqrt 2))                         (exact, SD 1.x)
                  ~ x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))   (approximate=True)
    geglu(x)      = a * gelu(b),  a = x[..., :F], b = x[..., F:]
    silu(x)       = x * sigmoid(x);   quick_gelu(x) = x * sigmoid(1.702 x)

Kernel plans (launches, temporaries; "n" = x.size, temporaries have x's storage dtype):

    gelu, fused      1 launch (``gelu``), no temporaries: the paper's fused GELU. The kernel
                     evaluates x/2 * erfc(-x/sqrt 2), the same function as x/2 * (1 + erf(...))
                     but without its cancellation for negative x (OpenCL's own erfc, no
                     polynomial); the tanh form likewise as x * sigmoid(2u), 1 + tanh(u) =
                     2 sigmoid(2u). So the fused kernel keeps a relative accuracy in the negative
                     tail that the op-by-op graph (and a literal 1 + erf) loses.
    gelu, unfused    the op-by-op graph an unfused framework runs, one kernel per node, every
                     intermediate a fresh tensor:
                       erf form:   t1 = x * (1/sqrt 2); t2 = erf(t1); t3 = t2 + 1; y = 0.5 * x * t3
                                   -> 4 launches, 3 temporaries of n elements
                       tanh form:  t1 = x * x; t2 = 0.044715 * t1 * x; t3 = x + t2;
                                   t4 = sqrt(2/pi) * t3; t5 = tanh(t4); t6 = t5 + 1; y = 0.5 * x * t6
                                   -> 7 launches, 6 temporaries
                     (the final "0.5 * x * t" is one multiply kernel with a scalar factor).
    geglu, fused     1 launch (``geglu``) reading both halves of x, writing a * gelu(b).
    geglu, unfused   split_halves (1 launch, temporaries a and b of n/2 each), the unfused gelu
                     of b into a temporary (4 or 7 launches), then mul a * gelu(b) (1 launch):
                     6 launches and 6 temporaries (erf form), 9 and 9 (tanh form).
    silu, quick_gelu, upsample_nearest2d, add, add_broadcast, mul_scalar: 1 launch each, no
                     temporaries.

Every elementwise kernel runs one work-item per output element in work-groups of ``LOCAL``
items, with a bounds check for the ragged last group.
"""

from __future__ import annotations

import math

from .runtime import Runtime

FILE = "activations.cl"
#: Work-group size of the elementwise kernels (the global size is rounded up to it).
LOCAL = 256
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _count(x) -> int:
    n = int(x.size)
    if n >= 2**31:
        raise ValueError(f"x: {n} elements exceed the int32 indexing of the OpenCL kernels; split the tensor")
    return n


def _elementwise(rt: Runtime, name: str, n: int, dtype, *args) -> None:
    """Launch the elementwise kernel ``name`` over n items (nothing for an empty tensor)."""
    if n:
        rt.launch(rt.kernel(FILE, name, dtype), (n,), (LOCAL,), *args)


# ----------------------------------------------------------------------------------- GELU


def gelu(rt: Runtime, x, approximate: bool, fused: bool):
    """GELU of x (any shape); ``fused`` picks one kernel or the op-by-op graph."""
    y = rt.empty(x.shape, x.dtype)
    if fused:
        n = _count(x)
        _elementwise(rt, "gelu", n, x.dtype, x, y, n, bool(approximate))
    else:
        _gelu_unfused(rt, x, y, approximate)
    return y


def _gelu_unfused(rt: Runtime, x, y, approximate: bool) -> None:
    """The unfused graph into ``y``: one launch per node, one temporary per intermediate."""
    n, dt = _count(x), x.dtype

    def node(name, inputs, scalars=()):
        """Run kernel ``name`` on ``inputs`` into a fresh temporary: (*inputs, out, n, *scalars)."""
        out = rt.temp(x.shape, dt)
        _elementwise(rt, name, n, dt, *inputs, out, n, *scalars)
        return out

    if approximate:
        t = node("mul", (x, x), (1.0,))                        # x^2
        t = node("mul", (t, x), (0.044715,))                   # 0.044715 x^3
        t = node("add", (x, t))                                # x + 0.044715 x^3
        t = node("scale_shift", (t,), (SQRT_2_OVER_PI, 0.0))   # sqrt(2/pi) * (...)
        t = node("tanh_map", (t,))                             # tanh(...)
    else:
        t = node("scale_shift", (x,), (1.0 / math.sqrt(2.0), 0.0))  # x / sqrt 2
        t = node("erf_map", (t,))                                   # erf(x / sqrt 2)
    t = node("scale_shift", (t,), (1.0, 1.0))                  # 1 + ...
    _elementwise(rt, "mul", n, dt, x, t, y, n, 0.5)          # y = 0.5 * x * (1 + ...)


def geglu(rt: Runtime, x, approximate: bool, fused: bool):
    """a * gelu(b) with a, b the halves of x's last axis (size 2F); the output has last axis F."""
    features = x.shape[-1] // 2
    y = rt.empty(x.shape[:-1] + (features,), x.dtype)
    n = _count(y)
    if fused:
        _elementwise(rt, "geglu", n, x.dtype, x, y, features, n, bool(approximate))
        return y
    a, b = rt.temp(y.shape, x.dtype), rt.temp(y.shape, x.dtype)
    _elementwise(rt, "split_halves", n, x.dtype, x, a, b, features, n)
    gate = rt.temp(y.shape, x.dtype)
    _gelu_unfused(rt, b, gate, approximate)
    _elementwise(rt, "mul", n, x.dtype, a, gate, y, n, 1.0)
    return y


# ----------------------------------------------------------------------------------- SiLU & co


def silu(rt: Runtime, x):
    """x * sigmoid(x), one launch."""
    y = rt.empty(x.shape, x.dtype)
    silu_into(rt, x, y)
    return y


def silu_into(rt: Runtime, x, y) -> None:
    """SiLU of x written into y (same shape and dtype; y may be x: in place)."""
    n = _count(x)
    _elementwise(rt, "silu", n, x.dtype, x, y, n)


def quick_gelu(rt: Runtime, x):
    """CLIP's x * sigmoid(1.702 x), one launch."""
    y = rt.empty(x.shape, x.dtype)
    n = _count(x)
    _elementwise(rt, "quick_gelu", n, x.dtype, x, y, n)
    return y


# ----------------------------------------------------------------------------------- resize & arithmetic


def upsample_nearest2d(rt: Runtime, x, scale_factor: int):
    """NCHW nearest upsampling: y[n, c, i, j] = x[n, c, i // s, j // s], one launch."""
    nb, c, h, w = x.shape
    s = int(scale_factor)
    y = rt.empty((nb, c, h * s, w * s), x.dtype)
    _count(y)
    if y.size:
        rt.launch(rt.kernel(FILE, "upsample_nearest2d", x.dtype), (w * s, h * s, nb * c), (16, 16, 1),
                  x, y, h, w, s)
    return y


def _same_dtype(**arrays):
    dtypes = {k: v.dtype for k, v in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{k}={d}" for k, d in dtypes.items())
        raise TypeError(f"dtypes differ ({listed}); convert them to one dtype first")


def add(rt: Runtime, a, b):
    """a + b for two arrays of one shape, one launch."""
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
    _same_dtype(a=a, b=b)
    y = rt.empty(a.shape, a.dtype)
    n = _count(a)
    _elementwise(rt, "add", n, a.dtype, a, b, y, n)
    return y


def add_broadcast(rt: Runtime, x, v):
    """x + v[:, :, None, None]: v of shape (N, C) added at every spatial position of x
    (N, C, *spatial) (the timestep-embedding add of SD's ResNet blocks), one launch."""
    if x.ndim < 2 or v.shape != x.shape[:2]:
        raise ValueError(f"v: expected shape {x.shape[:2]} (the first two axes of x {x.shape}), got {v.shape}")
    _same_dtype(x=x, v=v)
    y = rt.empty(x.shape, x.dtype)
    n = _count(x)
    spatial = n // max(1, v.size)
    _elementwise(rt, "add_broadcast", n, x.dtype, x, v, y, spatial, n)
    return y


def mul_scalar(rt: Runtime, x, s: float):
    """s * x for a Python scalar s, one launch (computed in float32)."""
    y = rt.empty(x.shape, x.dtype)
    n = _count(x)
    _elementwise(rt, "scale_shift", n, x.dtype, x, y, n, float(s), 0.0)
    return y


# ----------------------------------------------------------------------------------- layout


def concat(rt: Runtime, arrays, axis: int):
    """Concatenate along ``axis`` (the UNet's skip connections join channels): one
    ``copy_into_slice`` launch per input, no temporaries."""
    first = arrays[0]
    _same_dtype(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    total = sum(int(a.shape[axis]) for a in arrays)
    out_shape = first.shape[:axis] + (total,) + first.shape[axis + 1:]
    y = rt.empty(out_shape, first.dtype)
    inner = math.prod(first.shape[axis + 1:])
    offset = 0
    for a in arrays:
        n = _count(a)
        _elementwise(rt, "copy_into_slice", n, a.dtype, a, y, n, int(a.shape[axis]), inner, total, offset)
        offset += int(a.shape[axis])
    return y

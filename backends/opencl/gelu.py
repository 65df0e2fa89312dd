"""GELU and GEGLU, the paper's second idea, on OpenCL: the fused kernels and the unfused
op-by-op graph. Host side of kernels/gelu.cl.

The math (reference/gelu.py defines it):

    gelu(x)       = x/2 * (1 + erf(x / sqrt 2))                         (exact, SD 1.x)
                  ~ x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))   (approximate=True)
    geglu(x)      = a * gelu(b),  a = x[..., :F], b = x[..., F:]

Kernel plans (launches, temporaries; "n" = x.size, temporaries have x's storage dtype):

    gelu, fused      1 launch (``gelu``), no temporaries: the paper's fused GELU. The kernel
                     evaluates x/2 * erfc(-x/sqrt 2), the same function as x/2 * (1 + erf(...))
                     but without its cancellation for negative x, with erfc from Numerical
                     Recipes' Chebyshev fit (fractional error < 1.2e-7; as evaluated in float32
                     within 8 ulps by test, 3.7 measured on PoCL; gelu.cl), because OpenCL's own
                     erfc made the fused GEGLU 1.45x slower than the same kernel with no gate on
                     an H200; the tanh form likewise as x * sigmoid(2u), 1 + tanh(u) =
                     2 sigmoid(2u). So the fused kernel keeps a relative accuracy in the negative
                     tail that the op-by-op graph (and a literal 1 + erf) loses.
    gelu, unfused    the op-by-op graph an unfused framework runs, one kernel per node, every
                     intermediate a fresh tensor:
                       erf form:   t1 = x * (1/sqrt 2); t2 = erf(t1); t3 = t2 + 1; y = 0.5 * x * t3
                                   -> 4 launches, 3 temporaries of n elements
                       tanh form:  t1 = x * x; t2 = 0.044715 * t1 * x; t3 = x + t2;
                                   t4 = sqrt(2/pi) * t3; t5 = tanh(t4); t6 = t5 + 1; y = 0.5 * x * t6
                                   -> 7 launches, 6 temporaries
                     (the final "0.5 * x * t" is one multiply kernel with a scalar factor; the
                     arithmetic nodes are elementwise.cl's scale_shift, add and mul).
    geglu, fused     1 launch (``geglu``) reading both halves of x, writing a * gelu(b).
    geglu, unfused   split_halves (1 launch, temporaries a and b of n/2 each), the unfused gelu
                     of b into a temporary (4 or 7 launches), then mul a * gelu(b) (1 launch):
                     6 launches and 6 temporaries (erf form), 9 and 9 (tanh form).

The fused kernels read and write vectors of 4 elements (one aligned 16-byte fp32 or 8-byte fp16
access) where the length (GEGLU: F) is a multiple of 4, else single elements; each item loads
``PER_ITEM`` vectors (32 bytes of each input) before it computes, so enough bytes are in flight
to run at copy speed. The unfused primitives run one work-item per output element in work-groups
of ``elementwise.LOCAL`` items. All have a bounds check for the ragged last group.
"""

from __future__ import annotations

import math

import numpy as np

from .elementwise import FILE as ELEMENTWISE_FILE
from .elementwise import elementwise_launch
from .runtime import Runtime, check_int32_indexing

FILE = "gelu.cl"
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


#: Work-group size of the fused kernels.
FUSED_WG = 256
#: Vectors each item of a fused kernel loads before it computes: 32 bytes of every input in flight.
PER_ITEM = {np.dtype(np.float32): 2, np.dtype(np.float16): 4}


def _fused_launch(rt: Runtime, name: str, n: int, dtype, x, y, approximate: bool, features: int | None = None):
    """One launch of the fused ``gelu`` or ``geglu`` over n output elements: vectors of 4 where
    n (and GEGLU's F) is a multiple of 4, else of 1; ``PER_ITEM`` vectors per item."""
    if not n:
        return
    vec = 4 if n % 4 == 0 and (features is None or features % 4 == 0) else 1
    per_item = PER_ITEM[np.dtype(dtype)]
    kernel = rt.kernel(FILE, name, dtype, {"VEC": vec, "PER_ITEM": per_item, "WG": FUSED_WG})
    n_vec = n // vec
    groups = -(-n_vec // (FUSED_WG * per_item))
    shape_args = (n_vec,) if features is None else (features // vec, n_vec)
    rt.launch(kernel, (groups * FUSED_WG,), (FUSED_WG,), x, y, *shape_args, approximate)


# ----------------------------------------------------------------------------------- GELU


def gelu(rt: Runtime, x, approximate: bool, fused: bool):
    """GELU of x (any shape); ``fused`` picks one kernel or the op-by-op graph."""
    n = check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if fused:
        _fused_launch(rt, "gelu", n, x.dtype, x, y, bool(approximate))
    else:
        gelu_unfused_into(rt, x, y, approximate)
    return y


def gelu_unfused_into(rt: Runtime, x, y, approximate: bool) -> None:
    """The unfused graph of gelu(x) into ``y``: one launch per node, one temporary per intermediate."""
    n, dt = check_int32_indexing("x", x.size), x.dtype

    def node(file, name, inputs, scalars=()):
        """Run kernel ``name`` on ``inputs`` into a fresh temporary: (*inputs, out, n, *scalars)."""
        out = rt.temp(x.shape, dt)
        elementwise_launch(rt, file, name, n, dt, *inputs, out, n, *scalars)
        return out

    arith = ELEMENTWISE_FILE
    if approximate:
        t = node(arith, "mul", (x, x), (1.0,))                        # x^2
        t = node(arith, "mul", (t, x), (0.044715,))                   # 0.044715 x^3
        t = node(arith, "add", (x, t))                                # x + 0.044715 x^3
        t = node(arith, "scale_shift", (t,), (SQRT_2_OVER_PI, 0.0))   # sqrt(2/pi) * (...)
        t = node(FILE, "tanh_map", (t,))                              # tanh(...)
    else:
        t = node(arith, "scale_shift", (x,), (1.0 / math.sqrt(2.0), 0.0))  # x / sqrt 2
        t = node(FILE, "erf_map", (t,))                                    # erf(x / sqrt 2)
    t = node(arith, "scale_shift", (t,), (1.0, 1.0))                  # 1 + ...
    elementwise_launch(rt, arith, "mul", n, dt, x, t, y, n, 0.5)                 # y = 0.5 * x * (1 + ...)


# ----------------------------------------------------------------------------------- GEGLU


def geglu(rt: Runtime, x, approximate: bool, fused: bool):
    """a * gelu(b) with a, b the halves of x's last axis (size 2F); the output has last axis F."""
    features = x.shape[-1] // 2
    check_int32_indexing("x", x.size)  # the kernels read x[row * 2F + j] with int indices
    y = rt.empty(x.shape[:-1] + (features,), x.dtype)
    n = y.size
    if fused:
        _fused_launch(rt, "geglu", n, x.dtype, x, y, bool(approximate), features=features)
        return y
    a, b = rt.temp(y.shape, x.dtype), rt.temp(y.shape, x.dtype)
    elementwise_launch(rt, FILE, "split_halves", n, x.dtype, x, a, b, features, n)
    gate = rt.temp(y.shape, x.dtype)
    gelu_unfused_into(rt, b, gate, approximate)
    elementwise_launch(rt, ELEMENTWISE_FILE, "mul", n, x.dtype, a, gate, y, n, 1.0)
    return y

"""GELU and GEGLU, the paper's second idea, in JAX: the jnp baseline (XLA fuses the whole
elementwise chain itself) and the fused Pallas kernels.

The math (reference/gelu.py defines it), elementwise:

    gelu(x)  = x/2 * erfc(-x / sqrt 2)                      (exact, SD 1.x; = x/2 (1 + erf(x/sqrt 2)))
             ~ x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)   (approximate=True; = tanh form)
    geglu(x) = a * gelu(b),  a = x[..., :F], b = x[..., F:].

Storage may be float32, float16 or bfloat16; every version computes in float32 and casts only
the stored result back to x's dtype.

``gelu``, ``geglu`` (jnp): the baseline, in reference/gelu.py's spellings (no 1 + erf
cancellation for negative x), with XLA's erfc.

``gelu_fused``, ``geglu_fused`` (Pallas): each ONE ``pl.pallas_call``; around it the wrapper
only reshapes and, for ragged sizes, pads and crops (``pallas_util.choose_block``):

    gelu         grid (n / BLOCK,): x flattened, one program per BLOCK (<= 1024) elements.
    geglu        x viewed as (R, 2, F) (free: the last axis 2F is the two halves), grid
                 (R / ROWS, F / BLOCK): each program reads a (ROWS, BLOCK) tile of a and the same
                 tile of b, and writes a * gelu(b) (``geglu_tile``: BLOCK divides F, ROWS * BLOCK
                 = the GELU's block). The split, the activation and the product are one pass: no
                 temporaries.

erfc. The Pallas-Triton lowering has no rule for ``lax.erf`` / ``lax.erfc`` (jax 0.10.2 and a 2026 jax HEAD:
jax/_src/pallas/triton/lowering.py lowers exp, log, tanh, floor, abs, rsqrt, ... and only
``erf_inv``). ``erfc`` below is Cephes' single-precision erfcf, the same coefficients as XLA's
ErfcImpl32 / ErfImpl32 (xla/client/lib/math.cc), built from exp, floor and polynomials:

    |x| < 1:  erfc(x) = 1 - x T(x^2)                               (T: degree 6)
    |x| >= 1: erfc(|x|) = exp(-x^2) / |x| * P(1/x^2)   1 <= |x| < 2  (P: degree 8)
                                          * R(1/x^2)   |x| >= 2      (R: degree 7)
              erfc(x) = 2 - erfc(|x|) for x < 0.

One change: exp(-x^2) is evaluated as exp(-h^2) * exp(-l (|x| + h)) with h = |x| rounded to a
multiple of 1/256 (so h^2 is exact in float32) and l = |x| - h, the second factor by its Taylor
polynomial (|l (|x| + h)| < 0.04, error < 1e-9): the float32 rounding of x^2 would otherwise cost
a relative error of x^2 * 2^-24 (4e-6 at x = 9, where XLA's own float32 erfc is that far off); on a
dense float32 grid over [-10, 10] we measured <= 4e-7 relative for x >= 1, <= 7e-7 relative for
0 <= x < 1 (where 1 - erf rounds) and <= 1.7e-7 absolute everywhere (tests/test_gelu.py
asserts 1e-6 relative and 2e-7 absolute). (Writing the second factor as a polynomial rather than an
exp also stops XLA from folding exp(a) * exp(b) back into exp(a + b) in interpret mode.)

A cheaper erfc for 16-bit storage. Both kernels and XLA's fusion produce the same 270-305 G outputs/s
in fp16 and fp32 on the H200 (notes/gelu.md): the erfc's arithmetic, not memory, bounds them, and
Cephes' form evaluates three polynomials for every output (degrees 6, 8 and 7: ``jnp.where``
computes every branch), a fourth for the exact square, a floor, a division and an exp. ``erfc_chebyshev`` is Numerical Recipes' erfcc (Press et al., section 6.2, a
Chebyshev fit of the form below; fractional error < 1.2e-7 for every z >= 0 in exact arithmetic):

    erfc(z) = t exp(-z^2 + C(t)),  t = 1 / (1 + |z|/2),  C: degree 9;  erfc(z) = 2 - erfc(|z|) for z < 0

one division, one exp and 9 multiply-adds. In float32 the rounding of z^2 costs up to z^2 2^-24
relative: on a float32 grid over [-10, 10] we measured <= 4.0e-6 relative where the result is a
normal float32 (at z = 8.4; <= 3.9e-7 for |z| < 1, <= 7.5e-7 for |z| < 3) and <= 3.3e-7 absolute.
That is 60x below float16's relative rounding error (2^-11) and 480x below bfloat16's (2^-8), so a
16-bit output is one of the exact GELU's two 16-bit neighbours (tests/jax/test_jax_gelu.py checks
every fp16 and bf16 value in [-12, 12]). ``erfc_form``: "cephes" (float32-accurate), "chebyshev",
or None (``default_erfc_form``: "cephes" for float32 storage, "chebyshev" for 16-bit storage).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .pallas_util import cdiv, choose_block, compiler_params, next_power_of_2, pad_last, pad_to, sigmoid, warps_for_block

__all__ = ["gelu", "geglu", "gelu_fused", "geglu_fused", "erfc", "erfc_chebyshev", "default_erfc_form", "ERFC_FORMS"]

F32 = jnp.float32
#: Largest block of the fused elementwise kernels.
ELEMENTWISE_BLOCK = 1024
SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# Cephes erff / erfcf coefficients (highest degree first), as in XLA's ErfImpl32 / ErfcImpl32.
_ERF_T = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
          1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710e0)
_ERFC_P = (2.326819970068386e-2, -1.387039388740657e-1, 3.687424674597105e-1, -5.824733027278666e-1,
           6.210004621745983e-1, -4.944515323274145e-1, 3.404879937665872e-1, -2.741127028184656e-1,
           5.638259427386472e-1)
_ERFC_R = (-1.047766399936249e1, 1.297719955372516e1, -7.495518717768503e0, 2.921019019210786e0,
           -1.015265279202700e0, 4.218463358204948e-1, -2.820767439740514e-1, 5.641895067754075e-1)
# Numerical Recipes' erfcc coefficients (highest degree first): erfc(z) = t exp(-z^2 + C(t)).
_ERFC_CHEBYSHEV = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
                   0.37409196, 1.00002368, -1.26551223)
#: the fused kernels' erfc: float32-accurate Cephes, or the cheaper Chebyshev fit (16-bit storage)
ERFC_FORMS = ("cephes", "chebyshev")


# ----------------------------------------------------------------------------------- unfused (jnp)


def _gelu_f32(x, approximate: bool, erfc_fn=lax.erfc):
    """GELU of a float32 array in reference/gelu.py's spellings: x/2 erfc(-x/sqrt 2), or
    x sigmoid(2u) for the tanh form. ``erfc_fn``: XLA's (jnp), or ``erfc`` below in kernels."""
    if approximate:
        return x * sigmoid(2.0 * SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * x * erfc_fn(-SQRT_HALF * x)


@functools.partial(jax.jit, static_argnums=(1,))
def gelu(x, approximate: bool = False):
    """GELU, in reference/gelu.py's spellings (no 1 + erf cancellation for negative x):

        exact:        gelu(x) = x/2 * erfc(-x / sqrt 2)
        approximate:  gelu(x) ~ x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)   (= tanh form)"""
    return _gelu_f32(x.astype(F32), approximate).astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def geglu(x, approximate: bool = False):
    """GEGLU of x (..., 2F): a * gelu(b) with a = x[..., :F], b = x[..., F:] (diffusers' GEGLU)."""
    a, b = jnp.split(x.astype(F32), 2, axis=-1)
    return (a * _gelu_f32(b, approximate)).astype(x.dtype)


# ----------------------------------------------------------------------------------- erfc for the kernels


def _horner(coefficients, y):
    acc = jnp.full_like(y, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * y + c
    return acc


def erfc(x):
    """Complementary error function of a float32 array, from ops the Pallas-Triton lowering has
    (Cephes' erfcf with an exact-square exp(-x^2); see the module docstring). Usable inside
    and outside kernels."""
    a = jnp.abs(x)
    inner = 1.0 - x * _horner(_ERF_T, x * x)                 # |x| < 1
    q = 1.0 / jnp.maximum(a, 1.0)                            # 1/|x| (the max guards the |x| < 1 lanes)
    poly = jnp.where(a < 2.0, _horner(_ERFC_P, q * q), _horner(_ERFC_R, q * q))
    h = jnp.floor(a * 256.0 + 0.5) * (1.0 / 256.0)           # h^2 is exact in float32
    d = (a - h) * (a + h)                                    # x^2 = h^2 + d, |d| < 0.04 where it matters
    exp_minus_d = 1.0 + d * (-1.0 + d * (0.5 + d * (-1.0 / 6.0 + d * (1.0 / 24.0))))
    tail = jnp.exp(-h * h) * exp_minus_d * q * poly         # erfc(|x|) for |x| >= 1
    outer = jnp.where(x < 0.0, 2.0 - tail, tail)
    return jnp.where(a < 1.0, inner, outer)


def erfc_chebyshev(x):
    """Complementary error function of a float32 array, Numerical Recipes' erfcc (module
    docstring): t exp(-x^2 + C(t)) with t = 1 / (1 + |x|/2), reflected for x < 0; within 4e-6
    relative of erfc (module docstring). The fused kernels' erfc in 16-bit storage."""
    a = jnp.abs(x)
    t = 1.0 / (1.0 + 0.5 * a)
    tail = t * jnp.exp(_horner(_ERFC_CHEBYSHEV, t) - a * a)
    return jnp.where(x < 0.0, 2.0 - tail, tail)


def default_erfc_form(dtype) -> str:
    """The fused kernels' erfc for a storage dtype: "cephes" (float32-accurate) for float32,
    "chebyshev" (within one rounding of the 16-bit result, with under half the multiply-adds) otherwise."""
    return "cephes" if jnp.dtype(dtype) == jnp.float32 else "chebyshev"


def _erfc_of_form(form: str | None, dtype):
    form = default_erfc_form(dtype) if form is None else form
    if form not in ERFC_FORMS:
        raise ValueError(f"erfc_form: expected None or one of {ERFC_FORMS}, got {form!r}")
    return erfc if form == "cephes" else erfc_chebyshev


# ----------------------------------------------------------------------------------- fused (Pallas)


def _gelu_kernel(x_ref, y_ref, *, approximate, erfc_fn):
    y_ref[...] = _gelu_f32(x_ref[...].astype(F32), approximate, erfc_fn).astype(y_ref.dtype)


def _check_block(max_block, num_warps):
    if max_block < 1 or max_block & (max_block - 1):
        raise ValueError(f"max_block: expected a power of two, got {max_block!r}")
    if num_warps is not None and num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"num_warps: expected None or one of 1, 2, 4, 8, 16, got {num_warps!r}")


@functools.partial(jax.jit, static_argnums=(1, 2), static_argnames=("max_block", "num_warps", "erfc_form"))
def gelu_fused(x, approximate: bool, interpret: bool, max_block: int = ELEMENTWISE_BLOCK, num_warps: int | None = None,
               erfc_form: str | None = None):
    """Fused GELU of x (any shape): one elementwise ``pallas_call`` over blocks of the
    flattened array. Same shape and dtype as x. ``max_block`` (a power of two) and
    ``num_warps`` (None: ``warps_for_block``) are for the block sweep of the probe; ``erfc_form``
    one of ERFC_FORMS (None: ``default_erfc_form`` of x's dtype)."""
    _check_block(max_block, num_warps)
    erfc_fn = _erfc_of_form(erfc_form, x.dtype)
    if x.size == 0:
        return jnp.zeros_like(x)
    block, padded = choose_block(x.size, max_block)
    flat = pad_last(x.reshape(-1), padded)
    spec = pl.BlockSpec((block,), lambda i: (i,))
    y = pl.pallas_call(
        functools.partial(_gelu_kernel, approximate=approximate, erfc_fn=erfc_fn),
        out_shape=jax.ShapeDtypeStruct(flat.shape, x.dtype),
        grid=(padded // block,),
        in_specs=[spec],
        out_specs=spec,
        compiler_params=compiler_params(num_warps or warps_for_block(block), interpret),
        interpret=interpret,
        name="gelu_fused",
    )(flat)
    return y[: x.size].reshape(x.shape)


def _geglu_kernel(x_ref, y_ref, *, approximate, erfc_fn):
    a = x_ref[:, 0, :].astype(F32)   # the (rows, block) tile of the first half, x[r, j]
    b = x_ref[:, 1, :].astype(F32)   # the same tile of the second half, x[r, F + j]
    y_ref[...] = (a * _gelu_f32(b, approximate, erfc_fn)).astype(y_ref.dtype)


def geglu_tile(rows: int, features: int, max_block: int = ELEMENTWISE_BLOCK) -> tuple[int, int, int, int]:
    """(block_rows, block, padded_rows, padded_features) of the GEGLU kernel's tiles: ``block``
    columns by ``choose_block`` (SD's F = 1280 -> 256, no padding), then as many rows (a power
    of two) as keep the tile at max_block elements, so that a program moves as much as a GELU
    program does whatever F is."""
    block, padded_features = choose_block(features, max_block)
    block_rows = min(max(max_block // block, 1), next_power_of_2(rows))
    return block_rows, block, cdiv(rows, block_rows) * block_rows, padded_features


@functools.partial(jax.jit, static_argnums=(1, 2), static_argnames=("max_block", "num_warps", "erfc_form"))
def geglu_fused(x, approximate: bool, interpret: bool, max_block: int = ELEMENTWISE_BLOCK,
                num_warps: int | None = None, erfc_form: str | None = None):
    """Fused GEGLU a * gelu(b) of x (..., 2F): one ``pallas_call`` reading both halves.
    Returns (..., F) in x's dtype. ``max_block``, ``num_warps``, ``erfc_form``: as for ``gelu_fused``."""
    _check_block(max_block, num_warps)
    erfc_fn = _erfc_of_form(erfc_form, x.dtype)
    features = x.shape[-1] // 2
    out_shape = x.shape[:-1] + (features,)
    rows = math.prod(x.shape[:-1])
    if rows * features == 0:
        return jnp.zeros(out_shape, x.dtype)
    block_rows, block, padded_rows, padded_features = geglu_tile(rows, features, max_block)
    halves = pad_to(x.reshape(rows, 2, features), (padded_rows, 2, padded_features))
    y = pl.pallas_call(
        functools.partial(_geglu_kernel, approximate=approximate, erfc_fn=erfc_fn),
        out_shape=jax.ShapeDtypeStruct((padded_rows, padded_features), x.dtype),
        grid=(padded_rows // block_rows, padded_features // block),
        in_specs=[pl.BlockSpec((block_rows, 2, block), lambda r, j: (r, 0, j))],
        out_specs=pl.BlockSpec((block_rows, block), lambda r, j: (r, j)),
        compiler_params=compiler_params(num_warps or warps_for_block(block_rows * block), interpret),
        interpret=interpret,
        name="geglu_fused",
    )(halves)
    return y[:rows, :features].reshape(out_shape)

"""Pallas kernels for the paper's fused GroupNorm (+SiLU) and fused GELU / GEGLU.

The math (reference/ops.py defines it). GroupNorm splits the C channels of x (N, C, *spatial)
into G groups; the (n, g) slab X of L = (C/G) * HW values (HW = prod(spatial)) gets

    mean = sum(X) / L,   var = sum((X - mean)^2) / L,
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]       (then y * sigmoid(y) if silu)

and the activations are, elementwise,

    gelu(x)  = x/2 * erfc(-x / sqrt 2)                      (exact, SD 1.x; = x/2 (1 + erf(x/sqrt 2)))
             ~ x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)   (approximate=True; = tanh form)
    geglu(x) = a * gelu(b),  a = x[..., :F], b = x[..., F:].

Storage may be float32, float16 or bfloat16; every kernel loads, computes in float32 and casts
only the stored result back to x's dtype.

Kernel plans: each public function is ONE ``pl.pallas_call`` (the paper's "one GPU command");
around it the wrapper only reshapes (free) and, for sizes that no power-of-two block divides,
pads and crops (see ``_choose_block``; no SD 1.x shape needs it).

    group_norm   grid (N, G): one program per (sample, group) slab, as in ML Drift's
                 HWCGroupNormalization and MNN's groupnorm_buf.cl. x is viewed as (N, G, L): the
                 slab is contiguous in NCHW. The program walks its slab in blocks of BLOCK (a
                 power of two <= 4096, Triton's tensor sizes must be powers of two) with
                 ``lax.fori_loop``, three times:
                   1. the mean as pivot + offset: p = the slab's first element, offset =
                      sum(x - p) / L. x - p is exact near p, so x - mean = (x - p) - offset keeps
                      digits that a float32 mean of values far from zero loses (mean 1e3, std 0.1:
                      half an ulp of 1e3 is already 3e-4 of the std);
                   2. the centred sum of squares: var = sum((x - mean)^2) / L (two-pass, no
                      E[x^2] - E[x]^2 cancellation);
                   3. y = (x - mean) * rsqrt(var + eps) * weight[c] + bias[c] (then SiLU), stored.
                 Partial sums are kept per lane (a BLOCK-vector) and reduced once at the end.
                 weight/bias are indexed per element by channel = g * C/G + position // HW (a
                 gather from the group's C/G values, cached on a GPU). Padded positions (only
                 when L is ragged) are masked out of the sums, and cropped from the output.
                 No intermediate tensor touches global memory; x is read three times (the
                 second and third reads of a slab mostly hit L2), y written once.
                 Pitfall (vllm-omni#6661): the grid has only N * G programs, 32 at batch 1 with
                 SD's 32 groups, whatever the activation size; an H100 has 132 SMs, so most of
                 the GPU idles and one program streams a whole slab (L = 262144 for the VAE's
                 (1, 128, 256, 256)). We keep the paper's one-command plan; a split reduction
                 over several programs per slab would need a second launch or atomics.
    gelu         grid (n / BLOCK,): x flattened, one program per BLOCK (<= 1024) elements.
    geglu        grid (R, F / BLOCK): x viewed as (R, 2, F) (free: the last axis 2F is the two
                 halves), each program reads the block of a and the same block of b from one
                 row, and writes a * gelu(b). The split, the activation and the product are one
                 pass: no temporaries.

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
0 <= x < 1 (where 1 - erf rounds) and <= 1.7e-7 absolute everywhere (tests/jax/test_jax_pallas_norm.py
asserts 1e-6 relative and 2e-7 absolute). (Writing the second factor as a polynomial rather than an
exp also stops XLA from folding exp(a) * exp(b) back into exp(a + b) in interpret mode.)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

try:  # selects the Triton lowering explicitly (jax >= 0.11 may default to Mosaic GPU)
    from jax.experimental.pallas import triton as _pl_triton
except ImportError:  # pragma: no cover - a jax without the Triton backend
    _pl_triton = None

F32 = jnp.float32
#: Largest GroupNorm block (elements of a slab per loop step) and elementwise block.
NORM_BLOCK = 4096
ELEMENTWISE_BLOCK = 1024
#: Smallest block considered when looking for one that divides a length (fewer pad bytes).
MIN_BLOCK = 128

# Cephes erff / erfcf coefficients (highest degree first), as in XLA's ErfImpl32 / ErfcImpl32.
_ERF_T = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
          1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710e0)
_ERFC_P = (2.326819970068386e-2, -1.387039388740657e-1, 3.687424674597105e-1, -5.824733027278666e-1,
           6.210004621745983e-1, -4.944515323274145e-1, 3.404879937665872e-1, -2.741127028184656e-1,
           5.638259427386472e-1)
_ERFC_R = (-1.047766399936249e1, 1.297719955372516e1, -7.495518717768503e0, 2.921019019210786e0,
           -1.015265279202700e0, 4.218463358204948e-1, -2.820767439740514e-1, 5.641895067754075e-1)
SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ----------------------------------------------------------------------------------- helpers


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _choose_block(length: int, max_block: int) -> tuple[int, int]:
    """(block, padded_length) for a loop over ``length`` elements in power-of-two blocks of at
    most ``max_block``: the block (>= MIN_BLOCK unless the length is shorter) whose multiple
    covers ``length`` with the fewest padding elements, the largest such block on a tie.
    E.g. 40960 -> (4096, 40960), 5000 -> (1024, 5120), 969 -> (1024, 1024), 3 -> (4, 4)."""
    top = min(max_block, _next_power_of_2(length))
    candidates = [b for b in (1 << k for k in range(top.bit_length())) if b >= min(MIN_BLOCK, top)]
    block = min(candidates, key=lambda b: (_cdiv(length, b) * b, -b))
    return block, _cdiv(length, block) * block


def _pad_last(x, padded: int):
    """x zero-padded on its last axis to ``padded`` (no copy when it already has that size)."""
    extra = padded - x.shape[-1]
    return x if extra == 0 else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])


def _compiler_params(num_warps: int):
    """Triton compiler parameters (they also pick the Triton lowering over Mosaic GPU)."""
    return None if _pl_triton is None else _pl_triton.CompilerParams(num_warps=num_warps)


def _num_warps(block: int) -> int:
    """Triton's layer-norm tutorial rule: one warp per 256 elements, 1 to 8 warps."""
    return min(max(block // 256, 1), 8)


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


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp of -|z| only."""
    e = jnp.exp(-jnp.abs(z))
    return jnp.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu_f32(x, approximate: bool):
    """GELU in float32, the erfc (or sigmoid) spelling of reference/ops.py."""
    if approximate:
        return x * _sigmoid(2.0 * SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * x * erfc(-SQRT_HALF * x)


# ----------------------------------------------------------------------------------- GroupNorm


def _group_norm_kernel(*refs, length, block, hw, eps, silu, has_weight, has_bias):
    """One (sample, group) slab: refs = x (1, 1, Lp), [weight (1, C/G)], [bias (1, C/G)], y (1, 1, Lp)."""
    x_ref, y_ref = refs[0], refs[-1]
    w_ref = refs[1] if has_weight else None
    b_ref = refs[1 + has_weight] if has_bias else None
    n_blocks = x_ref.shape[-1] // block
    ragged = n_blocks * block != length
    lanes = jnp.arange(block, dtype=jnp.int32)

    def load(i):
        """Block i of the slab in float32, its slab positions, and the valid-lane mask."""
        start = pl.multiple_of(i * block, block)
        v = x_ref[0, 0, pl.ds(start, block)].astype(F32)
        pos = start + lanes
        return v, pos, (pos < length) if ragged else None

    def masked(valid, v):
        return v if valid is None else jnp.where(valid, v, 0.0)

    # Pass 1: the mean, kept as pivot + offset: p = the slab's first element, offset = the mean
    # of x - p. x - p is exact for x near p (Sterbenz), so x - mean = (x - p) - offset keeps the
    # digits that a rounded float32 mean (half an ulp of 1e3 is 3e-5) would lose.
    pivot = x_ref[0, 0, 0].astype(F32)

    def add_shifted(i, acc):
        v, _, valid = load(i)
        return acc + masked(valid, v - pivot)

    offset = jnp.sum(lax.fori_loop(0, n_blocks, add_shifted, jnp.zeros((block,), F32))) / length

    def centred(v):
        return (v - pivot) - offset

    # Pass 2: the centred (two-pass) variance: no E[x^2] - E[x]^2 cancellation.
    def add_square(i, acc):
        v, _, valid = load(i)
        d = centred(v)
        return acc + masked(valid, d * d)

    squares = lax.fori_loop(0, n_blocks, add_square, jnp.zeros((block,), F32))
    rstd = lax.rsqrt(jnp.sum(squares) / length + eps)

    # Pass 3: normalize, per-channel affine, SiLU, store.
    def normalize(i, carry):
        v, pos, _ = load(i)
        y = centred(v) * rstd
        if has_weight or has_bias:
            # channel within the group; padded lanes are clamped onto the last one (cropped later)
            channel = jnp.minimum(lax.div(pos, hw), length // hw - 1)
            if has_weight:
                y = y * w_ref[0, channel].astype(F32)
            if has_bias:
                y = y + b_ref[0, channel].astype(F32)
        if silu:
            y = y * _sigmoid(y)
        y_ref[0, 0, pl.ds(pl.multiple_of(i * block, block), block)] = y.astype(y_ref.dtype)
        return carry

    lax.fori_loop(0, n_blocks, normalize, 0)


@functools.partial(jax.jit, static_argnums=(1, 4, 5, 6))
def group_norm(x, num_groups: int, weight, bias, eps: float, silu: bool, interpret: bool):
    """Fused GroupNorm (+ SiLU) of x (N, C, *spatial), one ``pallas_call``; see the module
    docstring. weight and bias are (C,) or None; the result has x's shape and dtype."""
    n, c = x.shape[:2]
    hw = math.prod(x.shape[2:])
    groups, per_group = num_groups, c // num_groups
    length = per_group * hw
    if x.size == 0:
        return jnp.zeros_like(x)
    block, padded = _choose_block(length, NORM_BLOCK)
    slabs = _pad_last(x.reshape(n, groups, length), padded)

    slab_spec = pl.BlockSpec((1, 1, padded), lambda i, g: (i, g, 0))
    group_spec = pl.BlockSpec((1, per_group), lambda i, g: (g, 0))
    operands, in_specs = [slabs], [slab_spec]
    for vector in (weight, bias):
        if vector is not None:
            operands.append(vector.reshape(groups, per_group))
            in_specs.append(group_spec)

    kernel = functools.partial(_group_norm_kernel, length=length, block=block, hw=hw, eps=eps, silu=silu,
                               has_weight=weight is not None, has_bias=bias is not None)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(slabs.shape, x.dtype),
        grid=(n, groups),
        in_specs=in_specs,
        out_specs=slab_spec,
        compiler_params=_compiler_params(_num_warps(block)),
        interpret=interpret,
        name="group_norm_fused",
    )(*operands)
    return y[:, :, :length].reshape(x.shape)


# ----------------------------------------------------------------------------------- GELU, GEGLU


def _gelu_kernel(x_ref, y_ref, *, approximate):
    y_ref[...] = _gelu_f32(x_ref[...].astype(F32), approximate).astype(y_ref.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def gelu(x, approximate: bool, interpret: bool):
    """Fused GELU of x (any shape): one elementwise ``pallas_call`` over blocks of the
    flattened array. Same shape and dtype as x."""
    if x.size == 0:
        return jnp.zeros_like(x)
    block, padded = _choose_block(x.size, ELEMENTWISE_BLOCK)
    flat = _pad_last(x.reshape(-1), padded)
    spec = pl.BlockSpec((block,), lambda i: (i,))
    y = pl.pallas_call(
        functools.partial(_gelu_kernel, approximate=approximate),
        out_shape=jax.ShapeDtypeStruct(flat.shape, x.dtype),
        grid=(padded // block,),
        in_specs=[spec],
        out_specs=spec,
        compiler_params=_compiler_params(_num_warps(block)),
        interpret=interpret,
        name="gelu_fused",
    )(flat)
    return y[: x.size].reshape(x.shape)


def _geglu_kernel(x_ref, y_ref, *, approximate):
    a = x_ref[0, 0, :].astype(F32)   # the block of the first half, x[r, j]
    b = x_ref[0, 1, :].astype(F32)   # the same block of the second half, x[r, F + j]
    y_ref[0, :] = (a * _gelu_f32(b, approximate)).astype(y_ref.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def geglu(x, approximate: bool, interpret: bool):
    """Fused GEGLU a * gelu(b) of x (..., 2F): one ``pallas_call`` reading both halves.
    Returns (..., F) in x's dtype."""
    features = x.shape[-1] // 2
    out_shape = x.shape[:-1] + (features,)
    rows = math.prod(x.shape[:-1])
    if rows * features == 0:
        return jnp.zeros(out_shape, x.dtype)
    block, padded = _choose_block(features, ELEMENTWISE_BLOCK)
    halves = _pad_last(x.reshape(rows, 2, features), padded)
    y = pl.pallas_call(
        functools.partial(_geglu_kernel, approximate=approximate),
        out_shape=jax.ShapeDtypeStruct((rows, padded), x.dtype),
        grid=(rows, padded // block),
        in_specs=[pl.BlockSpec((1, 2, block), lambda r, j: (r, 0, j))],
        out_specs=pl.BlockSpec((1, block), lambda r, j: (r, j)),
        compiler_params=_compiler_params(_num_warps(block)),
        interpret=interpret,
        name="geglu_fused",
    )(halves)
    return y[:, :features].reshape(out_shape)

"""GroupNorm, the paper's first idea, in JAX: the jnp baseline (XLA fuses what it can) and the
fused Pallas kernel; and LayerNorm (jnp), the same statistics over one row.

The math (reference/group_norm.py defines it). GroupNorm splits the C channels of x (N, C, *spatial)
into G groups; the (n, g) slab X of L = (C/G) * HW values (HW = prod(spatial)) gets

    mean = sum(X) / L,   var = sum((X - mean)^2) / L,
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]       (then y * sigmoid(y) if silu)

Storage may be float32, float16 or bfloat16; both versions compute in float32 and cast only
the result back to x's dtype.

``group_norm`` (jnp): the unfused baseline, two-pass statistics as reductions, then the
normalization, affine and SiLU as an elementwise pass.

``group_norm_fused`` (Pallas): ONE ``pl.pallas_call`` (the paper's "one GPU command"); around
it the wrapper only reshapes (free) and, for sizes that no power-of-two block divides, pads and
crops (``pallas_util.choose_block``; no SD 1.x shape needs it). Its plan:

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
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .pallas_util import choose_block, compiler_params, pad_last, sigmoid, warps_for_block

__all__ = ["group_norm", "group_norm_fused", "layer_norm"]

F32 = jnp.float32
#: Largest block (elements of a slab per loop step) of the fused kernel.
NORM_BLOCK = 4096


def _f32(x):
    return None if x is None else x.astype(F32)


def _affine(y, weight, bias, shape):
    """y * weight + bias (each optional), the vectors reshaped to ``shape`` for broadcasting."""
    if weight is not None:
        y = y * _f32(weight).reshape(shape)
    if bias is not None:
        y = y + _f32(bias).reshape(shape)
    return y


# ----------------------------------------------------------------------------------- unfused (jnp)


def _centred(x):
    """x - mean(x) over the last axis with the mean as the pair m0 + dm (corrected two-pass):
    m0 = mean(x), dm = mean(x - m0), x - mean = (x - m0) - dm; a float32 m0 alone loses up to half
    an ulp of |mean| (3e-4 of the std at mean 1e3, std 0.1), x - m0 is exact near m0."""
    shifted = x - jnp.mean(x, axis=-1, keepdims=True)
    return shifted - jnp.mean(shifted, axis=-1, keepdims=True)


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, silu: bool = False):
    """GroupNorm of x (N, C, *spatial) over G groups of C/G consecutive channels (torch.nn.GroupNorm):

        mu = mean(X_g),   var = mean((X_g - mu)^2)          (two-pass: centred, biased)
        y  = (x - mu) / sqrt(var + eps) * weight[c] + bias[c],   then y * sigmoid(y) if silu.

    The unfused baseline: XLA computes the statistics and the normalization as separate
    reductions and elementwise fusions (it fuses what it can; that is the peer the Pallas
    kernel is measured against)."""
    n, c = x.shape[:2]
    centred = _centred(x.astype(F32).reshape(n, num_groups, -1))
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = (centred * lax.rsqrt(var + eps)).reshape(x.shape)
    y = _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))
    if silu:
        y = y * jax.nn.sigmoid(y)
    return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnums=(3,))
def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """LayerNorm over the last axis (torch.nn.LayerNorm(C)):

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias      (biased, two-pass variance)"""
    centred = _centred(x.astype(F32))
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * lax.rsqrt(var + eps)
    return _affine(y, weight, bias, (x.shape[-1],)).astype(x.dtype)


# ----------------------------------------------------------------------------------- fused (Pallas)


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
            y = y * sigmoid(y)
        y_ref[0, 0, pl.ds(pl.multiple_of(i * block, block), block)] = y.astype(y_ref.dtype)
        return carry

    lax.fori_loop(0, n_blocks, normalize, 0)


@functools.partial(jax.jit, static_argnums=(1, 4, 5, 6))
def group_norm_fused(x, num_groups: int, weight, bias, eps: float, silu: bool, interpret: bool):
    """Fused GroupNorm (+ SiLU) of x (N, C, *spatial), one ``pallas_call``; see the module
    docstring. weight and bias are (C,) or None; the result has x's shape and dtype."""
    n, c = x.shape[:2]
    hw = math.prod(x.shape[2:])
    groups, per_group = num_groups, c // num_groups
    length = per_group * hw
    if x.size == 0:
        return jnp.zeros_like(x)
    block, padded = choose_block(length, NORM_BLOCK)
    slabs = pad_last(x.reshape(n, groups, length), padded)

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
        compiler_params=compiler_params(warps_for_block(block), interpret),
        interpret=interpret,
        name="group_norm_fused",
    )(*operands)
    return y[:, :, :length].reshape(x.shape)

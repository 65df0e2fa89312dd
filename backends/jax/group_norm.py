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

``group_norm_fused`` (Pallas): the fused kernel in one of two forms (FORMS; ``fused=True`` takes
``fused_form``'s choice by size, from measurements: backends/jax/notes/group_norm.md). Around the kernels the
wrapper only reshapes (free) and, for sizes that no power-of-two block divides, pads and crops
(``pallas_util.choose_block``; no SD 1.x shape needs it). x is viewed as (N, G, L): the slab is
contiguous in NCHW. Both keep every intermediate in registers except a few floats per program,
and both centre on a pivot, the slab's first element x0: x - x0 is exact near x0 (Sterbenz), so
x - mean = (x - x0) - offset keeps the digits that a rounded float32 mean loses (mean 1e3, std
0.1: half an ulp of 1e3 is already 3e-4 of the std).

    one_launch   ONE pallas_call (the paper's "one GPU command"), grid (N, G): one program per
                 (sample, group) slab, as in ML Drift's HWCGroupNormalization and MNN's
                 groupnorm_buf.cl. The program walks its slab in blocks of BLOCK (a power of two
                 <= max_block; Triton's tensor sizes must be powers of two) with
                 ``lax.fori_loop``, three times: offset = sum(x - x0) / L; the centred sum of
                 squares (two-pass, no E[x^2] - E[x]^2 cancellation); then
                 y = ((x - x0) - offset) * rsqrt(var + eps) * weight[c] + bias[c] (then SiLU),
                 stored. x is read three times (the later reads of a slab mostly hit L2), y
                 written once. Pitfall (vllm-omni#6661): the grid has only N * G programs, 32 at
                 batch 1 with SD's 32 groups, whatever the activation size; an H200 has 132 SMs,
                 so most of the GPU idles while one program streams a whole slab (L = 262144 for
                 the VAE's (1, 128, 256, 256)). Kept as the paper's literal plan and as the
                 ablation's baseline of the split.

    split        TWO pallas_calls over the grid (N, G, parts), parts = ``split_parts`` (a power
                 of two: enough programs to fill the GPU, none shorter than MIN_PART):
                   group_norm_stats      each program walks its part once in blocks; a block's
                                         moments are two-pass in registers (its mean, its
                                         centred sum of squares) and merged into the part's
                                         running (count, mean, M2) by Chan's update. It writes
                                         two floats: the part's mean of x - x0 and its M2.
                   group_norm_normalize  each program merges its slab's ``parts`` moments
                                         exactly (offset = sum(n_i o_i) / L, M2 = sum(M2_i) +
                                         sum(n_i (o_i - offset)^2)), then normalizes, applies
                                         the affine and SiLU and stores its part.
                 x is read twice and y written once (the floor of any GroupNorm whose slab does
                 not fit on chip: 3 passes over the activation), with N * G * parts programs.
                 Mathematically the same statistics as one_launch, merged instead of summed.

    channels_last THREE pallas_calls on x viewed as (N, HW, C), the layout of the NHWC
                 convolutions XLA runs in 16-bit storage (there the view is free, while the
                 (N, G, L) view of the other forms makes XLA transpose the activation before
                 and after the kernel: notes/group_norm.md). Programs walk ``part_rows`` rows
                 of one column block (``_cl_geometry``) in (rows, block) tiles:
                   group_norm_cl_stats      grid (N, parts, column blocks): per column c, the
                                            moments of x - x0[g(c)] over the part's rows (x0[g]
                                            the slab's first element, as above), each tile
                                            two-pass in registers, merged down the rows by
                                            Chan's update: (N, parts, C) means and M2s
                                            (``stats="lanes"``: group_norm_cl_stats_lanes, the
                                            same moments with no reduction in the loop: each
                                            lane of the tile runs Welford's update on its own
                                            values, and the lanes of a column are merged once
                                            at the end);
                   group_norm_cl_merge      grid (N, G): the group's column moments merged
                                            exactly across parts (Chan), then across its
                                            columns (equal counts HW: offset_g = mean of the
                                            column offsets, M2_g = sum M2_c + HW sum (o_c -
                                            offset_g)^2), written as per-column scale and shift;
                   group_norm_cl_normalize  the stats' grid: y = (x - x0[g]) scale + shift,
                                            then SiLU, stored.
                 x is read twice and y written once, as in "split".

weight/bias are indexed per element by channel = g * C/G + position // HW (a gather from the
group's C/G values, cached on a GPU). Padded positions (only when L is ragged) are masked out of
the sums, and cropped from the output.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from .pallas_util import (
    cdiv, choose_block, compiler_params, next_power_of_2, pad_last, round_up, sigmoid, warps_for_block,
)

__all__ = ["group_norm", "group_norm_fused", "layer_norm"]

F32 = jnp.float32
#: Largest block (elements of a slab per loop step) of the fused kernels.
NORM_BLOCK = 4096
#: The fused kernel's forms (module docstring); ``fused=True`` takes ``fused_form``'s choice.
FORMS = ("one_launch", "split", "channels_last")
#: ``fused_form``: activations of at most this many elements take "one_launch" (H200 sweep,
#: backends/jax/notes/group_norm.md: the split's second launch costs more than its programs gain)
ONE_LAUNCH_MAX_ELEMENTS = 1 << 21
#: "split": programs wanted per call (an H200 has 132 SMs; several programs per SM hide latency)
TARGET_PROGRAMS = 1024
#: "split": the shortest part worth its own program
MIN_PART = 1024
#: "channels_last": the widest column block, and the fewest rows of a part (its moments, two
#: floats per column, stay at most a quarter of its fp16 data)
CL_COLUMNS = 256
CL_MIN_PART_ROWS = 16
#: "channels_last": how the statistics kernel forms its column moments (module docstring):
#: "tiles" each tile's moments in registers, merged down the rows (Chan) in every loop step;
#: "lanes" each lane of the tile its own running moments (Welford), merged once at the end
CL_STATS = ("tiles", "lanes")


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


def _centred(x, axes=(-1,)):
    """x - mean(x) over ``axes`` with the mean as the pair m0 + dm (corrected two-pass):
    m0 = mean(x), dm = mean(x - m0), x - mean = (x - m0) - dm; a float32 m0 alone loses up to half
    an ulp of |mean| (3e-4 of the std at mean 1e3, std 0.1), x - m0 is exact near m0."""
    shifted = x - jnp.mean(x, axis=axes, keepdims=True)
    return shifted - jnp.mean(shifted, axis=axes, keepdims=True)


#: ``group_norm``'s views of x: (N, G, C/G, *spatial) reduced over its last axes, or the slab
#: (N, G, C/G * HW) reduced over its last axis (notes/group_norm.md: which one XLA lays out better)
VIEWS = ("grouped", "slab")


@functools.partial(jax.jit, static_argnums=(1, 4, 5), static_argnames=("view",))
def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, silu: bool = False,
               view: str = "grouped"):
    """GroupNorm of x (N, C, *spatial) over G groups of C/G consecutive channels (torch.nn.GroupNorm):

        mu = mean(X_g),   var = mean((X_g - mu)^2)          (two-pass: centred, biased)
        y  = (x - mu) / sqrt(var + eps) * weight[c] + bias[c],   then y * sigmoid(y) if silu.

    The unfused baseline: XLA computes the statistics and the normalization as separate
    reductions and elementwise fusions (it fuses what it can; that is the peer the Pallas
    kernel is measured against).

    ``view`` (VIEWS): "grouped" reshapes x to (N, G, C/G, *spatial) and reduces over its last
    axes: splitting C is free in any layout, so XLA may keep the NHWC layout of its fp16
    convolutions around GroupNorm (the H100 decoder's transposes went with it); "slab" to
    (N, G, C/G * HW), free only in NCHW (the form before 2026-12-07, kept for the A/B the UNet
    still needs: backends/jax/notes/group_norm.md)."""
    if view not in VIEWS:
        raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
    n, c = x.shape[:2]
    kept = x.shape[2:] if view == "grouped" else (math.prod(x.shape[2:]),)
    slabs = x.astype(F32).reshape(n, num_groups, c // num_groups, *kept)
    axes = tuple(range(2, slabs.ndim))
    centred = _centred(slabs, axes)
    var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
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


def _one_launch(x, num_groups, weight, bias, eps, silu, interpret, max_block):
    """The "one_launch" form: grid (N, G), one program per slab (``_group_norm_kernel``)."""
    n, c = x.shape[:2]
    hw = math.prod(x.shape[2:])
    groups, per_group = num_groups, c // num_groups
    length = per_group * hw
    block, padded = choose_block(length, max_block)
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


# --------------------------------------------------------------------- fused, split (two Pallas calls)


def fused_form(size: int) -> str:
    """The form ``fused=True`` takes for an activation of ``size`` elements: "one_launch" up to
    ONE_LAUNCH_MAX_ELEMENTS, "split" above. Measured on an H200 (jax_kernel_sweep, 2026-12-04):
    at (2, 1280, 16, 16) (655k elements, 10-15 us) one_launch 0.0138 / 0.0115 ms (fp32 / fp16)
    against split's 0.0147 / 0.0153; at (2, 640, 32, 32) within 5%; from (2, 320, 64, 64) on
    the split wins by 1.6x to 5.5x (one_launch's 32 or 64 programs leave most SMs idle)."""
    return "one_launch" if int(size) <= ONE_LAUNCH_MAX_ELEMENTS else "split"


def split_parts(slabs: int, length: int) -> int:
    """Parts per slab of the "split" form: a power of two, enough that slabs * parts reaches
    TARGET_PROGRAMS, but no part shorter than MIN_PART (the per-program work must outweigh the
    statistics it writes and the merge every normalizing program redoes)."""
    wanted = next_power_of_2(cdiv(TARGET_PROGRAMS, max(int(slabs), 1)))
    most = 1 << (max(int(length) // MIN_PART, 1).bit_length() - 1)  # the largest power of two <= length / MIN_PART
    return max(1, min(wanted, most))


def _part_geometry(length: int, parts: int, max_block: int = NORM_BLOCK) -> tuple[int, int]:
    """(block, part_length): each part is part_length = a multiple of block >= cdiv(length, parts)
    positions of the padded slab, walked in power-of-two blocks."""
    return choose_block(cdiv(length, parts), max_block)


def _chan_update(moments, n_b, mean_b, m2_b):
    """Running (count, mean, M2) merged with a block's (n_b, mean_b, M2_b) (Chan et al.; scalars
    or per-column vectors):

        delta = mean_b - mean,  count' = count + n_b,
        mean' = mean + delta * n_b / count',  M2' = M2 + M2_b + delta^2 * count * n_b / count'

    An empty block (n_b = 0) leaves the moments as they are."""
    count, mean, m2 = moments
    total = count + n_b
    delta = mean_b - mean
    share = n_b / jnp.maximum(total, 1.0)
    return total, mean + delta * share, m2 + m2_b + delta * delta * count * share


def _group_norm_stats_kernel(x_ref, offset_ref, m2_ref, *, length, part_length, block):
    """Part p of slab (n, g): the moments of v = x - x0 (x0 the slab's first element) over the
    part's valid positions. Each block's moments are two-pass in registers (its mean, then its
    centred sum of squares), merged into the running (count, mean, M2) by Chan's update
    (``_chan_update``), so x is read once. Outputs: the part's mean of v and its M2 (one
    float32 each)."""
    part = pl.program_id(2)
    base = part * part_length
    lanes = jnp.arange(block, dtype=jnp.int32)
    pivot = x_ref[0, 0, 0].astype(F32)
    ragged = x_ref.shape[-1] != length  # padded slab: mask positions >= length

    def add_block(i, moments):
        start = base + pl.multiple_of(i * block, block)
        v = x_ref[0, 0, pl.ds(start, block)].astype(F32) - pivot
        if ragged:
            valid = (start + lanes) < length
            n_b = jnp.clip(length - start, 0, block).astype(F32)
            mean_b = jnp.sum(jnp.where(valid, v, 0.0)) / jnp.maximum(n_b, 1.0)
            d = jnp.where(valid, v - mean_b, 0.0)
        else:
            n_b = F32(block)
            mean_b = jnp.sum(v) / block
            d = v - mean_b
        return _chan_update(moments, n_b, mean_b, jnp.sum(d * d))

    zero = F32(0.0)
    _, mean, m2 = lax.fori_loop(0, part_length // block, add_block, (zero, zero, zero))
    offset_ref[...] = mean
    m2_ref[...] = m2


def _group_norm_normalize_kernel(*refs, length, part_length, block, hw, eps, silu, has_weight, has_bias):
    """Part p of slab (n, g): merge the slab's ``parts`` moments (count n_i, mean o_i, M2_i of
    x - x0) exactly,

        offset = sum(n_i o_i) / L,   M2 = sum(M2_i) + sum(n_i (o_i - offset)^2),
        rstd = 1 / sqrt(M2 / L + eps),

    then write y = ((x - x0) - offset) * rstd * weight[c] + bias[c] (then SiLU) for the part.
    refs = x (1, 1, Lp), offsets (1, 1, parts), M2 (1, 1, parts), [weight (1, C/G)],
    [bias (1, C/G)], y (1, 1, part_length)."""
    x_ref, offset_ref, m2_ref, y_ref = refs[0], refs[1], refs[2], refs[-1]
    w_ref = refs[3] if has_weight else None
    b_ref = refs[3 + has_weight] if has_bias else None
    part = pl.program_id(2)
    base = part * part_length
    parts = offset_ref.shape[-1]

    starts = jnp.arange(parts, dtype=jnp.int32) * part_length
    counts = jnp.clip(length - starts, 0, part_length).astype(F32)
    offsets = offset_ref[0, 0, :]
    offset = jnp.sum(counts * offsets) / length
    spread = offsets - offset
    m2 = jnp.sum(m2_ref[0, 0, :]) + jnp.sum(counts * spread * spread)
    rstd = lax.rsqrt(m2 / length + eps)
    pivot = x_ref[0, 0, 0].astype(F32)
    lanes = jnp.arange(block, dtype=jnp.int32)

    def normalize(i, carry):
        start = pl.multiple_of(i * block, block)
        v = x_ref[0, 0, pl.ds(base + start, block)].astype(F32)
        y = ((v - pivot) - offset) * rstd
        if has_weight or has_bias:
            # channel within the group; padded lanes are clamped onto the last one (cropped later)
            channel = jnp.minimum(lax.div(base + start + lanes, hw), length // hw - 1)
            if has_weight:
                y = y * w_ref[0, channel].astype(F32)
            if has_bias:
                y = y + b_ref[0, channel].astype(F32)
        if silu:
            y = y * sigmoid(y)
        y_ref[0, 0, pl.ds(start, block)] = y.astype(y_ref.dtype)
        return carry

    lax.fori_loop(0, part_length // block, normalize, 0)


def _split(x, num_groups, weight, bias, eps, silu, interpret, max_block, parts):
    """The "split" form: ``group_norm_stats`` then ``group_norm_normalize``, each over the grid
    (N, G, parts); between them only the (N, G, parts) float32 moments. ``parts``: None picks
    ``split_parts``; a power of two forces it (tests, probes)."""
    n, c = x.shape[:2]
    hw = math.prod(x.shape[2:])
    groups, per_group = num_groups, c // num_groups
    length = per_group * hw
    parts = split_parts(n * groups, length) if parts is None else parts
    block, part_length = _part_geometry(length, parts, max_block)
    padded = parts * part_length
    slabs = pad_last(x.reshape(n, groups, length), padded)
    grid = (n, groups, parts)
    params = compiler_params(warps_for_block(block), interpret)

    slab_spec = pl.BlockSpec((1, 1, padded), lambda i, g, p: (i, g, 0))
    moment_spec = pl.BlockSpec((None, None, None), lambda i, g, p: (i, g, p))
    moments = jax.ShapeDtypeStruct((n, groups, parts), F32)
    offsets, m2 = pl.pallas_call(
        functools.partial(_group_norm_stats_kernel, length=length, part_length=part_length, block=block),
        out_shape=(moments, moments),
        grid=grid,
        in_specs=[slab_spec],
        out_specs=(moment_spec, moment_spec),
        compiler_params=params,
        interpret=interpret,
        name="group_norm_stats",
    )(slabs)

    slab_moments_spec = pl.BlockSpec((1, 1, parts), lambda i, g, p: (i, g, 0))
    group_spec = pl.BlockSpec((1, per_group), lambda i, g, p: (g, 0))
    operands, in_specs = [slabs, offsets, m2], [slab_spec, slab_moments_spec, slab_moments_spec]
    for vector in (weight, bias):
        if vector is not None:
            operands.append(vector.reshape(groups, per_group))
            in_specs.append(group_spec)
    kernel = functools.partial(_group_norm_normalize_kernel, length=length, part_length=part_length, block=block,
                               hw=hw, eps=eps, silu=silu, has_weight=weight is not None, has_bias=bias is not None)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(slabs.shape, x.dtype),
        grid=grid,
        in_specs=in_specs,
        out_specs=pl.BlockSpec((1, 1, part_length), lambda i, g, p: (i, g, p)),
        compiler_params=params,
        interpret=interpret,
        name="group_norm_normalize",
    )(*operands)
    return y[:, :, :length].reshape(x.shape)


# -------------------------------------------------------- fused, channels last (three Pallas calls)


def _cl_geometry(n: int, rows: int, channels: int, parts: int | None, max_block: int) -> tuple[int, int, int, int]:
    """(column_block, tile_rows, parts, part_rows) of the "channels_last" form. Column blocks:
    the largest power of two <= CL_COLUMNS dividing C (SD's 320 -> 64, 1280 -> 256), or, where
    that is below 16, C rounded up to a power of two (<= CL_COLUMNS) with the last block
    masked. Tiles of tile_rows x column_block <= max_block elements (at least one row). parts:
    a power of two (None: enough programs N x parts x column blocks for TARGET_PROGRAMS, no part
    shorter than CL_MIN_PART_ROWS rows or one tile), each ``part_rows`` rows, a multiple of
    tile_rows."""
    column_block = min(channels & -channels, CL_COLUMNS)
    if column_block < 16:
        column_block = min(next_power_of_2(channels), CL_COLUMNS)
    tile_rows = min(max(max_block // column_block, 1), next_power_of_2(rows))
    if parts is None:
        wanted = next_power_of_2(cdiv(TARGET_PROGRAMS, n * cdiv(channels, column_block)))
        shortest = max(CL_MIN_PART_ROWS, tile_rows)
        most = 1 << (max(rows // shortest, 1).bit_length() - 1)
        parts = max(1, min(wanted, most))
    return column_block, tile_rows, parts, round_up(cdiv(rows, parts), tile_rows)


def _cl_pivots(row0_ref, first_column, width: int, per_group: int, channels: int):
    """x0 of the group of each of the ``width`` columns from ``first_column`` on, (1, width):
    the sample's row 0 (``row0_ref``, (1, padded C)) at the group's first column (columns past
    C take the last group's; their values are masked wherever they are used)."""
    column = first_column + jnp.arange(width, dtype=jnp.int32)
    first = jnp.minimum(column // per_group * per_group, channels - 1)
    return row0_ref[0, first].astype(F32)[None, :]


def _cl_tile(x_ref, first_row, tile_rows: int, rows: int, first_column, channels: int):
    """Rows first_row .. first_row + tile_rows of a column block ``x_ref`` (rows, width) in
    float32, 0 past the array (ragged last rows, columns past C), and where it lies inside."""
    shape = (tile_rows, x_ref.shape[1])
    valid = ((first_row + lax.broadcasted_iota(jnp.int32, shape, 0) < rows)
             & (first_column + lax.broadcasted_iota(jnp.int32, shape, 1) < channels))
    tile = plgpu.load(x_ref.at[pl.ds(first_row, tile_rows), :], mask=valid, other=0.0)
    return tile.astype(F32), valid


def _group_norm_cl_stats_kernel(x_ref, row0_ref, offset_ref, m2_ref, *, rows, channels, per_group, part_rows,
                                tile_rows):
    """Program (n, p, j): per column of column block j, the mean and M2 of v = x - x0[g(c)] over
    part p's rows. Each tile's column moments are two-pass in registers, merged into the
    running (count, mean, M2) by Chan's update (``_chan_update``, per column)."""
    width = x_ref.shape[1]
    base, first_column = pl.program_id(1) * part_rows, pl.program_id(2) * width
    pivots = _cl_pivots(row0_ref, first_column, width, per_group, channels)

    def add_tile(i, moments):
        start = base + i * tile_rows
        tile, valid = _cl_tile(x_ref, start, tile_rows, rows, first_column, channels)
        n_b = jnp.clip(rows - start, 0, tile_rows).astype(F32)
        v = jnp.where(valid, tile - pivots, 0.0)
        mean_b = jnp.sum(v, axis=0) / jnp.maximum(n_b, 1.0)
        d = jnp.where(valid, v - mean_b[None, :], 0.0)
        return _chan_update(moments, n_b, mean_b, jnp.sum(d * d, axis=0))

    zeros = jnp.zeros((width,), F32)
    _, mean, m2 = lax.fori_loop(0, part_rows // tile_rows, add_tile, (F32(0.0), zeros, zeros))
    column = first_column + jnp.arange(width, dtype=jnp.int32)
    plgpu.store(offset_ref, mean, mask=column < channels)
    plgpu.store(m2_ref, m2, mask=column < channels)


def _group_norm_cl_stats_lanes_kernel(x_ref, row0_ref, offset_ref, m2_ref, *, rows, channels, per_group,
                                      part_rows, tile_rows):
    """Program (n, p, j), as ``_group_norm_cl_stats_kernel``, with no reduction inside the loop:
    each of the tile's tile_rows x width lanes keeps the running mean and M2 of the values it
    loads (Welford: step k adds v, delta = v - mean, mean += delta / k, M2 += delta (v - mean)).
    A lane's rows only run past the array at its last steps, so a valid lane has seen k values
    at step k. At the end the lanes of each column are merged once (Chan, equal weights per step
    count n_r: o_c = sum_r n_r o_r / n, M2_c = sum_r M2_r + n_r (o_r - o_c)^2)."""
    width = x_ref.shape[1]
    base, first_column = pl.program_id(1) * part_rows, pl.program_id(2) * width
    pivots = _cl_pivots(row0_ref, first_column, width, per_group, channels)

    def add_tile(i, lanes):
        mean, m2 = lanes
        tile, valid = _cl_tile(x_ref, base + i * tile_rows, tile_rows, rows, first_column, channels)
        v = tile - pivots
        delta = v - mean
        updated = mean + delta * (1.0 / (i + 1).astype(F32))
        return jnp.where(valid, updated, mean), jnp.where(valid, m2 + delta * (v - updated), m2)

    steps = part_rows // tile_rows
    zeros = jnp.zeros((tile_rows, width), F32)
    mean, m2 = lax.fori_loop(0, steps, add_tile, (zeros, zeros))
    # lane r holds rows base + r, base + r + tile_rows, ...: n_r = how many lie before ``rows``
    lane = base + lax.broadcasted_iota(jnp.int32, (tile_rows, 1), 0)
    counts = jnp.clip((rows - lane + tile_rows - 1) // tile_rows, 0, steps).astype(F32)
    column_mean = jnp.sum(counts * mean, axis=0) / jnp.maximum(jnp.sum(counts), 1.0)
    spread = mean - column_mean[None, :]
    column_m2 = jnp.sum(m2 + counts * spread * spread, axis=0)
    column = first_column + jnp.arange(width, dtype=jnp.int32)
    plgpu.store(offset_ref, column_mean, mask=column < channels)
    plgpu.store(m2_ref, column_m2, mask=column < channels)


def _group_norm_cl_merge_kernel(*refs, rows, channels, per_group, part_rows, chunk, eps, has_weight, has_bias):
    """Program (n, g): merge the column moments of group g's columns over every part (Chan,
    the parts' counts n_p), then the columns (counts HW each; L = HW C/G):

        o_c = sum_p n_p o_pc / HW,          M2_c = sum_p M2_pc + sum_p n_p (o_pc - o_c)^2,
        offset_g = mean_{c in g} o_c,       M2_g = sum_{c in g} (M2_c + HW (o_c - offset_g)^2),
        rstd_g = 1 / sqrt(M2_g / L + eps),

    and write each of its columns' scale = rstd_g weight[c] and shift = bias[c] - offset_g
    scale, so that y = (x - x0[g]) scale + shift. The group's C/G columns are a window of
    ``width`` = next_pow2(C/G) columns at g C/G, masked past the group; the parts are read in
    chunks of ``chunk`` rows. refs = offsets (parts, C), M2 (parts, C), [weight (C,)],
    [bias (C,)], scale (C,), shift (C,): whole per-sample blocks, each program its window."""
    offset_ref, m2_ref, scale_ref, shift_ref = refs[0], refs[1], refs[-2], refs[-1]
    w_ref = refs[2] if has_weight else None
    b_ref = refs[2 + has_weight] if has_bias else None
    parts = offset_ref.shape[0]
    width = next_power_of_2(per_group)
    first_column = pl.program_id(1) * per_group
    columns = pl.ds(first_column, width)
    member = jnp.arange(width, dtype=jnp.int32) < per_group

    def chunk_of(ref, i):
        """Parts i * chunk ... of the group's columns, 0 past the group, and their row counts (chunk, 1)."""
        first = i * chunk
        mask = lax.broadcasted_iota(jnp.int32, (chunk, width), 1) < per_group
        values = plgpu.load(ref.at[pl.ds(first, chunk), columns], mask=mask, other=0.0)
        starts = (first + lax.broadcasted_iota(jnp.int32, (chunk, 1), 0)) * part_rows
        return values, jnp.clip(rows - starts, 0, part_rows).astype(F32)

    def add_means(i, total):
        offsets, counts = chunk_of(offset_ref, i)
        return total + jnp.sum(counts * offsets, axis=0)

    zeros = jnp.zeros((width,), F32)
    column_offset = lax.fori_loop(0, parts // chunk, add_means, zeros) / rows

    def add_m2(i, total):
        offsets, counts = chunk_of(offset_ref, i)
        m2s, _ = chunk_of(m2_ref, i)
        spread = offsets - column_offset[None, :]
        return total + jnp.sum(m2s + counts * spread * spread, axis=0)

    column_m2 = lax.fori_loop(0, parts // chunk, add_m2, zeros)
    group_offset = jnp.sum(jnp.where(member, column_offset, 0.0)) / per_group
    spread = column_offset - group_offset
    group_m2 = jnp.sum(jnp.where(member, column_m2 + rows * spread * spread, 0.0))
    scale = jnp.broadcast_to(lax.rsqrt(group_m2 / (rows * per_group) + eps), (width,))
    if has_weight:
        scale = scale * plgpu.load(w_ref.at[columns], mask=member, other=0.0).astype(F32)
    shift = -group_offset * scale
    if has_bias:
        shift = shift + plgpu.load(b_ref.at[columns], mask=member, other=0.0).astype(F32)
    plgpu.store(scale_ref.at[columns], scale, mask=member)
    plgpu.store(shift_ref.at[columns], shift, mask=member)


def _group_norm_cl_normalize_kernel(x_ref, row0_ref, scale_ref, shift_ref, y_ref, *, rows, channels, per_group,
                                    part_rows, tile_rows, silu):
    """Program (n, p, j): y = (x - x0[g(c)]) scale[c] + shift[c] (then SiLU) on part p's rows of
    column block j."""
    width = x_ref.shape[1]
    base, first_column = pl.program_id(1) * part_rows, pl.program_id(2) * width
    pivots = _cl_pivots(row0_ref, first_column, width, per_group, channels)
    inside = first_column + jnp.arange(width, dtype=jnp.int32) < channels
    scale = plgpu.load(scale_ref, mask=inside, other=0.0)[None, :]
    shift = plgpu.load(shift_ref, mask=inside, other=0.0)[None, :]

    def normalize(i, carry):
        start = base + i * tile_rows
        tile, valid = _cl_tile(x_ref, start, tile_rows, rows, first_column, channels)
        y = (tile - pivots) * scale + shift
        if silu:
            y = y * sigmoid(y)
        plgpu.store(y_ref.at[pl.ds(start, tile_rows), :], y.astype(y_ref.dtype), mask=valid)
        return carry

    lax.fori_loop(0, part_rows // tile_rows, normalize, 0)


def _channels_last(x, num_groups, weight, bias, eps, silu, interpret, max_block, parts, stats="tiles"):
    """The "channels_last" form on x viewed as (N, HW, C): ``group_norm_cl_stats`` over the grid
    (N, parts, column blocks), ``group_norm_cl_merge`` over (N, G), ``group_norm_cl_normalize`` over
    the stats' grid. Between them only the (N, parts, C) float32 column moments and the (N, C)
    scales and shifts. ``parts``: None picks by size (``_cl_geometry``); a power of two forces it.
    ``stats``: the statistics kernel (CL_STATS)."""
    n, c = x.shape[:2]
    rows = math.prod(x.shape[2:])
    column_block, tile_rows, parts, part_rows = _cl_geometry(n, rows, c, parts, max_block)
    per_group, width = c // num_groups, next_power_of_2(c)
    pixels = jnp.moveaxis(x, 1, -1).reshape(n, rows, c)  # free where x is stored NHWC
    grid = (n, parts, cdiv(c, column_block))
    params = compiler_params(warps_for_block(tile_rows * column_block), interpret)
    statics = dict(rows=rows, channels=c, per_group=per_group)

    # every block masked past HW and C; the sample's row 0 is read again for the pivots
    columns_spec = pl.BlockSpec((None, parts * part_rows, column_block), lambda i, p, j: (i, 0, j))
    row0_spec = pl.BlockSpec((None, 1, width), lambda i, p, j: (i, 0, 0))
    moments = jax.ShapeDtypeStruct((n, parts, c), F32)
    lanes = stats == "lanes"
    stats_kernel = _group_norm_cl_stats_lanes_kernel if lanes else _group_norm_cl_stats_kernel
    offsets, m2 = pl.pallas_call(
        functools.partial(stats_kernel, part_rows=part_rows, tile_rows=tile_rows, **statics),
        out_shape=(moments, moments),
        grid=grid,
        in_specs=[columns_spec, row0_spec],
        out_specs=(pl.BlockSpec((None, None, column_block), lambda i, p, j: (i, p, j)),) * 2,
        compiler_params=params,
        interpret=interpret,
        name="group_norm_cl_stats_lanes" if lanes else "group_norm_cl_stats",
    )(pixels, pixels)

    group_width = next_power_of_2(per_group)
    chunk = min(parts, max(NORM_BLOCK // group_width, 1))
    # one program per (sample, group): whole per-sample blocks, wide enough for the last group's
    # window (C - C/G + next_pow2(C/G) columns), each program reading and writing its group's window
    covered = next_power_of_2(c - per_group + group_width)
    sample_moments_spec = pl.BlockSpec((None, parts, covered), lambda i, g: (i, 0, 0))
    vector_spec = pl.BlockSpec((covered,), lambda i, g: (0,))
    sample_vector_spec = pl.BlockSpec((None, covered), lambda i, g: (i, 0))
    operands, in_specs = [offsets, m2], [sample_moments_spec, sample_moments_spec]
    for vector in (weight, bias):
        if vector is not None:
            operands.append(vector)
            in_specs.append(vector_spec)
    vectors = jax.ShapeDtypeStruct((n, c), F32)
    scale, shift = pl.pallas_call(
        functools.partial(_group_norm_cl_merge_kernel, part_rows=part_rows, chunk=chunk, eps=eps,
                          has_weight=weight is not None, has_bias=bias is not None, **statics),
        out_shape=(vectors, vectors),
        grid=(n, num_groups),
        in_specs=in_specs,
        out_specs=(sample_vector_spec, sample_vector_spec),
        compiler_params=compiler_params(warps_for_block(chunk * group_width), interpret),
        interpret=interpret,
        name="group_norm_cl_merge",
    )(*operands)

    column_vector_spec = pl.BlockSpec((None, column_block), lambda i, p, j: (i, j))
    y = pl.pallas_call(
        functools.partial(_group_norm_cl_normalize_kernel, part_rows=part_rows, tile_rows=tile_rows, silu=silu,
                          **statics),
        out_shape=jax.ShapeDtypeStruct(pixels.shape, x.dtype),
        grid=grid,
        in_specs=[columns_spec, row0_spec, column_vector_spec, column_vector_spec],
        out_specs=columns_spec,
        compiler_params=params,
        interpret=interpret,
        name="group_norm_cl_normalize",
    )(pixels, pixels, scale, shift)
    return jnp.moveaxis(y.reshape(n, *x.shape[2:], c), -1, 1)


@functools.partial(jax.jit, static_argnums=(1, 4, 5, 6), static_argnames=("form", "parts", "max_block", "stats"))
def group_norm_fused(x, num_groups: int, weight, bias, eps: float, silu: bool, interpret: bool,
                     form: str | None = None, parts: int | None = None, max_block: int = NORM_BLOCK,
                     stats: str = "tiles"):
    """Fused GroupNorm (+ SiLU) of x (N, C, *spatial) in one of FORMS (None: ``fused_form``'s
    choice for x's size); see the module docstring.
    weight and bias are (C,) or None; the result has x's shape and dtype. ``parts`` ("split":
    parts per slab, "channels_last": parts per sample): a power of two (None: by size). ``max_block``: the largest block, a
    power of two (NORM_BLOCK; larger keeps more of a slab in registers, for the probe). ``stats``:
    the "channels_last" form's statistics kernel (CL_STATS; the other forms have one)."""
    if form is not None and form not in FORMS:
        raise ValueError(f"form: expected None or one of {FORMS}, got {form!r}")
    form = fused_form(x.size) if form is None else form
    if parts is not None and (form == "one_launch" or parts < 1 or parts & (parts - 1)):
        raise ValueError(f"parts: expected None, or a power of two with form 'split' or 'channels_last', got "
                         f"{parts!r} (form={form!r})")
    if stats not in CL_STATS or (stats != "tiles" and form != "channels_last"):
        raise ValueError(f"stats: expected one of {CL_STATS}, and 'tiles' unless form is 'channels_last'; got "
                         f"{stats!r} (form={form!r})")
    if max_block < 1 or max_block & (max_block - 1):
        raise ValueError(f"max_block: expected a power of two, got {max_block!r}")
    if x.size == 0:
        return jnp.zeros_like(x)
    if form == "one_launch":
        return _one_launch(x, num_groups, weight, bias, eps, silu, interpret, max_block)
    if form == "channels_last":
        return _channels_last(x, num_groups, weight, bias, eps, silu, interpret, max_block, parts, stats)
    return _split(x, num_groups, weight, bias, eps, silu, interpret, max_block, parts)

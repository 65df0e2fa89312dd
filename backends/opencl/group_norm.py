"""GroupNorm, the paper's first idea, on OpenCL: fused (one launch) and unfused (3-4 launches),
and LayerNorm (the same statistics over one row). Host side of kernels/group_norm.cl.

The math (reference/group_norm.py defines it). GroupNorm splits the C channels of x (N, C, *spatial)
into G groups; each (sample, group) slab X of n = (C/G) * prod(spatial) values gets

    mean = sum(X) / n,   var = sum((X - mean)^2) / n,
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]      (then y * sigmoid(y) if silu)

LayerNorm is the same over the last axis (with weight/bias per column).

Kernel plans (launches, temporaries):

    group_norm, fused     1 launch (``group_norm_fused``), 0 temporary bytes: the paper's
                          "one GPU command". As in ML Drift's HWCGroupNormalization (and MNN's
                          groupnorm_buf.cl), one work-group of WG = 256 items per (sample, group):
                          the items stride over the slab (contiguous in NCHW) accumulating in
                          float, reduce through __local memory, and the same work-group re-reads
                          the slab to write the normalized, affine (and optionally SiLU-activated)
                          output. The variance is the corrected two-pass form (mean first, then
                          centred sums, both inside the kernel), so a mean of 1e3 with a standard
                          deviation of 0.1 in fp32 does not cancel the way E[x^2] - E[x]^2 does;
                          and the mean stays the pair (m0, dm) when it is subtracted,
                          (x - m0) - dm, so its correction is not rounded away (group_norm.cl).
                          Traffic: x is read three times (the second and third reads of a slab
                          mostly hit cache) and y written once; the unfused path reads x as often,
                          plus the temporaries, plus one more read and write of y for SiLU.
                          Pitfall (vllm-omni#6661): the grid is only N*G work-groups, e.g. 32 at
                          batch 1, whatever the activation size: on an H100 (132 SMs) most of the
                          GPU idles for large slabs. We keep the paper's one-work-group-per-group
                          plan with a large work-group; a split reduction over several work-groups
                          would need a second launch or atomics.
    group_norm, unfused   the paper's "before": 3 launches, or 4 with silu.
                          group_mean (one WG per slab) -> temp mean m0 (N, G) float32;
                          group_var (one WG per slab, centred) -> temp (N, G, 2) float32:
                          the mean's correction dm and the variance;
                          group_norm_apply (one item per element) -> output;
                          silu (elementwise.cl) in place on the output, its own launch.
    layer_norm            1 launch, 0 temporaries: one work-group per row, the same corrected
                          two-pass statistics through __local reductions, then the affine write.

Statistics are float32 whatever the storage dtype. Work-group sizes are powers of two fixed at
compile time (``WG`` define, reqd_work_group_size), so PoCL compiles each size once.
"""

from __future__ import annotations

import math

import numpy as np

from . import elementwise
from .runtime import Runtime, check_int32_indexing, power_of_two_at_most, row_work_group

FILE = "group_norm.cl"
#: Work-group size of the GroupNorm reductions (one work-group per (sample, group)).
GROUP_WG = 256
#: Elementwise work-group size of the unfused normalize kernel.
APPLY_LOCAL = 256


def _kernel(rt: Runtime, name: str, dtype, wg: int):
    return rt.kernel(FILE, name, dtype, {"WG": wg})


def _affine(rt: Runtime, weight, bias, dtype):
    """(weight or a dummy, bias or a dummy, has_weight, has_bias)."""
    return (weight if weight is not None else rt.dummy(dtype),
            bias if bias is not None else rt.dummy(dtype),
            weight is not None, bias is not None)


# ----------------------------------------------------------------------------------- GroupNorm


def group_norm(rt: Runtime, x, num_groups: int, weight, bias, eps: float, fused: bool, silu: bool):
    """GroupNorm of x (N, C, *spatial), optionally followed by SiLU; see the module docstring."""
    if fused:
        return group_norm_fused(rt, x, num_groups, weight, bias, eps, silu)
    return group_norm_unfused(rt, x, num_groups, weight, bias, eps, silu)


def group_norm_fused(rt: Runtime, x, groups: int, weight, bias, eps: float, silu: bool):
    nb, c = x.shape[:2]
    spatial = math.prod(x.shape[2:])
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if x.size == 0:
        return y
    wg = power_of_two_at_most(GROUP_WG, rt.max_work_group_size)
    w, b, has_w, has_b = _affine(rt, weight, bias, x.dtype)
    rt.launch(_kernel(rt, "group_norm_fused", x.dtype, wg), (nb * groups * wg,), (wg,),
              x, w, b, y, has_w, has_b, groups, c // groups, spatial, float(eps), bool(silu))
    return y


def group_norm_unfused(rt: Runtime, x, groups: int, weight, bias, eps: float, silu: bool):
    nb, c = x.shape[:2]
    spatial = math.prod(x.shape[2:])
    slab = (c // groups) * spatial
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if x.size == 0:
        return y
    wg = power_of_two_at_most(GROUP_WG, rt.max_work_group_size)
    mean = rt.temp((nb, groups), np.float32)
    stats = rt.temp((nb, groups, 2), np.float32)  # (mean correction dm, variance) per slab
    rt.launch(_kernel(rt, "group_mean", x.dtype, wg), (nb * groups * wg,), (wg,), x, mean, slab)
    rt.launch(_kernel(rt, "group_var", x.dtype, wg), (nb * groups * wg,), (wg,), x, mean, stats, slab)
    w, b, has_w, has_b = _affine(rt, weight, bias, x.dtype)
    rt.launch(_kernel(rt, "group_norm_apply", x.dtype, wg), (x.size,), (APPLY_LOCAL,),
              x, mean, stats, w, b, y, has_w, has_b, c, slab, spatial, x.size, float(eps))
    if silu:
        elementwise.silu_into(rt, y, y)
    return y


# ----------------------------------------------------------------------------------- LayerNorm


def layer_norm(rt: Runtime, x, weight, bias, eps: float):
    """LayerNorm over the last axis: one work-group per row, one launch."""
    cols = x.shape[-1]
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if x.size == 0:
        return y
    rows = x.size // cols
    wg = row_work_group(rt, cols)
    w, b, has_w, has_b = _affine(rt, weight, bias, x.dtype)
    rt.launch(_kernel(rt, "layer_norm", x.dtype, wg), (rows * wg,), (wg,),
              x, w, b, y, has_w, has_b, cols, float(eps))
    return y

"""GroupNorm, the paper's first idea, on OpenCL: fused (one launch, or two) and unfused (3-4 launches),
and LayerNorm (the same statistics over one row). Host side of kernels/group_norm.cl.

The math (reference/group_norm.py defines it). GroupNorm splits the C channels of x (N, C, *spatial)
into G groups; each (sample, group) slab X of n = (C/G) * prod(spatial) values gets

    mean = sum(X) / n,   var = sum((X - mean)^2) / n,
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]      (then y * sigmoid(y) if silu)

LayerNorm is the same over the last axis (with weight/bias per column).

Kernel plans (launches, temporaries):

    group_norm, fused     two forms of the same computation; both cut every (sample, group) slab
                          into ``parts`` contiguous parts, one work-group each, so the grid fills the
                          device however few groups there are (``fused_plan``). The one-work-group-
                          per-group plan of ML Drift's HWCGroupNormalization and MNN's groupnorm_buf.cl
                          runs only N*G = 32 work-groups at batch 1: 2.4-4x slower than the unfused
                          path on an H200's 132 SMs on the VAE decoder's large maps (vllm-omni#6661
                          reports the same pitfall). Each work-group computes its part's moments
                          (count, mean, M2) of x - x0 (x0 the slab's first element) with Chan's
                          pairwise update, so a mean of 1e3 with a standard deviation of 0.1 in fp32
                          does not cancel as E[x^2] - E[x]^2 does; the normalizing work-groups merge
                          the parts' moments exactly and write
                          ((x - x0) - mean) * rstd * weight[c] + bias[c] (then SiLU). x is read twice
                          (statistics, normalize) and y written once: the floor.
      one_launch          1 launch (``group_norm_fused``): the paper's "one GPU command". 2 * T
                          work-groups for T = N*G*parts: the first T to start compute the parts'
                          statistics, the next T wait for their slab's and normalize (a ticket
                          handed out by an atomic, so no assumption about scheduling order; see
                          group_norm.cl). Temporaries: the (N, G, parts, 2) float32 partials; the
                          runtime's zeroed counters (``rt.counters``) are a cache, reset by the
                          kernel itself.
      split               2 launches: ``group_norm_stats`` -> the (N, G, parts, 2) float32
                          partials -> ``group_norm_normalize`` (merge fused into the normalize).
                          ``fused=True`` takes ``FUSED_FORM``, "one_launch": at least as fast as
                          split on 33 of 36 rows of three H200 runs (notes/group_norm.md).
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
from dataclasses import dataclass

import numpy as np

from . import elementwise
from .runtime import Runtime, check_int32_indexing, power_of_two_at_most, row_work_group

FILE = "group_norm.cl"
#: Work-group size of the GroupNorm reductions (one work-group per slab, or per part of one).
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


#: The fused forms, and the one ``fused=True`` runs (the rule measured in NOTES.md, "GroupNorm").
FUSED_FORMS = ("one_launch", "split")
#: The kernels each fused form launches, in order.
FORM_KERNELS = {"one_launch": ("group_norm_fused",), "split": ("group_norm_stats", "group_norm_normalize")}
FUSED_FORM = "one_launch"
#: Work-groups the fused forms aim for per compute unit (an H200 SM holds 8 of 256 items).
WORK_GROUPS_PER_UNIT = 8
#: The fewest vectors one item reads in a part (so a part is worth a work-group).
MIN_VECTORS_PER_ITEM = 4


@dataclass(frozen=True)
class FusedPlan:
    """How the fused forms cut the slabs: vectors of ``vec`` elements, ``n_vec`` per slab, in
    ``parts`` parts of ``chunk`` vectors (the last may be shorter, none is empty)."""

    vec: int
    n_vec: int
    parts: int
    chunk: int


def fused_plan(x_shape, groups: int, compute_units: int, max_work_group_size: int = GROUP_WG,
               parts: int | None = None) -> FusedPlan:
    """The parts of the fused forms on a device with ``compute_units`` (and that work-group
    limit): ``parts`` if given (the tests force several), else enough for
    ``WORK_GROUPS_PER_UNIT`` work-groups per compute unit, while each item still reads at least
    ``MIN_VECTORS_PER_ITEM`` vectors; at most one work-group's worth (the merge holds the parts
    in __local memory) and at most one per vector."""
    nb, c = x_shape[:2]
    spatial = math.prod(x_shape[2:])
    vec = 4 if spatial % 4 == 0 else 1
    n_vec = (c // groups) * spatial // vec
    wg = power_of_two_at_most(GROUP_WG, max_work_group_size)
    if parts is None:
        wanted = -(-WORK_GROUPS_PER_UNIT * compute_units // (nb * groups))
        parts = min(wanted, -(-n_vec // (wg * MIN_VECTORS_PER_ITEM)))
    elif not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts: expected a positive int, got {parts!r}")
    parts = max(1, min(parts, wg, n_vec))
    chunk = -(-n_vec // parts)
    return FusedPlan(vec, n_vec, -(-n_vec // chunk), chunk)


def device_plan(rt: Runtime, x_shape, groups: int, parts: int | None = None) -> FusedPlan:
    """``fused_plan`` on ``rt``'s device."""
    return fused_plan(x_shape, groups, rt.compute_units, rt.max_work_group_size, parts)


def group_norm_fused(rt: Runtime, x, groups: int, weight, bias, eps: float, silu: bool,
                     form: str | None = None, parts: int | None = None):
    """The fused GroupNorm(+SiLU) in ``form`` ("one_launch" or "split"; None: ``FUSED_FORM``),
    with the slabs cut by ``fused_plan`` (``parts`` forces the number of parts)."""
    form = FUSED_FORM if form is None else form
    if form not in FUSED_FORMS:
        raise ValueError(f"form: expected one of {FUSED_FORMS}, got {form!r}")
    nb, c = x.shape[:2]
    spatial = math.prod(x.shape[2:])
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    if x.size == 0:
        return y
    plan = device_plan(rt, x.shape, groups, parts)
    wg = power_of_two_at_most(GROUP_WG, rt.max_work_group_size)
    defines = {"WG": wg, "VEC": plan.vec}
    jobs = nb * groups * plan.parts
    partials = rt.temp((nb, groups, plan.parts, 2), np.float32)
    w, b, has_w, has_b = _affine(rt, weight, bias, x.dtype)
    shape_args = (has_w, has_b, groups, c // groups, spatial // plan.vec, plan.parts, plan.chunk,
                  plan.n_vec, float(eps), bool(silu))
    if form == "one_launch":
        sync = rt.counters("group_norm_fused", 2 + nb * groups)
        rt.launch(rt.kernel(FILE, "group_norm_fused", x.dtype, defines), (2 * jobs * wg,), (wg,),
                  x, w, b, partials, sync, y, *shape_args)
    else:
        rt.launch(rt.kernel(FILE, "group_norm_stats", x.dtype, defines), (jobs * wg,), (wg,),
                  x, partials, plan.parts, plan.chunk, plan.n_vec)
        rt.launch(rt.kernel(FILE, "group_norm_normalize", x.dtype, defines), (jobs * wg,), (wg,),
                  x, w, b, partials, y, *shape_args)
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

"""GroupNorm (+ SiLU), the paper's first idea, and LayerNorm, the same statistics over one row: in
the reference and on every backend.

The reference (reference/group_norm.py): GroupNorm against its definition computed one slab at a
time with Python's exactly rounded sums, its invariance to a per-group shift and positive scale,
the two-pass variance that survives a large mean (where the one-pass form is shown to fail), dtype
keeping; LayerNorm against its formula; float32 arithmetic rounded to the storage dtype.

The backends (the ``backend`` fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes),
fused and unfused, against the float64 reference on the same rounded inputs: drawn shapes (ragged
slabs and rows, one-element slabs, 2-D to 5-D inputs, with and without weight and bias, two eps,
with and without the fused SiLU), the unfused baseline computing the same function as the fused
kernel, slabs and rows longer than any work-group or block, a large mean, SD's sizes. The bound is
the dtype's, plus the conditioning of normalizing (``group_norm_tolerance``) where the old
per-backend test allowed it. Example counts per backend (``given_for``): the OpenCL suite's for
numpy and opencl, the JAX suite's for jax (its fused kernel is interpreted once per drawn shape on a
CPU). Backend-specific checks: tests/opencl/test_opencl_group_norm.py (launches, temporaries,
kernel names), tests/jax/test_jax_group_norm.py (one pallas_call, jit, the block choice).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import (
    REL_TOL, THOROUGH, affine_params, assert_matches, check_low_precision_reference, given_for,
    group_norm_reference, group_norm_tolerance, random_array, rounded, scales, scales_for, seeds, to_device,
)

# =========================================================================== the reference


def group_norm_by_loops(x, groups, weight, bias, eps):
    """The definition, one (sample, group) at a time, with Python's statistics in float64."""
    n, c = x.shape[:2]
    per = c // groups
    y = np.empty_like(x)
    for i in range(n):
        for g in range(groups):
            slab = x[i, g * per:(g + 1) * per]
            values = slab.ravel().tolist()
            mean = math.fsum(values) / len(values)
            var = math.fsum((v - mean) ** 2 for v in values) / len(values)
            y[i, g * per:(g + 1) * per] = (slab - mean) / math.sqrt(var + eps)
    return y * weight.reshape(1, c, 1, 1) + bias.reshape(1, c, 1, 1)


@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
       hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), scale=scales)
def test_group_norm_matches_definition(seed, n, groups, per, hw, scale):
    c = groups * per
    x = random_array(seed, (n, c) + hw, scale=scale, offset=3 * scale)
    w, b = random_array(seed + 1, (c,)), random_array(seed + 2, (c,))
    expected = group_norm_by_loops(x, groups, w, b, 1e-5)
    assert_close(ops.group_norm(x, groups, w, b), expected, atol=1e-10, rtol=1e-10)


@given(seed=seeds, shift=st.floats(-1e3, 1e3), log_scale=st.floats(-3, 3))
def test_group_norm_is_invariant_to_per_group_shift_and_positive_scale(seed, shift, log_scale):
    groups, per = 4, 2
    x = random_array(seed, (2, groups * per, 5, 3))
    # a different shift and scale for each group: the output of every group is unchanged
    g_shift = shift * np.arange(1, groups + 1).repeat(per).reshape(1, -1, 1, 1)
    g_scale = 10.0 ** (log_scale * np.linspace(0.5, 1, groups)).repeat(per).reshape(1, -1, 1, 1)
    base = ops.group_norm(x, groups, eps=0.0)
    moved = ops.group_norm(x * g_scale + g_shift, groups, eps=0.0)
    assert_close(moved, base, atol=1e-8, rtol=1e-8)


def test_group_norm_two_pass_variance_survives_a_large_mean():
    # mean 1e3, std 0.1 in float32: E[x^2] - E[x]^2 cancels catastrophically, the centred
    # two-pass variance does not
    x = random_array(0, (1, 4, 16, 16), scale=0.1, offset=1e3).astype(np.float32)
    exact = ops.group_norm(x.astype(np.float64), 2)
    assert relative_frobenius_error(ops.group_norm(x, 2), exact) < 1e-3
    slabs = x.reshape(1, 2, -1)
    mean = slabs.mean(-1, keepdims=True)
    one_pass_var = np.maximum((slabs * slabs).mean(-1, keepdims=True) - mean * mean, 0)
    one_pass = ((slabs - mean) / np.sqrt(one_pass_var + np.float32(1e-5))).reshape(x.shape)
    assert relative_frobenius_error(one_pass, exact) > 0.1  # the failure the two-pass form avoids


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_group_norm_keeps_dtype_and_normalizes(dtype):
    x = random_array(3, (2, 6, 4, 4), scale=2.0, offset=1.0, dtype=dtype)
    y = ops.group_norm(x, 3)
    assert y.dtype == dtype
    slabs = y.astype(np.float64).reshape(2, 3, -1)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    assert np.all(np.abs(slabs.mean(-1)) < tol)
    assert np.all(np.abs(slabs.std(-1) - 1) < 10 * tol)


@given(seed=seeds, c=st.integers(2, 33), scale=scales)
def test_layer_norm_matches_definition(seed, c, scale):
    x = random_array(seed, (2, 3, c), scale=scale, offset=scale)
    w, b = random_array(seed + 1, (c,)), random_array(seed + 2, (c,))
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    assert_close(ops.layer_norm(x, w, b), (x - mu) / sd * w + b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_layer_norm_low_precision_is_fp32_arithmetic_rounded_to_storage(dtype, tol):
    check_low_precision_reference(ops.layer_norm, dtype, tol)


# =========================================================================== every backend: GroupNorm


spatial_shapes = st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple)
#: examples of the JAX backend per variant (its fused kernel is interpreted per shape on a CPU)
JAX_EXAMPLES = {True: 5, False: 8}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_group_norm_matches_reference(backend, dtype, fused):
    @given_for(backend, jax=JAX_EXAMPLES[fused], seed=seeds, batch=st.integers(1, 2), groups=st.integers(1, 4),
               per=st.integers(1, 3), spatial=spatial_shapes, scale=scales, offset=st.sampled_from([0.0, 3.0]),
               with_weight=st.booleans(), with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]),
               silu=st.booleans())
    def check(seed, batch, groups, per, spatial, scale, offset, with_weight, with_bias, eps, silu):
        c = groups * per
        x, x64 = rounded(random_array(seed, (batch, c) + spatial, scale=scale, offset=offset * scale), dtype)
        (w, w64), (b, b64) = affine_params(seed, c, dtype, with_weight, with_bias)
        args = (backend.asarray(x), groups, to_device(backend, w), to_device(backend, b), eps)
        tol = group_norm_tolerance(x64, groups, eps, dtype)
        y = backend.to_numpy(backend.group_norm(*args, fused=fused, silu=silu))
        assert_matches(y, group_norm_reference(x64, groups, w64, b64, eps, silu), dtype,
                       name=f"group_norm fused={fused} silu={silu}", rel_tol=tol)
        if fused:  # the unfused baseline computes the same function as the fused kernel
            baseline = backend.to_numpy(backend.group_norm(*args, fused=False, silu=silu))
            assert_matches(baseline, y.astype(np.float64), dtype, name="unfused vs fused", rel_tol=2 * tol)

    check()


@pytest.mark.backends("opencl", "jax")  # numpy: both variants are the same reference function
def test_fused_group_norm_equals_the_unfused_baseline(backend):
    # long 1-D slabs (up to 3 x 60 values), float32, a mean away from zero
    @given_for(backend, n=3, seed=seeds, groups=st.integers(1, 3), per=st.integers(1, 3), hw=st.integers(1, 60),
               silu=st.booleans(), with_affine=st.booleans())
    def check(seed, groups, per, hw, silu, with_affine):
        c = groups * per
        x, x64 = rounded(random_array(seed, (2, c, hw), scale=3.0, offset=1.0), np.float32)
        (w, _), (b, _) = affine_params(seed, c, np.float32, with_affine, with_affine)
        args = (backend.asarray(x), groups, to_device(backend, w), to_device(backend, b))
        fused = backend.to_numpy(backend.group_norm(*args, fused=True, silu=silu))
        baseline = backend.to_numpy(backend.group_norm(*args, fused=False, silu=silu))
        assert_matches(fused, baseline.astype(np.float64), np.float32, name="fused vs unfused baseline",
                       rel_tol=2 * group_norm_tolerance(x64, groups, 1e-5, np.float32))

    check()


@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),  # slab 969: 3.8 OpenCL work-groups, 1 padded JAX block
                                           ((1, 8, 25, 25), 2),    # slab 2500: five JAX blocks of 512, ragged
                                           ((1, 32, 9, 9, 3), 4),  # 5-D, slab 1944
                                           ((3, 5), 5),            # 2-D: one-element slabs
                                           ((1, 64, 1, 1), 32)])   # ml-drift's 1x1 image case
def test_group_norm_long_and_degenerate_slabs(backend, dtype, shape, groups):
    c = shape[1]
    x, x64 = rounded(random_array(7, shape, scale=2.0, offset=-1.0), dtype)
    (w, w64), (b, b64) = affine_params(7, c, dtype, True, True)
    for silu in (False, True):
        expected = group_norm_reference(x64, groups, w64, b64, 1e-5, silu)
        for fused in (True, False):
            y = backend.group_norm(backend.asarray(x), groups, backend.asarray(w), backend.asarray(b),
                                   fused=fused, silu=silu)
            assert_matches(backend.to_numpy(y), expected, dtype, name=f"{shape} fused={fused} silu={silu}")


#: The one bound of every backend's fp32 GroupNorm (fused and unfused) and LayerNorm at mean 1e3,
#: std 0.1. A two-pass variance alone keeps the error below 1e-3 (E[x^2] - E[x]^2 loses every
#: digit, the reference's test above); rounding the mean to one float32 before subtracting it costs
#: 1e-4..1e-3 more (half an ulp of 1e3 is 3e-4 of the std). Every implementation subtracts the mean
#: without that rounding (a pivot or the corrected pair (x - m0) - dm) and stays near 1e-7.
LARGE_MEAN_BOUND = 1e-5


@pytest.mark.parametrize("op", ["group_norm fused", "group_norm unfused", "layer_norm"])
def test_normalization_survives_a_large_mean(backend, op):
    # GroupNorm: slab 966 (ragged, one padded JAX block), slab 10000 (ten JAX blocks, 39 OpenCL
    # work-groups' worth). LayerNorm: rows of 320 (64 items), 2049 and 3001 (256 items, ragged).
    if op == "layer_norm":
        cases = [((4, 320), None), ((2, 2049), None), ((2, 3001), None)]
    else:
        cases = [((2, 6, 21, 23), 3), ((1, 4, 50, 100), 2)]
    for shape, groups in cases:
        x = random_array(0, shape, scale=0.1, offset=1e3).astype(np.float32)
        if groups is None:
            exact = ops.layer_norm(x.astype(np.float64))
            y = backend.to_numpy(backend.layer_norm(backend.asarray(x)))
        else:
            exact = ops.group_norm(x.astype(np.float64), groups)
            y = backend.to_numpy(backend.group_norm(backend.asarray(x), groups, fused=op.endswith(" fused")))
        error = relative_frobenius_error(y, exact)
        assert error < LARGE_MEAN_BOUND, f"{op} {shape}: {error:.2e}"


SD_SHAPES = [((1, 320, 64, 64), 32)]        # SD 1.x UNet, 64x64 latents: slab 40960, 10 JAX blocks
if THOROUGH:
    SD_SHAPES.append(((1, 128, 256, 256), 32))  # the VAE decoder at 256x256: slab 262144, 64 JAX blocks


@pytest.mark.parametrize("shape, groups", SD_SHAPES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_group_norm_sd_sizes_float32(backend, shape, groups, fused):
    c = shape[1]
    x, x64 = rounded(random_array(11, shape, scale=1.5, offset=0.5), np.float32)
    (w, w64), (b, b64) = affine_params(11, c, np.float32, True, True)
    y = backend.group_norm(backend.asarray(x), groups, backend.asarray(w), backend.asarray(b), fused=fused,
                           silu=True)
    assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, w64, b64, 1e-5, True), np.float32,
                   name=f"{shape} silu")


# =========================================================================== every backend: LayerNorm


def normalization_tolerance(slabs64, eps, dtype):
    """The dtype's bound plus the conditioning of normalizing (as ``group_norm_tolerance``), one
    normalized slab per row of ``slabs64`` (..., L)."""
    kappa = np.max(np.abs(slabs64).max(-1) / np.sqrt(slabs64.var(-1) + eps))
    return REL_TOL[np.dtype(dtype)] + 8 * 2.0**-24 * kappa


#: Two families of inputs, each with its own bound. "rows": long ragged rows (OpenCL runs 64 or
#: 256 work-items per row), offsets 0 or 5 scales, the default eps: the dtype's bound alone.
#: "small": up to 4-D with short rows, where two or three values may nearly agree (a row (x, x + d)
#: normalizes to +-1 whatever d, so float32 roundings of x are amplified by |x| / d), two eps: the
#: dtype's bound plus that conditioning. Low-precision inputs of "small" stay below 10 (fp16 range).
LAYER_NORM_CASES = {
    "rows": dict(shape=st.tuples(st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
                                 st.integers(1, 300)).map(lambda lead_cols: lead_cols[0] + (lead_cols[1],)),
                 offset=st.sampled_from([0.0, 5.0]), eps=st.just(1e-5)),
    "small": dict(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
                  offset=st.sampled_from([0.0, 3.0]), eps=st.sampled_from([1e-5, 1e-2])),
}


@pytest.mark.parametrize("case", LAYER_NORM_CASES)
def test_layer_norm_matches_reference(backend, dtype, case):
    conditioned = case == "small"

    # JAX: its old suite's 8 examples of the small shapes; 4 of the long rows (new there)
    @given_for(backend, jax=8 if conditioned else 4, seed=seeds, scale=scales_for(dtype) if conditioned else scales,
               with_weight=st.booleans(), with_bias=st.booleans(), **LAYER_NORM_CASES[case])
    def check(seed, shape, scale, offset, with_weight, with_bias, eps):
        c = shape[-1]
        x, x64 = rounded(random_array(seed, shape, scale=scale, offset=offset * scale), dtype)
        (w, w64), (b, b64) = affine_params(seed, c, dtype, with_weight, with_bias)
        y = backend.layer_norm(backend.asarray(x), to_device(backend, w), to_device(backend, b), eps)
        tol = normalization_tolerance(x64.reshape(-1, c), eps, dtype) if conditioned else None
        assert_matches(backend.to_numpy(y), ops.layer_norm(x64, w64, b64, eps), dtype, name="layer_norm", rel_tol=tol)

    check()


@pytest.mark.parametrize("cols", [2049, 3001])  # OpenCL's 256-item work-group, ragged rows
def test_layer_norm_long_rows(backend, dtype, cols):
    x, x64 = rounded(random_array(3, (3, cols), scale=0.5, offset=20.0), dtype)
    (w, w64), (b, b64) = affine_params(3, cols, dtype, True, True)
    y = backend.layer_norm(backend.asarray(x), backend.asarray(w), backend.asarray(b))
    assert_matches(backend.to_numpy(y), ops.layer_norm(x64, w64, b64), dtype, name=f"layer_norm cols={cols}")
    # mean 1e3, std 0.1 on these rows: test_normalization_survives_a_large_mean

"""OpenCL GroupNorm (fused and unfused), LayerNorm and softmax against the float64 reference.

Every comparison runs on the same rounded inputs (``rounded``); outputs are NaN-poisoned, so an
element a kernel forgets to write fails. Shapes are drawn so that the reduced lengths are ragged
(not multiples of the work-group size), include single-element slabs and rows, and (in dedicated
tests) exceed the work-group size several times.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import (
    affine_params, assert_matches, group_norm_reference, group_norm_tolerance,
    random_array, rounded, scales, seeds, to_device,
)


spatial_shapes = st.lists(st.integers(1, 7), min_size=0, max_size=3).map(tuple)
lead_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


# ----------------------------------------------------------------------------------- GroupNorm


@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
       spatial=spatial_shapes, scale=scales, offset=st.sampled_from([0.0, 3.0]),
       with_weight=st.booleans(), with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-2]),
       silu=st.booleans())
def test_group_norm_fused_and_unfused_match_reference(backend, dtype, seed, n, groups, per, spatial,
                                                      scale, offset, with_weight, with_bias, eps, silu):
    c = groups * per
    x, x64 = rounded(random_array(seed, (n, c) + spatial, scale=scale, offset=offset * scale), dtype)
    (w, w64), (b, b64) = affine_params(seed, c, dtype, with_weight, with_bias)
    expected = group_norm_reference(x64, groups, w64, b64, eps, silu)
    args = (backend.asarray(x), groups, to_device(backend, w), to_device(backend, b), eps)
    results = {}
    for fused in (True, False):
        with backend.measure() as counted:
            y = backend.group_norm(*args, fused=fused, silu=silu)
        results[fused] = backend.to_numpy(y)
        assert_matches(results[fused], expected, dtype,
                       name=f"group_norm fused={fused} silu={silu}", rel_tol=group_norm_tolerance(x64, groups, eps, dtype))
        if fused:
            assert counted.launches == 1 and counted.temp_bytes == 0
        else:
            assert counted.launches == 3 + silu and counted.temp_bytes > 0
    # the unfused baseline computes the same function as the fused kernel
    assert_matches(results[False], results[True].astype(np.float64), dtype,
                   name="unfused vs fused", rel_tol=2 * group_norm_tolerance(x64, groups, eps, dtype))


@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),    # slab 969: 3.8 work-groups' worth, ragged
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


@pytest.mark.parametrize("fused", [True, False])
def test_group_norm_variance_survives_a_large_mean(backend, fused):
    # mean 1e3, std 0.1 in fp32: E[x^2] - E[x]^2 loses every digit (the reference's test shows the
    # one-pass form's error > 0.1); the in-kernel two-pass variance keeps it below 1e-3.
    x = random_array(0, (2, 6, 21, 23), scale=0.1, offset=1e3).astype(np.float32)  # slab 966, ragged
    exact = ops.group_norm(x.astype(np.float64), 3)
    y = backend.to_numpy(backend.group_norm(backend.asarray(x), 3, fused=fused))
    assert relative_frobenius_error(y, exact) < 1e-3


def test_group_norm_launch_and_temporary_counts(backend, dtype):
    n, c, groups = 2, 8, 4
    x = backend.asarray(random_array(1, (n, c, 5, 3)).astype(dtype))
    for silu in (False, True):
        with backend.measure() as fused:
            backend.group_norm(x, groups, fused=True, silu=silu)
        assert fused.launches == 1 and fused.kernels == ["group_norm_fused"]
        assert fused.temp_bytes == 0 and fused.temp_buffers == []

        with backend.measure() as unfused:
            backend.group_norm(x, groups, fused=False, silu=silu)
        assert unfused.kernels == ["group_mean", "group_var", "group_norm_apply"] + ["silu"] * silu
        assert unfused.launches == (4 if silu else 3)
        assert unfused.temp_bytes == 2 * n * groups * 4  # the (N, G) float32 mean and variance
        assert unfused.temp_buffers == [((n, groups), np.float32)] * 2


# ----------------------------------------------------------------------------------- LayerNorm


@given(seed=seeds, lead=lead_shapes, cols=st.integers(1, 300), scale=scales,
       offset=st.sampled_from([0.0, 5.0]), with_weight=st.booleans(), with_bias=st.booleans())
def test_layer_norm_matches_reference(backend, dtype, seed, lead, cols, scale, offset, with_weight, with_bias):
    x, x64 = rounded(random_array(seed, lead + (cols,), scale=scale, offset=offset * scale), dtype)
    (w, w64), (b, b64) = affine_params(seed, cols, dtype, with_weight, with_bias)
    with backend.measure() as counted:
        y = backend.layer_norm(backend.asarray(x), to_device(backend, w), to_device(backend, b))
    assert counted.launches == 1 and counted.kernels == ["layer_norm"] and counted.temp_bytes == 0
    assert_matches(backend.to_numpy(y), ops.layer_norm(x64, w64, b64), dtype, name="layer_norm")


@pytest.mark.parametrize("cols", [2049, 3001])  # the 256-item work-group, ragged rows
def test_layer_norm_long_rows_and_large_mean(backend, dtype, cols):
    x, x64 = rounded(random_array(3, (3, cols), scale=0.5, offset=20.0), dtype)
    (w, w64), (b, b64) = affine_params(3, cols, dtype, True, True)
    y = backend.layer_norm(backend.asarray(x), backend.asarray(w), backend.asarray(b))
    assert_matches(backend.to_numpy(y), ops.layer_norm(x64, w64, b64), dtype, name=f"layer_norm cols={cols}")
    if dtype == np.float32:
        big = random_array(4, (2, cols), scale=0.1, offset=1e3).astype(np.float32)
        out = backend.to_numpy(backend.layer_norm(backend.asarray(big)))
        assert relative_frobenius_error(out, ops.layer_norm(big.astype(np.float64))) < 1e-3


# ----------------------------------------------------------------------------------- softmax


@given(seed=seeds, lead=lead_shapes, cols=st.integers(1, 300), scale=scales)
def test_softmax_matches_reference(backend, dtype, seed, lead, cols, scale):
    # scale 1e3 overflows exp unless the row maximum is subtracted
    x, x64 = rounded(random_array(seed, lead + (cols,), scale=scale), dtype)
    with backend.measure() as counted:
        y = backend.softmax(backend.asarray(x))
    assert counted.launches == 1 and counted.kernels == ["softmax_rows"] and counted.temp_bytes == 0
    actual = backend.to_numpy(y)
    assert_matches(actual, ops.softmax(x64), dtype, name="softmax")
    np.testing.assert_allclose(actual.astype(np.float64).sum(-1), 1.0, rtol=0, atol=3e-5 if dtype == np.float32 else 1e-3)


@pytest.mark.parametrize("cols", [1, 2049, 4097])
def test_softmax_single_element_and_long_rows(backend, dtype, cols):
    x, x64 = rounded(random_array(5, (4, cols), scale=30.0), dtype)
    y = backend.to_numpy(backend.softmax(backend.asarray(x)))
    assert_matches(y, ops.softmax(x64), dtype, name=f"softmax cols={cols}")
    if cols == 1:
        assert np.all(y == 1)

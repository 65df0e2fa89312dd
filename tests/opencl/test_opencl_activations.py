"""OpenCL GELU / GEGLU (fused and unfused), SiLU, quick GELU, nearest upsampling and the
elementwise ops of the SD network, against the float64 reference on the same rounded inputs.

Element counts are drawn freely, so the last work-group is ragged (not a multiple of 256).
"""

import math

import numpy as np
import pyopencl as cl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.opencl import activations
from reference import ops
from reference.numerics import assert_close

from ..helpers import (
    REL_TOL, STORAGE_FLOOR, assert_matches, check_fused_gelu_accuracy, random_array, rounded,
    scales, seeds,
)


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)

def matches_unfused(actual, expected, dtype, magnitude, name):
    """The unfused graph computes 1 + erf(x/sqrt 2) (or 1 + tanh) as a node of its own, which
    cancels for negative x: its error is a few ulps of ``magnitude`` (max |x| for GELU, max |a b|
    for GEGLU) in absolute terms, not relative to a tiny output, plus a rounding or two at the
    dtype's subnormal floor (STORAGE_FLOOR). Every element is checked so."""
    tol = REL_TOL[np.dtype(dtype)]
    assert actual.dtype == dtype
    atol = tol * magnitude + 2 * STORAGE_FLOOR[np.dtype(dtype)]
    assert_close(actual, expected, atol=atol, rtol=20 * tol, name=name)


#: launches and temporaries (each of the gated tensor's size) of the unfused graphs
UNFUSED_GELU = {False: 4, True: 7}        # erf form: 3 temporaries; tanh form: 6
UNFUSED_GELU_TEMPS = {False: 3, True: 6}


# ----------------------------------------------------------------------------------- GELU


@given(seed=seeds, shape=shapes, scale=scales, approximate=st.booleans())
def test_gelu_fused_and_unfused_match_reference(backend, dtype, seed, shape, scale, approximate):
    x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
    expected = ops.gelu(x64, approximate)
    with backend.measure() as counted:
        fused = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=approximate, fused=True))
    assert counted.launches == 1 and counted.kernels == ["gelu"] and counted.temp_bytes == 0
    assert_matches(fused, expected, dtype, name=f"gelu fused approximate={approximate}")

    with backend.measure() as counted:
        unfused = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=approximate, fused=False))
    assert counted.launches == UNFUSED_GELU[approximate]
    assert counted.temp_buffers == [(x.shape, x.dtype)] * UNFUSED_GELU_TEMPS[approximate]
    assert counted.temp_bytes == UNFUSED_GELU_TEMPS[approximate] * x.nbytes
    magnitude = np.max(np.abs(x64))
    matches_unfused(unfused, expected, dtype, magnitude, f"gelu unfused approximate={approximate}")
    matches_unfused(unfused, fused.astype(np.float64), dtype, magnitude, "unfused vs fused")


def test_unfused_gelu_is_the_op_by_op_graph(backend):
    x = backend.asarray(random_array(0, (5, 7)).astype(np.float32))
    with backend.measure() as exact:
        backend.gelu(x, fused=False)
    assert exact.kernels == ["scale_shift", "erf_map", "scale_shift", "mul"]
    with backend.measure() as tanh:
        backend.gelu(x, approximate=True, fused=False)
    assert tanh.kernels == ["mul", "mul", "add", "scale_shift", "tanh_map", "scale_shift", "mul"]


def test_fused_gelu_is_the_exact_erf_form_to_a_few_ulps(backend):
    check_fused_gelu_accuracy(backend, tail_rel_tol=2e-5)


# ----------------------------------------------------------------------------------- GEGLU


@given(seed=seeds, lead=st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple),
       features=st.integers(1, 70), scale=scales, approximate=st.booleans())
def test_geglu_fused_and_unfused_match_reference(backend, dtype, seed, lead, features, scale, approximate):
    if dtype == np.float16:
        scale = min(scale, 10.0)  # a * gelu(b) grows like scale^2: 1e3 would overflow fp16 (max 65504)
    x, x64 = rounded(random_array(seed, lead + (2 * features,), scale=scale), dtype)
    expected = ops.geglu(x64, approximate)
    assert_close(expected, ops.geglu(x64, approximate), atol=1e-15 * np.max(x64**2), rtol=1e-12)
    out_bytes = math.prod(lead + (features,)) * x.itemsize
    with backend.measure() as counted:
        fused = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=True))
    assert counted.launches == 1 and counted.kernels == ["geglu"] and counted.temp_bytes == 0
    assert fused.shape == lead + (features,)
    assert_matches(fused, expected, dtype, name=f"geglu fused approximate={approximate}")

    with backend.measure() as counted:
        unfused = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=False))
    # split (a, b temporaries) + unfused gelu of b (its intermediates + its output) + a * gelu(b)
    assert counted.kernels[0] == "split_halves" and counted.kernels[-1] == "mul"
    assert counted.launches == 2 + UNFUSED_GELU[approximate]
    assert counted.temp_bytes == (3 + UNFUSED_GELU_TEMPS[approximate]) * out_bytes
    magnitude = np.max(np.abs(x64[..., :features] * x64[..., features:]))
    matches_unfused(unfused, expected, dtype, magnitude, f"geglu unfused approximate={approximate}")
    matches_unfused(unfused, fused.astype(np.float64), dtype, magnitude, "unfused vs fused")


# ----------------------------------------------------------------------------------- SiLU, quick GELU


@given(seed=seeds, shape=shapes, scale=scales)
def test_silu_and_quick_gelu_match_reference(backend, dtype, seed, shape, scale):
    x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
    for name, reference in (("silu", ops.silu), ("quick_gelu", ops.quick_gelu)):
        with backend.measure() as counted:
            y = getattr(backend, name)(backend.asarray(x))
        assert counted.launches == 1 and counted.kernels == [name] and counted.temp_bytes == 0
        assert_matches(backend.to_numpy(y), reference(x64), dtype, name=name)


def test_sigmoid_does_not_overflow_for_very_negative_inputs(backend):
    # x / (1 + exp(-x)) turns exp(89) = inf into -0; the kernels' e / (1 + e) with e = exp(-|x|)
    # keeps these results, which are normal floats although e itself is subnormal.
    if not backend.rt.device.single_fp_config & cl.device_fp_config.DENORM:
        pytest.skip("the device flushes fp32 subnormals, so exp(-89) is 0 there")
    x = np.array([-88.0, -89.0, -89.5, -90.0], np.float32)
    for name, beta in (("silu", 1.0), ("quick_gelu", 1.702)):
        xs = x / np.float32(beta)
        y = backend.to_numpy(getattr(backend, name)(backend.asarray(xs))).astype(np.float64)
        expected = getattr(ops, name)(xs.astype(np.float64))
        assert np.all(np.abs(expected) > np.finfo(np.float32).tiny)
        assert_close(y, expected, atol=0, rtol=1e-4, name=name)


# ----------------------------------------------------------------------------------- resize & arithmetic


@given(seed=seeds, shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 19), st.integers(1, 21)),
       factor=st.integers(1, 3))
def test_upsample_nearest2d_is_exact(backend, dtype, seed, shape, factor):
    x = random_array(seed, shape).astype(dtype)
    with backend.measure() as counted:
        y = backend.upsample_nearest2d(backend.asarray(x), factor)
    assert counted.launches == 1 and counted.temp_bytes == 0
    out = backend.to_numpy(y)
    assert out.dtype == dtype and np.array_equal(out, ops.upsample_nearest2d(x, factor))


@given(seed=seeds, shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 9), st.integers(1, 11)),
       scale=scales, s=st.sampled_from([-1.5, 0.18215, 3.0]))
def test_add_add_broadcast_and_mul_scalar(backend, dtype, seed, shape, scale, s):
    (a, a64), (b, b64) = (rounded(random_array(seed + i, shape, scale=scale), dtype) for i in (0, 1))
    v, v64 = rounded(random_array(seed + 2, shape[:2], scale=scale), dtype)
    rt = backend.rt
    cases = [
        ("add", lambda: activations.add(rt, backend.asarray(a), backend.asarray(b)), a64 + b64),
        ("add_broadcast", lambda: activations.add_broadcast(rt, backend.asarray(a), backend.asarray(v)),
         a64 + v64[:, :, None, None]),
        ("scale_shift", lambda: activations.mul_scalar(rt, backend.asarray(a), s), s * a64),
    ]
    for kernel, run, expected in cases:
        with backend.measure() as counted:
            y = run()
        assert counted.launches == 1 and counted.kernels == [kernel] and counted.temp_bytes == 0
        assert_matches(y.get(), expected, dtype, name=kernel)


def test_elementwise_shape_errors_name_the_argument(backend):
    rt = backend.rt
    x = backend.asarray(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"b: expected the shape of a \(2, 3, 4, 4\), got \(2, 3, 4\)"):
        activations.add(rt, x, backend.asarray(np.ones((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match=r"v: expected shape \(2, 3\)"):
        activations.add_broadcast(rt, x, backend.asarray(np.ones((3, 2), np.float32)))
    with pytest.raises(TypeError, match="dtypes differ"):
        activations.add(rt, x, backend.asarray(np.ones((2, 3, 4, 4), np.float16)))

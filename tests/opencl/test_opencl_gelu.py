"""OpenCL GELU and GEGLU: the fused kernels are one launch with no temporaries; the unfused graphs
are the op-by-op graphs of an unfused framework, one kernel per node and every intermediate a fresh
tensor of the gated tensor's size (see backends/opencl/gelu.py), counted by ``backend.measure()``
for drawn shapes. Accuracy on every backend: tests/test_gelu.py.
"""

import math

import numpy as np
import pytest
from hypothesis import strategies as st

from ..helpers import given_for, random_array, seeds

pytestmark = pytest.mark.backends("opencl")

#: launches and temporaries (each of the gated tensor's size) of the unfused graphs
UNFUSED_GELU = {False: 4, True: 7}        # erf form: 3 temporaries; tanh form: 6
UNFUSED_GELU_TEMPS = {False: 3, True: 6}


def test_gelu_launches_and_temporaries(backend, dtype):
    @given_for(backend, seed=seeds, shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
               approximate=st.booleans())
    def check(seed, shape, approximate):
        x = random_array(seed, shape).astype(dtype)
        with backend.measure() as counted:
            backend.gelu(backend.asarray(x), approximate=approximate, fused=True)
        assert counted.launches == 1 and counted.kernels == ["gelu"] and counted.temp_bytes == 0
        with backend.measure() as counted:
            backend.gelu(backend.asarray(x), approximate=approximate, fused=False)
        assert counted.launches == UNFUSED_GELU[approximate]
        assert counted.temp_buffers == [(x.shape, x.dtype)] * UNFUSED_GELU_TEMPS[approximate]
        assert counted.temp_bytes == UNFUSED_GELU_TEMPS[approximate] * x.nbytes

    check()


def test_geglu_launches_and_temporaries(backend, dtype):
    @given_for(backend, seed=seeds, lead=st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple),
               features=st.integers(1, 70), approximate=st.booleans())
    def check(seed, lead, features, approximate):
        x = random_array(seed, lead + (2 * features,)).astype(dtype)
        out_bytes = math.prod(lead + (features,)) * x.itemsize
        with backend.measure() as counted:
            backend.geglu(backend.asarray(x), approximate=approximate, fused=True)
        assert counted.launches == 1 and counted.kernels == ["geglu"] and counted.temp_bytes == 0
        with backend.measure() as counted:
            backend.geglu(backend.asarray(x), approximate=approximate, fused=False)
        # split (a, b temporaries) + unfused gelu of b (its intermediates + its output) + a * gelu(b)
        assert counted.kernels[0] == "split_halves" and counted.kernels[-1] == "mul"
        assert counted.launches == 2 + UNFUSED_GELU[approximate]
        assert counted.temp_bytes == (3 + UNFUSED_GELU_TEMPS[approximate]) * out_bytes

    check()


def test_unfused_gelu_is_the_op_by_op_graph(backend):
    x = backend.asarray(random_array(0, (5, 7)).astype(np.float32))
    with backend.measure() as exact:
        backend.gelu(x, fused=False)
    assert exact.kernels == ["scale_shift", "erf_map", "scale_shift", "mul"]
    with backend.measure() as tanh:
        backend.gelu(x, approximate=True, fused=False)
    assert tanh.kernels == ["mul", "mul", "add", "scale_shift", "tanh_map", "scale_shift", "mul"]


@pytest.mark.parametrize("approximate", [False, True])
def test_fused_kernels_vector_and_scalar_paths(backend, dtype, approximate):
    # vectors of 4 where the length (GEGLU: F) is a multiple of 4, else single elements; lengths
    # that end inside a work-group's block of 256 * PER_ITEM vectors, and one of exactly two blocks
    from backends.opencl import gelu as opencl_gelu
    from reference import ops

    from ..helpers import assert_matches, rounded

    block = opencl_gelu.FUSED_WG * opencl_gelu.PER_ITEM[np.dtype(dtype)]
    for n in (4, 4 * block * 2, 4 * block + 12, 4 * block + 13, 1001):
        x, x64 = rounded(random_array(n, (n,), scale=3.0), dtype)
        y = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=approximate, fused=True))
        assert_matches(y, ops.gelu(x64, approximate=approximate), dtype, name=f"gelu n={n}")
    for rows, features in ((3, 4), (5, 2 * block + 8), (2, 2 * block + 3), (7, 1)):
        x, x64 = rounded(random_array(rows, (rows, 2 * features), scale=3.0), dtype)
        y = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=True))
        assert_matches(y, ops.geglu(x64, approximate=approximate), dtype, name=f"geglu {rows}x{features}")


def test_fused_gelu_erfc_is_within_a_few_ulps_of_the_exact_function_of_its_argument(backend):
    # The fused kernels' own erfc (Numerical Recipes' Chebyshev fit, gelu.cl) against float64 erfc of
    # the same float32 argument z = -x * float32(1/sqrt 2): what is left is the fit and its float32
    # evaluation, within 8 ulps (2^-23 relative each) wherever the result is a normal float32.
    # tests/test_gelu.py bounds the whole function, including the argument's own rounding.
    from scipy.special import erfc

    x = np.linspace(-12, 9, 200_001).astype(np.float32)
    z = (-x * np.float32(1 / math.sqrt(2))).astype(np.float64)
    expected = 0.5 * x.astype(np.float64) * erfc(z)
    y = backend.to_numpy(backend.gelu(backend.asarray(x), fused=True)).astype(np.float64)
    normal = np.abs(expected) > np.finfo(np.float32).tiny
    rel = np.abs(y[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() < 8 * 2.0**-23, f"{rel.max() / 2.0**-23:.1f} ulps at x = {x[normal][rel.argmax()]}"

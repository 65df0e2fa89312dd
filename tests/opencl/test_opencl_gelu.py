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

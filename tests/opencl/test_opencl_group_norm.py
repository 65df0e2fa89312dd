"""OpenCL GroupNorm and LayerNorm: what the paper's fusion claim means in launches and bytes.

The fused GroupNorm is ONE launch (``group_norm_fused``) with no temporary buffer, SiLU included;
the unfused baseline is ``group_mean``, ``group_var``, ``group_norm_apply`` (+ ``silu``) with the
(N, G) float32 mean and the (N, G, 2) float32 mean correction and variance as temporaries;
LayerNorm is one ``layer_norm`` launch. Counted by ``backend.measure()`` for fixed and for drawn
shapes. Accuracy on every backend: tests/test_group_norm.py.
"""

import numpy as np
import pytest
from hypothesis import strategies as st

from ..helpers import given_for, random_array, seeds

pytestmark = pytest.mark.backends("opencl")


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
        # the (N, G) float32 mean m0 and the (N, G, 2) float32 (mean correction, variance)
        assert unfused.temp_bytes == 3 * n * groups * 4
        assert unfused.temp_buffers == [((n, groups), np.float32), ((n, groups, 2), np.float32)]


def test_group_norm_launches_for_any_shape(backend, dtype):
    @given_for(backend, seed=seeds, batch=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
               spatial=st.lists(st.integers(1, 7), min_size=0, max_size=3).map(tuple), with_affine=st.booleans(),
               silu=st.booleans())
    def check(seed, batch, groups, per, spatial, with_affine, silu):
        c = groups * per
        x = backend.asarray(random_array(seed, (batch, c) + spatial).astype(dtype))
        w = backend.asarray(np.ones(c, dtype)) if with_affine else None
        with backend.measure() as fused:
            backend.group_norm(x, groups, w, w, fused=True, silu=silu)
        assert fused.launches == 1 and fused.temp_bytes == 0
        with backend.measure() as unfused:
            backend.group_norm(x, groups, w, w, fused=False, silu=silu)
        assert unfused.launches == 3 + silu and unfused.temp_bytes > 0

    check()


def test_layer_norm_is_one_launch(backend, dtype):
    @given_for(backend, seed=seeds, lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
               cols=st.integers(1, 300), with_affine=st.booleans())
    def check(seed, lead, cols, with_affine):
        x = backend.asarray(random_array(seed, lead + (cols,)).astype(dtype))
        w = backend.asarray(np.ones(cols, dtype)) if with_affine else None
        with backend.measure() as counted:
            backend.layer_norm(x, w, w)
        assert counted.launches == 1 and counted.kernels == ["layer_norm"] and counted.temp_bytes == 0

    check()

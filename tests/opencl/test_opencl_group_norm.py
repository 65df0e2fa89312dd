"""OpenCL GroupNorm and LayerNorm: what the paper's fusion claim means in launches and bytes, and
the two fused forms' own machinery (parts, tickets, counters).

The fused GroupNorm cuts each (sample, group) slab into ``parts`` (``group_norm.fused_plan``) and
runs in one of two forms: ``one_launch``, ONE launch (``group_norm_fused``), and ``split``, two
(``group_norm_stats``, ``group_norm_normalize``); both with the (N, G, parts, 2) float32 partial
statistics as their only temporary, SiLU included. ``fused=True`` runs ``group_norm.FUSED_FORM``.
The unfused baseline is ``group_mean``, ``group_var``, ``group_norm_apply`` (+ ``silu``) with the
(N, G) float32 mean and the (N, G, 2) float32 mean correction and variance as temporaries;
LayerNorm is one ``layer_norm`` launch. Counted by ``backend.measure()`` for fixed and for drawn
shapes. Both forms against the float64 reference with forced part counts (on PoCL's two CPU
threads ``fused_plan`` alone would always pick one part), vectors of 4 and of 1, fp16 storage and
a large mean. Accuracy of the default path on every backend: tests/test_group_norm.py.
"""

import numpy as np
import pytest
from hypothesis import strategies as st

from backends.opencl import group_norm as opencl_group_norm
from reference.numerics import relative_frobenius_error

from ..helpers import (
    affine_params, assert_matches, given_for, group_norm_reference, group_norm_tolerance, random_array,
    rounded, seeds, to_device,
)

pytestmark = pytest.mark.backends("opencl")

FORM_KERNELS = {"one_launch": ["group_norm_fused"], "split": ["group_norm_stats", "group_norm_normalize"]}


def partial_bytes(backend, shape, groups, parts=None):
    """Bytes of the (N, G, parts, 2) float32 partials of a fused call."""
    plan = opencl_group_norm.device_plan(backend.rt, shape, groups, parts)
    return shape[0] * groups * plan.parts * 2 * 4


def test_group_norm_launch_and_temporary_counts(backend, dtype):
    n, c, groups = 2, 8, 4
    x = backend.asarray(random_array(1, (n, c, 5, 3)).astype(dtype))
    for silu in (False, True):
        with backend.measure() as fused:
            backend.group_norm(x, groups, fused=True, silu=silu)
        assert fused.kernels == FORM_KERNELS[opencl_group_norm.FUSED_FORM]
        assert fused.temp_buffers == [((n, groups, 1, 2), np.float32)] and fused.temp_bytes == n * groups * 8

        for form, kernels in FORM_KERNELS.items():
            with backend.measure() as counted:
                opencl_group_norm.group_norm_fused(backend.rt, x, groups, None, None, 1e-5, silu, form=form, parts=3)
            assert counted.kernels == kernels and counted.launches == len(kernels)
            assert counted.temp_buffers == [((n, groups, 3, 2), np.float32)]

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
        assert fused.launches == len(FORM_KERNELS[opencl_group_norm.FUSED_FORM])
        assert fused.temp_bytes == partial_bytes(backend, x.shape, groups)
        with backend.measure() as unfused:
            backend.group_norm(x, groups, w, w, fused=False, silu=silu)
        assert unfused.launches == 3 + silu and unfused.temp_bytes > 0

    check()


# ----------------------------------------------------------------------------------- the fused forms


def test_fused_plan_covers_each_slab_with_nonempty_parts(backend):
    rt = backend.rt
    for shape, groups, parts in [((2, 8, 5, 3), 4, None), ((1, 64, 32, 32), 32, 5), ((1, 4, 64, 64), 2, 300),
                                 ((2, 6, 17, 19), 2, 1000), ((3, 4, 7), 2, 7), ((1, 128, 512, 512), 32, None)]:
        plan = opencl_group_norm.device_plan(rt, shape, groups, parts)
        spatial = int(np.prod(shape[2:]))
        assert plan.vec == (4 if spatial % 4 == 0 else 1)
        assert plan.n_vec * plan.vec == shape[1] // groups * spatial
        assert 1 <= plan.parts <= min(256, plan.n_vec)
        assert (plan.parts - 1) * plan.chunk < plan.n_vec <= plan.parts * plan.chunk  # the last part is not empty
    assert opencl_group_norm.device_plan(rt, (1, 4, 64, 64), 2, 3).parts == 3
    # on an H200 (132 SMs): the decoder's (1, 128, 512, 512) gets 33 parts of 7944 vectors, 1056 work-groups
    h200 = opencl_group_norm.fused_plan((1, 128, 512, 512), 32, 132)
    assert (h200.vec, h200.parts, h200.chunk) == (4, 33, 7944)
    assert opencl_group_norm.fused_plan((2, 1280, 8, 8), 32, 132).parts == 1  # 640 vectors: one part
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="parts"):
            opencl_group_norm.device_plan(rt, (1, 4, 8, 8), 2, bad)
    x = backend.asarray(random_array(0, (1, 4, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="form"):
        opencl_group_norm.group_norm_fused(rt, x, 2, None, None, 1e-5, False, form="fast")


@pytest.mark.parametrize("form", opencl_group_norm.FUSED_FORMS)
def test_fused_forms_match_reference_with_several_parts(backend, dtype, form):
    # spatial sizes with and without a factor 4 (vectors of 4 or of 1), parts up to past the vectors
    @given_for(backend, n=10, seed=seeds, batch=st.integers(1, 2), groups=st.integers(1, 3), per=st.integers(1, 3),
               spatial=st.sampled_from([(5, 3), (8, 8), (17, 19), (4, 60), (123,), (2, 2, 9)]),
               parts=st.integers(1, 40), with_affine=st.booleans(), silu=st.booleans())
    def check(seed, batch, groups, per, spatial, parts, with_affine, silu):
        c = groups * per
        x, x64 = rounded(random_array(seed, (batch, c) + spatial, scale=2.0, offset=1.0), dtype)
        (w, w64), (b, b64) = affine_params(seed, c, dtype, with_affine, with_affine)
        y = opencl_group_norm.group_norm_fused(backend.rt, backend.asarray(x), groups, to_device(backend, w),
                                               to_device(backend, b), 1e-5, silu, form=form, parts=parts)
        assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, w64, b64, 1e-5, silu), dtype,
                       name=f"{form} parts={parts}", rel_tol=group_norm_tolerance(x64, groups, 1e-5, dtype))

    check()


@pytest.mark.parametrize("form", opencl_group_norm.FUSED_FORMS)
def test_fused_forms_survive_a_large_mean_across_parts(backend, form):
    # mean 1e3, std 0.1: the parts' moments of x - x0 merge without cancelling (tests/test_group_norm.py's bound)
    x = random_array(0, (1, 4, 50, 100), scale=0.1, offset=1e3).astype(np.float32)
    exact = group_norm_reference(x.astype(np.float64), 2, None, None, 1e-5, False)
    for parts in (1, 7, 64):
        y = opencl_group_norm.group_norm_fused(backend.rt, backend.asarray(x), 2, None, None, 1e-5, False,
                                               form=form, parts=parts)
        assert relative_frobenius_error(backend.to_numpy(y), exact) < 1e-5, parts


def test_one_launch_leaves_its_counters_zero_for_the_next_call(backend):
    # the kernel resets its tickets and per-slab counts itself: calls of different shapes in a row
    rt = backend.rt
    for i, (shape, groups, parts) in enumerate([((2, 8, 8, 8), 4, 3), ((1, 6, 17, 19), 3, 5), ((3, 4, 7), 2, 1),
                                                ((2, 8, 8, 8), 4, 16)]):
        x, x64 = rounded(random_array(i, shape, scale=3.0, offset=-2.0), np.float32)
        y = opencl_group_norm.group_norm_fused(rt, backend.asarray(x), groups, None, None, 1e-5, True,
                                               form="one_launch", parts=parts)
        assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, None, None, 1e-5, True),
                       np.float32, name=f"call {i} {shape}")
        assert not rt.counters("group_norm_fused", 2 + shape[0] * groups).get().any()


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

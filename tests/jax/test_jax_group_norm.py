"""JAX GroupNorm: the fused Pallas kernel's two forms. "one_launch" is ONE pallas_call (the
paper's "one GPU command"), "split" two (statistics, normalize); neither has math outside its
kernels; both jit through the backend; the split form is exact for every number of parts
(including parts with no valid position) at a large mean; the parts rule and the block loop
cover every slab length; bad form arguments are refused. The "channels_last" form (three calls)
is exact with either statistics kernel (``stats``: "tiles" or "lanes").

The jaxpr check counts the pallas_call primitives of the jitted op and allows only layout
primitives (views, the ragged pad and crop) outside them. Accuracy of the default form on every
backend: tests/test_group_norm.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import Optimizations, get_backend
from backends.jax import group_norm, pallas_util
from backends.jax.backend import NETWORK_GROUP_NORM_FORM
from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import (assert_one_pallas_call, pallas_kernel_names, primitives_outside_kernels, random_array,
                       triton_kernels_lowered_for_cuda)

pytestmark = pytest.mark.backends("jax")

LAUNCHES = {"one_launch": 1, "split": 2, "channels_last": 3}


@pytest.mark.parametrize("form", group_norm.FORMS)
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),   # slab 969: padded to 1024 and masked
                                           ((1, 8, 4096), 2)])    # slab 16384: four blocks (split: 4 parts)
def test_group_norm_forms_count_their_pallas_calls(backend, form, shape, groups, silu):
    x = jnp.ones(shape, jnp.float32)
    w = jnp.ones(shape[1], jnp.float32)
    calls = LAUNCHES[form]
    # channels_last views x as (N, HW, C): a transpose in the jaxpr, which XLA folds where x is
    # stored NHWC (in the networks on a GPU), and nothing else
    allowed = {"transpose"} if form == "channels_last" else set()
    assert_one_pallas_call(lambda x, w: backend.group_norm_form(x, groups, w, w, silu=silu, form=form), x, w,
                           calls=calls, also_allowed=allowed)
    assert_one_pallas_call(lambda x: backend.group_norm_form(x, groups, silu=silu, form=form), x, calls=calls,
                           also_allowed=allowed)


@pytest.mark.parametrize("size", [group_norm.ONE_LAUNCH_MAX_ELEMENTS, 2 * group_norm.ONE_LAUNCH_MAX_ELEMENTS])
def test_fused_group_norm_takes_the_form_of_its_size(backend, size):
    form = group_norm.fused_form(size)
    assert form == ("one_launch" if size <= group_norm.ONE_LAUNCH_MAX_ELEMENTS else "split")
    x = jnp.ones((1, 8, size // 8), jnp.float32)
    assert_one_pallas_call(lambda x: backend.group_norm(x, 2, fused=True), x, calls=LAUNCHES[form])


def test_group_norm_jits_through_the_backend(backend):
    x = backend.asarray(random_array(3, (2, 6, 5, 7)).astype(np.float32))
    w = backend.asarray(random_array(4, (6,)).astype(np.float32))
    eager = backend.to_numpy(backend.group_norm(x, 3, w, w, fused=True, silu=True))
    jitted = jax.jit(lambda x, w: backend.group_norm(x, 3, w, w, fused=True, silu=True))
    np.testing.assert_array_equal(backend.to_numpy(jitted(x, w)), eager)


@pytest.mark.parametrize("interpret, in_network, form, calls", [
    (False, True, None, LAUNCHES[NETWORK_GROUP_NORM_FORM]),  # a network program on a GPU: NHWC activations
    (False, False, None, None),                              # an op on x stored NCHW: by size
    (True, True, None, None),                                # the interpreter: by size
    (False, True, "split", LAUNCHES["split"])])              # a form named at construction wins
def test_network_programs_on_a_gpu_take_the_network_form(interpret, in_network, form, calls):
    # fused_group_norm_form=None: compile_network's programs trace the fused GroupNorm in
    # NETWORK_GROUP_NORM_FORM where the kernels compile; the trace only (the CPU cannot compile them)
    x = jnp.asarray(random_array(5, (2, 8, 6, 6)).astype(np.float32))
    calls = LAUNCHES[group_norm.fused_form(x.size)] if calls is None else calls
    assert LAUNCHES[group_norm.fused_form(x.size)] != LAUNCHES[NETWORK_GROUP_NORM_FORM]  # the cases differ
    backend = get_backend("jax", optimizations=Optimizations.none().with_(fused_group_norm=True),
                          parameter_layouts="default", fused_group_norm_form=form)
    backend.interpret = interpret

    def network(params, x):
        return backend.group_norm(x, 4, params["weight"], params["bias"], silu=True)

    program = backend.compile_network(network) if in_network else jax.jit(network)
    params = {"weight": x[0, :, 0, 0], "bias": x[1, :, 0, 0]}
    names = primitives_outside_kernels(jax.make_jaxpr(program)(params, x).jaxpr)
    assert names.count("pallas_call") == calls, names


@pytest.mark.parametrize("stats", group_norm.CL_STATS)
def test_backend_runs_its_channels_last_statistics_kernel(stats):
    # JaxBackend(group_norm_stats=...) picks the channels_last form's statistics kernel, named in
    # the jaxpr and counted in choices; the other forms are not counted
    backend = get_backend("jax", fused_group_norm_form="channels_last", group_norm_stats=stats)
    x = backend.asarray(random_array(6, (2, 8, 6, 6)).astype(np.float32))
    kernel = "group_norm_cl_stats_lanes" if stats == "lanes" else "group_norm_cl_stats"
    assert kernel in pallas_kernel_names(jax.make_jaxpr(lambda x: backend.group_norm(x, 4, fused=True))(x).jaxpr)
    assert backend.choices[("group_norm", "channels_last statistics", stats)] == 1
    np.testing.assert_allclose(backend.to_numpy(backend.group_norm(x, 4, fused=True)),
                               ops.group_norm(np.asarray(x, np.float64), 4), rtol=1e-5, atol=1e-5)
    split = get_backend("jax", fused_group_norm_form="split", group_norm_stats=stats)
    split.group_norm(x, 4, fused=True)
    assert not any(key[1] == "channels_last statistics" for key in split.choices)


def test_group_norm_stats_option_is_checked():
    with pytest.raises(ValueError, match="group_norm_stats: expected one of"):
        get_backend("jax", group_norm_stats="rows")


@pytest.mark.parametrize("parts", [1, 2, 8, 16])
@pytest.mark.parametrize("shape, groups", [((2, 4, 10), 2),       # slab 20 in 8 parts of 4: the last 3 empty
                                           ((1, 6, 21, 23), 3),   # slab 966: ragged parts
                                           ((1, 4, 64, 64), 2)])  # slab 8192: parts of whole blocks
def test_split_form_is_exact_for_any_parts_at_a_large_mean(backend, shape, groups, parts):
    # mean 1e3, std 0.1: the parts' moments are merged exactly (Chan), relative to the slab's
    # first element, so the error stays at float32 rounding (tests/test_group_norm.py's bound)
    x = random_array(parts, shape, scale=0.1, offset=1e3).astype(np.float32)
    c = shape[1]
    w = (1 + 0.1 * random_array(1, (c,))).astype(np.float32)
    b = (0.1 * random_array(2, (c,))).astype(np.float32)
    exact = ops.silu(ops.group_norm(x.astype(np.float64), groups, w.astype(np.float64), b.astype(np.float64)))
    y = group_norm.group_norm_fused(jnp.asarray(x), groups, jnp.asarray(w), jnp.asarray(b), 1e-5, True,
                                    backend.interpret, form="split", parts=parts)
    error = relative_frobenius_error(np.asarray(y), exact)
    assert error < 1e-5, f"parts={parts}: {error:.2e}"


@pytest.mark.parametrize("parts", [1, 4])
def test_split_form_merges_blocks_with_different_means(backend, parts):
    # max_block 64: each part is walked in many blocks whose means differ (a ramp along the
    # slab plus noise), so the per-block Chan update's delta^2 term carries most of the variance
    shape, groups = (1, 4, 32, 64), 2
    ramp = np.linspace(-3.0, 3.0, 2 * 32 * 64).reshape(1, 1, 2, 32, 64)
    x = (ramp + 0.1 * random_array(5, (1, 2, 2, 32, 64)) + 50.0).reshape(shape).astype(np.float32)
    exact = ops.group_norm(x.astype(np.float64), groups)
    y = group_norm.group_norm_fused(jnp.asarray(x), groups, None, None, 1e-5, False, backend.interpret,
                                    form="split", parts=parts, max_block=64)
    error = relative_frobenius_error(np.asarray(y), exact)
    assert error < 1e-5, f"parts={parts}: {error:.2e}"


@pytest.mark.parametrize("storage", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("shape, groups, parts, max_block", [
    ((2, 6, 5, 7), 3, None, 4096),    # C = 6: one column block of 8, masked
    ((1, 320, 4, 4), 32, None, 4096),  # SD's C = 320: five column blocks of 64, groups of 10 straddle them
    ((2, 96, 5, 5), 3, 2, 64),        # three column blocks of 32, two tiles of 2 rows per part, ragged rows
    ((1, 40, 6, 6), 4, 8, 64),        # parts of 8 rows, the last ones empty
    ((1, 60, 3, 5), 3, None, 4096),    # groups of 20 columns in windows of 32 (the last one masked past C)
    ((1, 4, 64, 64), 2, 16, 64),      # many tiles per part
])
def test_channels_last_form_is_exact_at_a_large_mean(backend, storage, shape, groups, parts, max_block,
                                                    stats="tiles"):
    # mean 1e3, std 0.1: per column moments relative to the group's first element (each tile's,
    # or each lane's by Welford), merged across parts and then across the group's columns
    # (Chan), so the error stays at float32 rounding (fp16: the output's rounding); the affine
    # and SiLU included
    x = random_array(groups, shape, scale=0.1, offset=1e3).astype(storage)
    c = shape[1]
    w = (1 + 0.1 * random_array(1, (c,))).astype(storage)
    b = (0.1 * random_array(2, (c,))).astype(storage)
    exact = ops.silu(ops.group_norm(x.astype(np.float64), groups, w.astype(np.float64), b.astype(np.float64)))
    y = group_norm.group_norm_fused(jnp.asarray(x), groups, jnp.asarray(w), jnp.asarray(b), 1e-5, True,
                                    backend.interpret, form="channels_last", parts=parts, max_block=max_block,
                                    stats=stats)
    assert y.shape == x.shape and y.dtype == x.dtype
    error = relative_frobenius_error(np.asarray(y).astype(np.float64), exact)
    assert error < (1e-5 if storage == np.float32 else 1e-3), f"{error:.2e}"


@pytest.mark.parametrize("storage, shape, groups, parts, max_block", [
    (np.float32, (1, 320, 4, 4), 32, None, 4096),  # groups straddling column blocks
    (np.float32, (2, 96, 5, 5), 3, 2, 64),         # ragged rows: lanes that see one value fewer
    (np.float16, (2, 96, 5, 5), 3, 2, 64),
    (np.float32, (1, 40, 6, 6), 4, 8, 64),         # empty parts: no lane sees a value
    (np.float32, (1, 4, 64, 64), 2, 16, 64),       # many steps per lane
])
def test_channels_last_lanes_statistics_are_exact_at_a_large_mean(backend, storage, shape, groups, parts, max_block):
    # the "lanes" statistics kernel (a running mean and M2 per lane, merged once) on the cases
    # that give its lanes different counts; the same bounds as the "tiles" kernel's test above
    test_channels_last_form_is_exact_at_a_large_mean(backend, storage, shape, groups, parts, max_block, stats="lanes")


@pytest.mark.parametrize("stats", group_norm.CL_STATS)
def test_channels_last_form_merges_columns_with_different_means(backend, stats):
    # each column of a group has its own mean (spread 3, std 0.1 within): the merge's
    # HW (o_c - offset_g)^2 term carries most of the group's variance
    shape, groups = (2, 24, 7, 9), 3
    x = (random_array(3, shape, scale=0.1) + np.linspace(-3.0, 3.0, 24)[None, :, None, None] + 50.0).astype(np.float32)
    y = group_norm.group_norm_fused(jnp.asarray(x), groups, None, None, 1e-5, False, backend.interpret,
                                    form="channels_last", parts=2, max_block=64, stats=stats)
    error = relative_frobenius_error(np.asarray(y), ops.group_norm(x.astype(np.float64), groups))
    assert error < 1e-5, f"{error:.2e}"


@pytest.mark.parametrize("shape, column_block, parts", [((2, 320, 64, 64), 64, 64), ((2, 1280, 16, 16), 256, 16),
                                                        ((1, 128, 512, 512), 128, 1024), ((1, 6, 5, 7), 8, 1)])
def test_channels_last_geometry(shape, column_block, parts):
    # SD's shapes: column blocks that divide C, enough programs, parts of whole tiles
    n, c, h, w = shape
    block, tile_rows, got_parts, part_rows = group_norm._cl_geometry(n, h * w, c, None, group_norm.NORM_BLOCK)
    assert (block, got_parts) == (column_block, parts)
    assert tile_rows * block <= group_norm.NORM_BLOCK and part_rows % tile_rows == 0
    assert h * w <= got_parts * part_rows < h * w + got_parts * tile_rows


@given(slabs=st.integers(1, 512), length=st.integers(1, 2_000_000))
def test_split_parts_fill_the_gpu_without_tiny_parts(slabs, length):
    parts = group_norm.split_parts(slabs, length)
    assert parts >= 1 and parts & (parts - 1) == 0
    assert parts == 1 or length // parts >= group_norm.MIN_PART  # no part shorter than MIN_PART
    # enough programs, unless the parts would get too short: doubling breaks one of the two
    assert slabs * parts >= group_norm.TARGET_PROGRAMS or length // (2 * parts) < group_norm.MIN_PART
    block, part_length = group_norm._part_geometry(length, parts)
    assert part_length % block == 0 and length <= parts * part_length < length + parts * block


@pytest.mark.parametrize("kwargs, message", [({"form": "two_launch"}, "form: expected None or one of"),
                                             ({"form": "split", "parts": 3}, "parts: expected None, or a power of two"),
                                             ({"form": "one_launch", "parts": 2}, "parts: expected None"),
                                             ({"form": "channels_last", "parts": 6}, "parts: expected None"),
                                             ({"max_block": 1000}, "max_block: expected a power of two"),
                                             ({"form": "channels_last", "stats": "rows"}, "stats: expected one of"),
                                             ({"form": "split", "stats": "lanes"}, "stats: expected one of")])
def test_group_norm_fused_refuses_bad_form_arguments(backend, kwargs, message):
    x = jnp.ones((1, 4, 8), jnp.float32)
    with pytest.raises(ValueError, match=message):
        group_norm.group_norm_fused(x, 2, None, None, 1e-5, False, backend.interpret, **kwargs)


@given(length=st.integers(1, 300_000), max_block=st.sampled_from([1024, 4096]))
def test_choose_block_covers_the_length_with_a_power_of_two(length, max_block):
    block, padded = pallas_util.choose_block(length, max_block)
    assert block & (block - 1) == 0 and block <= max_block and padded % block == 0
    assert length <= padded < length + block
    if length % max_block == 0:
        assert (block, padded) == (max_block, length)  # SD's sizes: the largest block, no padding


@pytest.mark.parametrize("form", group_norm.FORMS)
def test_forms_lower_with_the_triton_backend(form):
    """Each form's kernels pass the Pallas Triton lowering for "cuda" on the CPU
    (helpers.triton_kernels_lowered_for_cuda: masked loads and stores, gathers, block shapes).
    SD's C = 320 in fp16, with weight and bias."""
    pytest.importorskip("jax._src.lib.triton")
    x, w = jnp.ones((2, 320, 8, 8), jnp.float16), jnp.ones((320,), jnp.float16)
    fused = lambda x, w: group_norm.group_norm_fused(x, 32, w, w, 1e-5, True, False, form=form)
    assert triton_kernels_lowered_for_cuda(fused, x, w) == LAUNCHES[form]
    if form == "channels_last":
        lanes = lambda x, w: group_norm.group_norm_fused(x, 32, w, w, 1e-5, True, False, form=form, stats="lanes")
        assert triton_kernels_lowered_for_cuda(lanes, x, w) == LAUNCHES[form]


@pytest.mark.parametrize("view", group_norm.VIEWS)
def test_unfused_views_match_the_reference(view):
    # the jnp baseline in both views of x (group_norm.VIEWS), at a large mean, a ragged spatial
    # shape and with the affine and SiLU: the same float64 reference
    shape, groups = (2, 6, 5, 7), 3
    x = random_array(7, shape, scale=0.1, offset=1e3).astype(np.float32)
    w = (1 + 0.1 * random_array(8, (6,))).astype(np.float32)
    b = (0.1 * random_array(9, (6,))).astype(np.float32)
    exact = ops.silu(ops.group_norm(x.astype(np.float64), groups, w.astype(np.float64), b.astype(np.float64)))
    y = group_norm.group_norm(jnp.asarray(x), groups, jnp.asarray(w), jnp.asarray(b), 1e-5, True, view=view)
    assert relative_frobenius_error(np.asarray(y), exact) < 1e-5
    with pytest.raises(ValueError, match="view: expected one of"):
        group_norm.group_norm(jnp.asarray(x), groups, view="nhwc")

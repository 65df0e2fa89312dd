"""Pallas fused GroupNorm (+SiLU), GELU and GEGLU (backends/jax/pallas_norm.py) against the float64
reference on the same rounded inputs, through the ``backend`` fixture.

Shapes are drawn so that slab and row lengths are ragged (not multiples of the power-of-two block,
so the wrapper pads and the kernel masks), include one-element slabs, and (in dedicated tests)
span several blocks. Each function must be ONE pallas_call with no math outside it: the jaxpr
tests count. On a CPU the kernels run in the Pallas interpreter, which compiles per shape, so the
hypothesis tests draw few examples under the ``ci`` profile.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special

from backends.jax import ops as jax_ops
from backends.jax import pallas_norm
from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import (
    THOROUGH, affine_params, assert_matches, check_fused_gelu_accuracy, examples,
    group_norm_reference, group_norm_tolerance, random_array, rounded, scales, seeds, to_device,
)


# ----------------------------------------------------------------------------------- one pallas_call


#: primitives allowed outside the kernel: layout only (views, the ragged pad and crop, nested jit)
LAYOUT = {"jit", "pjit", "reshape", "pad", "slice", "squeeze", "broadcast_in_dim", "convert_element_type", "copy"}


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns"):
                yield inner


def primitives_outside_kernels(jaxpr) -> list[str]:
    """Names of every primitive of ``jaxpr`` and its nested jaxprs (jit, ...), not looking inside
    pallas_call kernels."""
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        if eqn.primitive.name != "pallas_call":
            for inner in _subjaxprs(eqn):
                names += primitives_outside_kernels(inner)
    return names


def assert_one_kernel(fn, *args):
    names = primitives_outside_kernels(jax.make_jaxpr(jax.jit(fn))(*args).jaxpr)
    assert names.count("pallas_call") == 1, names
    outside = [n for n in names if n != "pallas_call"]
    assert not [n for n in outside if n.startswith("reduce") or n in ("argmax", "cumsum", "dot_general")], names
    assert set(outside) <= LAYOUT, f"math outside the kernel: {sorted(set(outside) - LAYOUT)}"


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),   # slab 969: padded to 1024 and masked
                                           ((1, 8, 4096), 2)])    # slab 16384: four blocks, no pad
def test_group_norm_is_one_pallas_call(backend, shape, groups, silu):
    x = jnp.ones(shape, jnp.float32)
    w = jnp.ones(shape[1], jnp.float32)
    assert_one_kernel(lambda x, w: backend.group_norm(x, groups, w, w, fused=True, silu=silu), x, w)
    assert_one_kernel(lambda x: backend.group_norm(x, groups, fused=True, silu=silu), x)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_and_geglu_are_one_pallas_call(backend, approximate):
    for shape in [(3, 7, 22), (2, 4096)]:  # ragged (padded) and block-aligned
        x = jnp.ones(shape, jnp.bfloat16)
        assert_one_kernel(lambda x: backend.gelu(x, approximate=approximate, fused=True), x)
        assert_one_kernel(lambda x: backend.geglu(x, approximate=approximate, fused=True), x)


def test_the_jaxpr_check_can_fail(backend):
    # the check itself sees an unfused graph: a jnp mean outside any kernel
    with pytest.raises(AssertionError):
        assert_one_kernel(lambda x: backend.gelu(x, fused=True) - jnp.mean(x), jnp.ones((4, 4)))


# ----------------------------------------------------------------------------------- GroupNorm


@examples(5)
@given(seed=seeds, n=st.integers(1, 2), groups=st.integers(1, 4), per=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple), scale=scales,
       offset=st.sampled_from([0.0, 3.0]), with_weight=st.booleans(), with_bias=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-2]), silu=st.booleans())
def test_group_norm_matches_reference(backend, dtype, seed, n, groups, per, spatial, scale, offset,
                                      with_weight, with_bias, eps, silu):
    c = groups * per
    x, x64 = rounded(random_array(seed, (n, c) + spatial, scale=scale, offset=offset * scale), dtype)
    (w, w64), (b, b64) = affine_params(seed, c, dtype, with_weight, with_bias)
    y = backend.group_norm(backend.asarray(x), groups, to_device(backend, w), to_device(backend, b), eps,
                           fused=True, silu=silu)
    assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, w64, b64, eps, silu), dtype,
                   name=f"group_norm silu={silu}", rel_tol=group_norm_tolerance(x64, groups, eps, dtype))


@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),     # slab 969: one padded block
                                           ((1, 8, 25, 25), 2),     # slab 2500: five blocks of 512, ragged
                                           ((1, 32, 9, 9, 3), 4),   # 5-D, slab 1944
                                           ((3, 5), 5),             # 2-D: one-element slabs
                                           ((1, 64, 1, 1), 32)])    # ml-drift's 1x1 image case
def test_group_norm_long_and_degenerate_slabs(backend, dtype, shape, groups):
    c = shape[1]
    x, x64 = rounded(random_array(7, shape, scale=2.0, offset=-1.0), dtype)
    (w, w64), (b, b64) = affine_params(7, c, dtype, True, True)
    for silu in (False, True):
        y = backend.group_norm(backend.asarray(x), groups, backend.asarray(w), backend.asarray(b),
                               fused=True, silu=silu)
        assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, w64, b64, 1e-5, silu), dtype,
                       name=f"{shape} silu={silu}")


def test_group_norm_variance_survives_a_large_mean(backend):
    # mean 1e3, std 0.1 in fp32: E[x^2] - E[x]^2 loses every digit, and even a correctly rounded
    # float32 mean is 3e-5 (3e-4 of the std) off; the kernel's two-pass variance around a pivot
    # keeps the error near float32 resolution. Slab 966: one padded block; slab 10000: 10 blocks.
    for shape, groups in [((2, 6, 21, 23), 3), ((1, 4, 50, 100), 2)]:
        x = random_array(0, shape, scale=0.1, offset=1e3).astype(np.float32)
        exact = ops.group_norm(x.astype(np.float64), groups)
        y = backend.to_numpy(backend.group_norm(backend.asarray(x), groups, fused=True))
        error = relative_frobenius_error(y, exact)
        assert error < 1e-3  # the requirement
        assert error < 1e-5, f"{shape}: {error:.2e} (the pivot-shifted mean should keep ~1e-7)"


SD_SHAPES = [((1, 320, 64, 64), 32)]        # SD 1.x UNet, 64x64 latents: slab 40960, 10 blocks
if THOROUGH:
    SD_SHAPES.append(((1, 128, 256, 256), 32))  # the VAE decoder at 256x256: slab 262144, 64 blocks


@pytest.mark.parametrize("shape, groups", SD_SHAPES)
def test_group_norm_sd_sizes_float32(backend, shape, groups):
    c = shape[1]
    x, x64 = rounded(random_array(11, shape, scale=1.5, offset=0.5), np.float32)
    (w, w64), (b, b64) = affine_params(11, c, np.float32, True, True)
    y = backend.group_norm(backend.asarray(x), groups, backend.asarray(w), backend.asarray(b), fused=True,
                           silu=True)
    assert_matches(backend.to_numpy(y), group_norm_reference(x64, groups, w64, b64, 1e-5, True), np.float32,
                   name=f"{shape} silu")


@pytest.mark.skipif(not hasattr(jax_ops, "group_norm"), reason="backends/jax/ops.py has no group_norm yet")
@examples(3)
@given(seed=seeds, groups=st.integers(1, 3), per=st.integers(1, 3), hw=st.integers(1, 60),
       silu=st.booleans(), with_affine=st.booleans())
def test_fused_group_norm_equals_the_jnp_baseline(backend, seed, groups, per, hw, silu, with_affine):
    c = groups * per
    x, x64 = rounded(random_array(seed, (2, c, hw), scale=3.0, offset=1.0), np.float32)
    (w, _), (b, _) = affine_params(seed, c, np.float32, with_affine, with_affine)
    args = (backend.asarray(x), groups, to_device(backend, w), to_device(backend, b))
    fused = backend.to_numpy(backend.group_norm(*args, fused=True, silu=silu))
    baseline = backend.to_numpy(backend.group_norm(*args, fused=False, silu=silu))
    assert_matches(fused, baseline.astype(np.float64), np.float32,
                   name="fused vs jnp baseline", rel_tol=2 * group_norm_tolerance(x64, groups, 1e-5, np.float32))


def test_group_norm_jits_through_the_backend(backend):
    x = backend.asarray(random_array(3, (2, 6, 5, 7)).astype(np.float32))
    w = backend.asarray(random_array(4, (6,)).astype(np.float32))
    eager = backend.to_numpy(backend.group_norm(x, 3, w, w, fused=True, silu=True))
    jitted = jax.jit(lambda x, w: backend.group_norm(x, 3, w, w, fused=True, silu=True))
    np.testing.assert_array_equal(backend.to_numpy(jitted(x, w)), eager)


# ----------------------------------------------------------------------------------- erfc


def test_erfc_matches_scipy_to_float32_resolution():
    # Pallas-Triton has no erf/erfc lowering, so the kernels carry Cephes' erfcf (pallas_norm.erfc);
    # Abramowitz-Stegun 7.1.26 (1.5e-7 absolute on erf, relative garbage in the tail) would fail the
    # relative bound below.
    x = np.concatenate([np.linspace(-10, 10, 400_001), np.nextafter(np.float32([1.0, 2.0]), 0.0),
                        [0.0, 1.0, 2.0, -1.0, -2.0]]).astype(np.float32)
    y = np.asarray(jax.jit(pallas_norm.erfc)(x)).astype(np.float64)
    exact = special.erfc(x.astype(np.float64))
    assert np.max(np.abs(y - exact)) < 2e-7
    # Relative accuracy where erfc is small (the GELU tail), wherever the value is a normal float32.
    normal = exact > np.finfo(np.float32).tiny
    assert np.max(np.abs(y[normal] - exact[normal]) / exact[normal]) < 1e-6
    assert np.all(y[x > 9.5] < 1e-38) and np.all(y[x < -4] == 2.0)


# ----------------------------------------------------------------------------------- GELU, GEGLU


@examples(4)
@given(seed=seeds, shape=st.lists(st.integers(1, 9), min_size=0, max_size=4).map(tuple), scale=scales,
       approximate=st.booleans())
def test_gelu_matches_reference(backend, dtype, seed, shape, scale, approximate):
    x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
    y = backend.gelu(backend.asarray(x), approximate=approximate, fused=True)
    assert_matches(backend.to_numpy(y), ops.gelu(x64, approximate), dtype,
                   name=f"gelu approximate={approximate}")


@examples(4)
@given(seed=seeds, lead=st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple),
       features=st.integers(1, 70), scale=scales, approximate=st.booleans())
def test_geglu_matches_reference(backend, dtype, seed, lead, features, scale, approximate):
    if dtype == np.float16:
        scale = min(scale, 10.0)  # a * gelu(b) grows like scale^2: 1e3 would overflow fp16 (max 65504)
    x, x64 = rounded(random_array(seed, lead + (2 * features,), scale=scale), dtype)
    y = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=True))
    assert y.shape == lead + (features,)
    assert_matches(y, ops.geglu(x64, approximate), dtype, name=f"geglu approximate={approximate}")


@pytest.mark.parametrize("shape", [(2, 2 * 1100), (3, 2 * 1024)])  # F ragged over nine blocks; F one block
def test_geglu_long_rows(backend, shape):
    x, x64 = rounded(random_array(5, shape, scale=2.0), np.float32)
    for approximate in (False, True):
        y = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=True))
        assert_matches(y, ops.geglu(x64, approximate), np.float32,
                       name=f"geglu {shape} approximate={approximate}")


def test_fused_gelu_is_the_exact_erfc_form_to_a_few_ulps(backend):
    check_fused_gelu_accuracy(backend, tail_rel_tol=1e-5)


def test_activations_jit_through_the_backend_and_keep_empty_shapes(backend):
    x = backend.asarray(random_array(6, (3, 10)).astype(np.float16))
    for name in ("gelu", "geglu"):
        op = getattr(backend, name)
        eager = backend.to_numpy(op(x, fused=True))
        np.testing.assert_array_equal(backend.to_numpy(jax.jit(lambda x: op(x, fused=True))(x)), eager)
    assert backend.gelu(backend.asarray(np.ones((0, 3), np.float32)), fused=True).shape == (0, 3)
    assert backend.geglu(backend.asarray(np.ones((2, 0), np.float32)), fused=True).shape == (2, 0)


# ----------------------------------------------------------------------------------- block choice


@given(length=st.integers(1, 300_000), max_block=st.sampled_from([1024, 4096]))
def test_choose_block_covers_the_length_with_a_power_of_two(length, max_block):
    block, padded = pallas_norm._choose_block(length, max_block)
    assert block & (block - 1) == 0 and block <= max_block and padded % block == 0
    assert length <= padded < length + block
    if length % max_block == 0:
        assert (block, padded) == (max_block, length)  # SD's sizes: the largest block, no padding

"""JAX Winograd F(m x m, 3 x 3) (backends/jax/winograd.py): what only the JAX backend has. Its Pallas
input and output transforms around alpha^2 batched GEMMs against its plain-jnp transforms (the
two must round the same way, up to float32 reassociation), on their own on layers that need
several tile blocks, padded tiles and ragged edges, and inside the convolution; the jaxpr (two
kernels around the GEMMs); lowering with Pallas' Triton backend (the GPU path, checked without a
GPU).

On a CPU the kernels run in the Pallas interpreter, which compiles per shape (1-2 s): the SD-like
layer keeps one shape per (m, dtype) and draws seeds and scales; the ragged-size sweep is a fixed
list of shapes in float32 with drawn seeds (the kernels' index logic does not depend on the dtype;
the casts are covered by the SD-like layer), and the thorough profile adds freely drawn shapes.
The error bounds per tile, the weight transform, bad input and the paper's choice of Winograd run
on every backend in tests/test_winograd.py.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from backends import get_backend
from backends.jax import winograd as jw
from reference import ops
from reference import winograd as wg
from reference.numerics import relative_frobenius_error

from ..helpers import (
    THOROUGH, WINOGRAD_BOUNDS, conv_inputs, given_for, primitives_outside_kernels, random_array, scales, seeds,
    triton_kernels_lowered_for_cuda,
)

pytestmark = pytest.mark.backends("jax")

TILES = (2, 4, 6)
#: float16 storage overflows (65504) for large inputs, V and U growing with m: moderate scales.
LOW_PRECISION_SCALES = st.sampled_from([0.1, 1.0, 10.0])
SD_LAYER = (1, 32, 16, 16), 32  # x shape and output channels: C = O = 32, a 16 x 16 map, padding 1


def inputs(dtype, seed, x_shape, o, scale=1.0, bias=True):
    """(x, w, b) rounded to ``dtype`` and the same values in float64 (w ~ 1/sqrt(9C), b ~ scale)."""
    return conv_inputs(seed, x_shape, (o, x_shape[1], 3, 3), dtype, scale, bias, w_scale=1 / math.sqrt(9 * x_shape[1]))


def device(backend, arrays):
    return [None if a is None else backend.asarray(a) for a in arrays]


# ----------------------------------------------------------------------------------- Pallas and jnp transforms


@pytest.mark.parametrize("m", TILES)
def test_sd_like_layer_jnp_transforms_round_as_the_kernels(backend, dtype, m):
    # the layer of tests/test_winograd.py's SD-like test on JAX (the same shape: no new compile); the
    # plain-jnp transforms differ from the kernels by float32 reassociation only
    @given_for(backend, n=3, seed=seeds, data=st.data())
    def check(seed, data):
        scale = data.draw(scales if dtype == np.float32 else LOW_PRECISION_SCALES)
        x_shape, o = SD_LAYER
        arrays, _ = inputs(dtype, seed, x_shape, o, scale)
        xd, wd, bd = device(backend, arrays)
        y = backend.to_numpy(backend.conv2d(xd, wd, bd, padding=1, method="winograd", tile=m))
        plain = np.asarray(jw.conv2d_winograd(xd, wd, bd, (1, 1), m, backend.interpret, transforms="jnp"))
        assert plain.dtype == dtype
        assert relative_frobenius_error(y, plain) < WINOGRAD_BOUNDS[dtype][m] / 4, m

    check()


#: (m, x shape (N, C, H, W), output channels, padding, bias): every tile size meets the ragged sizes
#: 7, 9 and 13 in both directions, padding 0 and 1 on each axis, batches of 1 and 2, with and without bias.
RAGGED = [(2, (1, 3, 7, 13), 4, (0, 1), True), (2, (2, 2, 9, 9), 3, (1, 1), False),
          (4, (2, 5, 13, 7), 2, (1, 0), False), (4, (1, 1, 9, 13), 5, (0, 0), True),
          (6, (1, 4, 7, 9), 1, (1, 1), True), (6, (2, 2, 13, 13), 3, (0, 1), False)]


def check_ragged(backend, m, x_shape, o, padding, bias, seed):
    """Pallas and jnp transforms in float32: both within the bound, and equal up to reassociation."""
    dtype = np.dtype(np.float32)
    arrays, arrays64 = inputs(dtype, seed, x_shape, o, bias=bias)
    xd, wd, bd = device(backend, arrays)
    pallas = backend.to_numpy(backend.conv2d(xd, wd, bd, padding=padding, method="winograd", tile=m))
    plain = np.asarray(jw.conv2d_winograd(xd, wd, bd, padding, m, backend.interpret, transforms="jnp"))
    expected = ops.conv2d(*arrays64, padding=padding)
    assert pallas.shape == plain.shape == expected.shape
    assert relative_frobenius_error(pallas, expected) < WINOGRAD_BOUNDS[dtype][m]
    assert relative_frobenius_error(plain, expected) < WINOGRAD_BOUNDS[dtype][m]
    assert relative_frobenius_error(pallas, plain) < WINOGRAD_BOUNDS[dtype][m] / 2


@pytest.mark.parametrize("m, x_shape, o, padding, bias", RAGGED)
def test_ragged_sizes_within_the_bound_and_pallas_equals_jnp(backend, m, x_shape, o, padding, bias):
    @given_for(backend, n=3, seed=seeds)
    def check(seed):
        check_ragged(backend, m, x_shape, o, padding, bias, seed)

    check()


@pytest.mark.skipif(not THOROUGH, reason="draws shapes freely (a kernel compile each): thorough profile only")
@pytest.mark.parametrize("m", TILES)
def test_drawn_sizes_within_the_bound_and_pallas_equals_jnp(backend, m):
    @given_for(backend, n=2, seed=seeds, batch=st.integers(1, 2), c=st.integers(1, 6), o=st.integers(1, 5),
               h=st.integers(1, 20), w=st.integers(1, 20), ph=st.integers(0, 2), pw=st.integers(0, 2),
               bias=st.booleans())
    def check(seed, batch, c, o, h, w, ph, pw, bias):
        h, w = max(h, 3 - 2 * ph), max(w, 3 - 2 * pw)  # the padded input must hold the kernel
        check_ragged(backend, m, (batch, c, h, w), o, (ph, pw), bias, seed)

    check()


# ----------------------------------------------------------------------------------- the kernels alone


@pytest.mark.parametrize("m, x_shape", [(2, (2, 1, 17, 15)),   # 144 tiles: 3 blocks of 64, 48 padded tiles
                                        (4, (1, 2, 32, 32)),   # 64 tiles: one full block, no padding
                                        (6, (3, 2, 14, 8))])   # 18 tiles in one block of 32
def test_transform_kernels_equal_the_jnp_transforms(backend, m, x_shape):
    alpha = m + 2
    n, c, h, w = x_shape
    tiles_h, tiles_w = -(-h // m), -(-w // m)
    x = random_array(m, x_shape).astype(np.float32)
    xp = jnp.pad(jnp.asarray(x), ((0, 0), (0, 0), (0, tiles_h * m + 2 - h), (0, tiles_w * m + 2 - w)))
    tiles = n * tiles_h * tiles_w
    v = np.asarray(jw.input_transform(xp, m, tiles_h, tiles_w, backend.interpret))
    v_jnp = np.asarray(jw.input_transform_jnp(xp, m, tiles_h, tiles_w))
    block = jw.tile_block(tiles)
    assert v.shape == (alpha * alpha, c, -(-tiles // block) * block)
    np.testing.assert_allclose(v[:, :, :tiles], v_jnp, rtol=1e-6, atol=1e-6 * np.abs(v_jnp).max())

    o = 3
    mt = random_array(m + 1, (alpha * alpha, o, v.shape[2])).astype(np.float32)
    b = random_array(m + 2, (o,)).astype(np.float32)
    y = np.asarray(jw.output_transform(jnp.asarray(mt), jnp.asarray(b), n, m, tiles_h, tiles_w, backend.interpret))
    y_jnp = np.asarray(jw.output_transform_jnp(jnp.asarray(mt[:, :, :tiles]), jnp.asarray(b), n, m, tiles_h, tiles_w))
    assert y.shape[:2] == (n, o) and y.shape[3] == tiles_w * m
    assert y.shape[2] == (tiles_h + (v.shape[2] > tiles)) * m  # a scratch block row for padded tiles
    np.testing.assert_allclose(y[:, :, :tiles_h * m], y_jnp, rtol=1e-5, atol=1e-5 * np.abs(y_jnp).max())


def test_matrices_are_the_references_in_float32():
    for m in TILES:
        for ours, ref in zip(jw.matrices(m), wg.winograd_matrices(m)):
            assert ours.dtype == np.float32
            np.testing.assert_array_equal(ours, ref.astype(np.float32))


# ----------------------------------------------------------------------------------- jit, structure, GPU lowering


def test_jit_through_the_backend_two_kernels_around_the_gemms(backend):
    arrays, _ = inputs(np.dtype(np.float32), 1, (1, 3, 9, 9), 2)  # the next test's layer: one eager compile
    xd, wd, bd = device(backend, arrays)

    def conv(x, w, b):
        return backend.conv2d(x, w, b, padding=1, method="winograd", tile=4)

    jitted = jax.jit(conv)
    np.testing.assert_array_equal(np.asarray(jitted(xd, wd, bd)), np.asarray(conv(xd, wd, bd)))
    names = primitives_outside_kernels(jax.make_jaxpr(jitted)(xd, wd, bd).jaxpr)
    assert names.count("pallas_call") == 2, names        # the input and the output transform
    in_filter_transform = primitives_outside_kernels(
        jax.make_jaxpr(lambda w: jw.filter_transform(w, 4))(wd).jaxpr)
    assert names.count("dot_general") == in_filter_transform.count("dot_general") + 1, names  # + the GEMMs
    plain = primitives_outside_kernels(
        jax.make_jaxpr(lambda x, w, b: jw.conv2d_winograd(x, w, b, (1, 1), 4, True, "jnp"))(xd, wd, bd).jaxpr)
    assert "pallas_call" not in plain


def test_unknown_transforms_are_rejected(backend):
    x = backend.asarray(random_array(0, (1, 2, 8, 8)).astype(np.float32))
    w3 = backend.asarray(random_array(1, (2, 2, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="transforms: expected one of"):
        jw.conv2d_winograd(x, w3, None, (1, 1), 4, True, "numpy")


@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
def test_kernels_lower_with_the_triton_backend(dtype_name):
    """The two transform kernels pass the Pallas Triton lowering for "cuda" on the CPU
    (helpers.triton_kernels_lowered_for_cuda)."""
    pytest.importorskip("jax._src.lib.triton")
    dt = jnp.dtype(dtype_name)
    x, w, b = jnp.ones((2, 8, 13, 11), dt), jnp.ones((5, 8, 3, 3), dt), jnp.ones((5,), dt)
    for m in TILES:
        call = lambda x, w, b, m=m: jw.conv2d_winograd(x, w, b, (1, 0), m, False)
        assert triton_kernels_lowered_for_cuda(call, x, w, b) == 2, m


# --------------------------------------------------------------------------- the direct convolution's bias


@pytest.mark.parametrize("storage", [np.float16, jnp.bfloat16])
@pytest.mark.parametrize("seed", [0, 1])
def test_conv_bias_epilogue_rounds_once(storage, seed):
    # bias_form="epilogue": round(sum + b) from the product's float32 result, so the storage value
    # nearest the float64 result up to float32's error (a near-tie may go the other way, rarely);
    # "separate" rounds the sum, then sum + b (float16 on the CPU: ~30% of the values differ from
    # the nearest; XLA's CPU keeps the bfloat16 product in float32, so there the two agree)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 8, 9, 9)).astype(storage)
    w = (rng.standard_normal((6, 8, 3, 3)) / math.sqrt(72)).astype(storage)
    b = rng.standard_normal(6).astype(storage)  # as large as the sums: the second rounding matters
    exact = ops.conv2d(*(a.astype(np.float64) for a in (x, w, b)), padding=(1, 1))
    nearest = exact.astype(storage)
    epilogue, separate = (np.asarray(jw.conv2d_direct(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), (1, 1), (1, 1),
                                                      bias_form=form)) for form in ("epilogue", "separate"))
    assert (epilogue != nearest).mean() < 0.01
    # within one unit in the last place (the nearest is within half of one)
    info = jnp.finfo(storage)
    error = np.abs(epilogue.astype(np.float64) - exact)
    assert np.all(error <= float(info.eps) * np.abs(exact) + float(info.smallest_subnormal)), error.max()
    if storage == np.float16:
        assert (separate != nearest).mean() > 0.05  # the option changes the rounding


def test_conv_bias_forms_agree_in_float32_and_the_backend_takes_its_form():
    x, w, b = (jnp.asarray(random_array(i, shape).astype(np.float32)) for i, shape in
               enumerate([(1, 3, 6, 5), (4, 3, 3, 3), (4,)]))
    forms = [np.asarray(jw.conv2d_direct(x, w, b, (1, 1), (1, 1), bias_form=form)) for form in jw.CONV_BIAS]
    np.testing.assert_array_equal(forms[0], forms[1])
    x16, w16, b16 = (a.astype(jnp.float16) for a in (x, w, b))
    for form in jw.CONV_BIAS:
        backend = get_backend("jax", conv_bias=form)
        np.testing.assert_array_equal(np.asarray(backend.conv2d(x16, w16, b16, padding=1, method="direct")),
                                      np.asarray(jw.conv2d_direct(x16, w16, b16, (1, 1), (1, 1), bias_form=form)))
    with pytest.raises(ValueError, match="conv_bias: expected one of"):
        get_backend("jax", conv_bias="fused")
    with pytest.raises(ValueError, match="bias_form: expected one of"):
        jw.conv2d_direct(x, w, b, (1, 1), (1, 1), bias_form="fused")

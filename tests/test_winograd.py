"""Convolution, the paper's fourth idea: Winograd F(m x m, 3 x 3) and the direct convolution it
replaces, in the reference and on every backend.

The reference (reference/winograd.py): the transforms' exact theory in rationals (the bilinear
identity for any m and r, Lavin's published F(2, 3) matrices), the direct convolution against
loops, Winograd against it in float64 (ragged sizes, shifted tile seams), the error of each tile
size in low precision (median over layers, growing with m, the point sets that beat Lavin's for
F(4, 3), a bad point set caught), a componentwise metric that sees one bad element, and the cost
model (the paper's multiplication and memory ratios).

The backends (the ``backend`` fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes)
on the same rounded inputs as the float64 reference: the direct convolution for any kernel size,
stride and padding (and float32 products that are not TF32), Winograd within the per-tile bound
``WINOGRAD_BOUNDS`` and about as accurate as the reference's emulation of the same storage
roundings, ragged sizes, the weight transform U = G g G^T of the GPU backends, rejected input,
and the paper's optimizations choosing Winograd for 3x3 stride-1 layers. Example counts per
backend (``given_for``): the OpenCL suite's for numpy and opencl, the JAX suite's for jax (its
Pallas transforms compile, or are interpreted, per shape). Backend-specific checks:
tests/opencl/test_opencl_winograd.py (launches, temporaries, the weight cache),
tests/jax/test_jax_winograd.py (Pallas against jnp transforms, the jaxpr, Triton lowering).
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import Optimizations, get_backend
from reference import ops
from reference import winograd as wg
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import (
    THOROUGH, WINOGRAD_BOUNDS, assert_matches, conv_inputs, given_for, random_array, rounded, scales, scales_for,
    seeds, to_device,
)

# =========================================================================== the reference


TILES = [2, 4, 6]


# ----------------------------------------------------------------------------- exact theory


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("points", ["lavin", "integer"])
def test_bilinear_identity_holds_exactly_in_rationals(m, points):
    """A^T[(G g) * (B^T d)] is the correlation of d with g for all g, d: the trilinear tensor
    sum_x AT[i,x] G[x,k] BT[x,j] must be exactly [j == i + k]."""
    at, g, bt = wg.winograd_matrices(m, 3, points=points, exact=True)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    assert all(isinstance(v, Fraction) for v in np.concatenate([at.ravel(), g.ravel(), bt.ravel()]))
    for i in range(m):
        for k in range(3):
            for j in range(m + 2):
                value = sum(at[i, x] * g[x, k] * bt[x, j] for x in range(m + 2))
                assert value == (1 if j == i + k else 0), (m, i, k, j, value)


@pytest.mark.parametrize("m,r", [(1, 3), (3, 2), (2, 5), (3, 3), (5, 3)])
def test_construction_works_for_any_m_and_r(m, r):
    points = [Fraction(p) for p in (0, 1, -1, 2, -2, Fraction(1, 2), -Fraction(1, 2), 3)[: m + r - 2]]
    at, g, bt = wg.winograd_matrices(m, r, points=points, exact=True)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        d = [Fraction(int(v)) for v in rng.integers(-9, 9, m + r - 1)]
        f = [Fraction(int(v)) for v in rng.integers(-9, 9, r)]
        y = at.dot(g.dot(f) * bt.dot(d))
        assert list(y) == [sum(f[k] * d[i + k] for k in range(r)) for i in range(m)]


def test_lavin_f23_matches_the_published_matrices():
    at, g, bt = wg.winograd_matrices(2, exact=True)
    half = Fraction(1, 2)
    assert (g == np.array([[1, 0, 0], [half, half, half], [half, -half, half], [0, 0, 1]], dtype=object)).all()
    assert (bt == np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]], dtype=object)).all()
    assert (at == np.array([[1, 1, 1, 0], [0, 1, -1, 1]], dtype=object)).all()


@pytest.mark.parametrize("m,points", [(2, None), (4, None), (6, None), (4, "tflite"), (4, "barabasz")])
def test_float_matrices_satisfy_the_identity(m, points):
    at, g, bt = wg.winograd_matrices(m, points=points)
    tensor = np.einsum("ix,xk,xj->ikj", at, g, bt)
    expected = np.zeros_like(tensor)
    for i in range(m):
        for k in range(3):
            expected[i, k, i + k] = 1
    assert_close(tensor, expected, atol=1e-13, rtol=0)


# ----------------------------------------------------------------------------- the convolutions


def conv2d_by_loops(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y + b.reshape(1, o, 1, 1)


@given(seed=seeds, c=st.integers(1, 3), o=st.integers(1, 3), k=st.sampled_from([1, 3, 5]),
       hw=st.tuples(st.integers(5, 9), st.integers(5, 9)), stride=st.integers(1, 2), padding=st.integers(0, 2))
def test_conv2d_matches_loops(seed, c, o, k, hw, stride, padding):
    x = random_array(seed, (2, c) + hw)
    w, b = random_array(seed + 1, (o, c, k, k)), random_array(seed + 2, (o,))
    assert_close(ops.conv2d(x, w, b, stride=stride, padding=padding),
                 conv2d_by_loops(x, w, b, stride, padding), atol=1e-12, rtol=1e-12)


sizes = st.integers(3, 14)


@given(seed=seeds, m=st.sampled_from(TILES), n=st.integers(1, 2), c=st.integers(1, 5), o=st.integers(1, 4),
       h=sizes, w=sizes, padding=st.integers(0, 1), bias=st.booleans(), scale=scales)
def test_float64_winograd_equals_direct(seed, m, n, c, o, h, w, padding, bias, scale):
    x = random_array(seed, (n, c, h, w), scale=scale)
    k = random_array(seed + 1, (o, c, 3, 3))
    b = random_array(seed + 2, (o,)) if bias else None
    direct = ops.conv2d(x, k, b, padding=padding)
    assert relative_frobenius_error(wg.conv2d_winograd(x, k, b, padding=padding, m=m), direct) < 1e-12


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("size", [7, 9, 13])
@pytest.mark.parametrize("padding", [0, 1])
def test_ragged_sizes(m, size, padding):
    x = random_array(size, (1, 3, size, size + 2))
    k = random_array(size + 1, (2, 3, 3, 3))
    y = wg.conv2d_winograd(x, k, padding=padding, m=m)
    assert y.shape == (1, 2, size + 2 * padding - 2, size + 2 * padding)
    assert_close(y, ops.conv2d(x, k, padding=padding), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("m", TILES)
def test_tile_seam_shifts_give_the_shifted_result(m):
    """Moving the input by s pixels moves where tile seams fall; the output must just move."""
    big = random_array(m, (1, 2, 3 * m + 8, 3 * m + 9))
    k = random_array(m + 1, (3, 2, 3, 3))
    h, w = 2 * m + 5, 2 * m + 4
    base = wg.conv2d_winograd(big[:, :, :h, :w], k, m=m)
    for s in range(1, m):
        shifted = wg.conv2d_winograd(big[:, :, s:s + h, s:s + w], k, m=m)
        full = ops.conv2d(big, k)
        assert_close(shifted, full[:, :, s:s + h - 2, s:s + w - 2], atol=1e-12, rtol=1e-10)
        assert_close(shifted[:, :, :-s, :-s], base[:, :, s:, s:], atol=1e-12, rtol=1e-10)


# ----------------------------------------------------------------------------- error bounds


SEEDS = range(8 if THOROUGH else 5)
LAYER = (1, 32, 16, 16), (32, 32, 3, 3)  # a small SD-like layer: C = 32, 16x16 map, padding 1


def median_error(m, dtype, points=None, layer=LAYER):
    (xs, ws) = layer
    errs = [wg.winograd_error(random_array(s, xs), random_array(1000 + s, ws), m=m, points=points,
                              padding=1, dtype=dtype) for s in SEEDS]
    return float(np.median([e.relative for e in errs])), float(np.median([e.componentwise for e in errs]))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_error_bounds_per_tile_and_growth_with_m(dtype):
    rel = {m: median_error(m, dtype)[0] for m in TILES}
    for m in TILES:
        assert rel[m] < WINOGRAD_BOUNDS[np.dtype(dtype)][m], (dtype, m, rel[m])
        assert rel[m] > 0  # really computed in low precision
    assert rel[2] < rel[4] < rel[6], rel


def test_direct_fp32_is_more_accurate_than_f4_and_f6():
    # (F(2,3) and direct are within a factor of two of each other; which wins depends on the data)
    x, k = random_array(0, LAYER[0]).astype(np.float32), random_array(1000, LAYER[1]).astype(np.float32)
    y = ops.conv2d(x.astype(np.float64), k.astype(np.float64), padding=1)
    direct = relative_frobenius_error(ops.conv2d(x, k, padding=1), y)
    assert 3 * direct < median_error(4, np.float32)[0] < median_error(6, np.float32)[0]


def test_mutation_integer_points_fail_the_f6_bound():
    """0, +-1, +-2, +-3 for F(6,3): the bound is tight enough to catch a bad point set."""
    rel, _ = median_error(6, np.float32, points="integer")
    assert rel > WINOGRAD_BOUNDS[np.dtype(np.float32)][6], rel


def test_better_point_sets_are_better_for_f4():
    lavin = median_error(4, np.float32)[0]
    assert median_error(4, np.float32, points="tflite")[0] < lavin
    assert median_error(4, np.float32, points="barabasz")[0] < lavin


def test_componentwise_error_catches_a_single_bad_element():
    x, k = random_array(0, (1, 4, 8, 8)), random_array(1, (2, 4, 3, 3))
    y = ops.conv2d(x, k, padding=1)
    y_bad = y.copy()
    y_bad[0, 1, 3, 3] += 1e-3 * np.abs(y).max()
    assert wg.componentwise_error(y, y, x, k, padding=1) == 0
    assert relative_frobenius_error(y_bad, y) < 1e-3
    assert wg.componentwise_error(y_bad, y, x, k, padding=1) > 1e-4


# ----------------------------------------------------------------------------- cost model


@pytest.mark.parametrize("m,reduction,input_ratio,weight_ratio", [
    (2, 2.25, 4.0, 16 / 9), (4, 4.0, 2.25, 4.0), (6, 81 / 16, 64 / 36, 64 / 9)])
def test_cost_model_matches_the_paper_table_on_whole_tiles(m, reduction, input_ratio, weight_ratio):
    cost = wg.winograd_cost(320, 320, 48, 48, m=m, padding=1)  # 48 divisible by 2, 4, 6
    assert cost.mult_reduction == pytest.approx(reduction)
    assert cost.input_ratio == pytest.approx(input_ratio)
    assert cost.weight_ratio == pytest.approx(weight_ratio)


def test_cost_model_counts_ragged_tile_padding():
    # an 8x8 map under F(6,3) needs 2x2 tiles of 6x6 = 12x12 outputs: 2.25x the work of whole tiles
    ragged = wg.winograd_cost(64, 64, 8, 8, m=6)
    assert ragged.tiles == 4
    assert ragged.mult_reduction == pytest.approx(81 / 16 * 64 / 144)
    assert ragged.direct_mults == 64 * 64 * 8 * 8 * 9


# =========================================================================== every backend's convolutions


KERNELS = [(1, 1), (3, 3), (5, 5), (1, 3), (3, 2)]
#: Winograd with low-precision storage keeps to moderate input scales: float16 overflows past 65504
#: (V and U grow with m) and keeps only absolute precision in its subnormals (the direct
#: convolution takes helpers.scales_for(dtype), which includes 1e-3).
WINOGRAD_LOW_PRECISION_SCALES = st.sampled_from([0.1, 1.0, 10.0])
#: A backend's Winograd error may exceed that of the reference's emulation of the same storage
#: roundings (reference.winograd.conv2d_winograd) by this factor at most: float32 reassociation in
#: the transforms and GEMMs (the numpy backend is the emulation itself).
EMULATION_FACTOR = {"numpy": 2, "opencl": 3, "jax": 2}


def on_device(backend, arrays):
    return [to_device(backend, a) for a in arrays]


# --------------------------------------------------------------------------- direct


def test_direct_matches_reference(backend, dtype):
    # any kernel size (square or not), stride and padding; OpenCL's 8 x 8 pixel blocks of 4 output
    # channels are ragged against every drawn size
    @given_for(backend, jax=8, seed=seeds, batch=st.integers(1, 2), c=st.integers(1, 6), o=st.integers(1, 9),
               h=st.integers(1, 13), w=st.integers(1, 13), k=st.sampled_from(KERNELS),
               stride=st.sampled_from([1, 2, (2, 1)]), ph=st.integers(0, 2), pw=st.integers(0, 2),
               bias=st.booleans(), scale=scales_for(dtype))
    def check(seed, batch, c, o, h, w, k, stride, ph, pw, bias, scale):
        h, w = max(h, k[0] - 2 * ph), max(w, k[1] - 2 * pw)  # the padded input must hold the kernel
        arrays, (x64, w64, b64) = conv_inputs(seed, (batch, c, h, w), (o, c) + k, dtype, scale, bias,
                                              w_scale=1 / math.sqrt(c * k[0] * k[1]))
        y = backend.conv2d(*on_device(backend, arrays), stride=stride, padding=(ph, pw), method="direct")
        expected = ops.conv2d(x64, w64, b64, stride=stride, padding=(ph, pw))
        assert y.shape == expected.shape
        # (an output that reads only padding, e.g. 1x1 input, stride 2, padding 1, must be exact zeros)
        assert_matches(backend.to_numpy(y), expected, dtype)

    check()


@pytest.mark.parametrize("kernel, stride, padding", [((1, 3), (2, 1), (0, 2)), ((3, 2), (1, 3), (1, 0))])
def test_direct_non_square_kernels_and_strides(backend, dtype, kernel, stride, padding):
    arrays, (x64, w64, b64) = conv_inputs(7, (2, 3, 11, 10), (5, 3) + kernel, dtype)
    y = backend.conv2d(*on_device(backend, arrays), stride=stride, padding=padding, method="direct")
    assert_matches(backend.to_numpy(y), ops.conv2d(x64, w64, b64, stride=stride, padding=padding), dtype)


def test_direct_float32_products_are_not_tf32(backend):
    # operands with 16+ significant bits: a TF32 (10-bit) or bf16 pass would be ~1e-4 off
    x = (1.0 + random_array(0, (2, 4, 8, 8), scale=1e-3)).astype(np.float32)
    w = (1.0 + random_array(1, (4, 4, 3, 3), scale=1e-3)).astype(np.float32)
    y = backend.to_numpy(backend.conv2d(backend.asarray(x), backend.asarray(w), padding=1, method="direct"))
    assert relative_frobenius_error(y, ops.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)) < 1e-6


# --------------------------------------------------------------------------- Winograd


def sd_like_layers(backend):
    """(x shape, output channels, bias, weight scale) of SD-like layers: C and O of 16 to 32, maps of
    12 to 16 pixels (ragged against every m), unit weights, with or without bias. JAX: one such
    layer (C = O = 32, 16 x 16, bias, weights ~ 1/sqrt(9 C)), since every shape is a kernel compile."""
    if backend.name == "jax":
        return st.just(((1, 32, 16, 16), 32, True, 1 / math.sqrt(9 * 32)))
    return st.builds(lambda c, o, h, w, bias: ((1, c, h, w), o, bias, 1.0),
                     st.sampled_from([16, 24, 32]), st.sampled_from([16, 32]), st.integers(12, 16),
                     st.integers(12, 16), st.booleans())


@pytest.mark.parametrize("m", TILES)
def test_winograd_sd_like_layer_within_the_error_bound(backend, dtype, m):
    @given_for(backend, n=4, jax=3, seed=seeds, layer=sd_like_layers(backend),
               scale=scales if dtype == np.float32 else WINOGRAD_LOW_PRECISION_SCALES)
    def check(seed, layer, scale):
        x_shape, o, bias, w_scale = layer
        arrays, arrays64 = conv_inputs(seed, x_shape, (o, x_shape[1], 3, 3), dtype, scale, bias, w_scale)
        y = backend.to_numpy(backend.conv2d(*on_device(backend, arrays), padding=1, method="winograd", tile=m))
        expected = ops.conv2d(*arrays64, padding=1)
        assert y.dtype == dtype and y.shape == expected.shape and np.all(np.isfinite(y))
        err = relative_frobenius_error(y, expected)
        assert 0 < err < WINOGRAD_BOUNDS[dtype][m], (m, err)
        # and as accurate as the reference's emulation of the same plan (the same storage roundings)
        emulated = relative_frobenius_error(wg.conv2d_winograd(*arrays, padding=1, m=m), expected)
        assert err < EMULATION_FACTOR[backend.name] * emulated, (m, err, emulated)

    check()


# JAX: a fixed list of ragged layers (each shape is a kernel compile), run with both its Pallas and
# its jnp transforms, in tests/jax/test_jax_winograd.py
@pytest.mark.backends("numpy", "opencl")
@pytest.mark.parametrize("m", TILES)
def test_winograd_ragged_sizes_within_the_error_bound(backend, dtype, m):
    @given_for(backend, n=6, seed=seeds, batch=st.integers(1, 2), c=st.integers(2, 8), o=st.integers(1, 8),
               h=st.sampled_from([7, 9, 13]), w=st.sampled_from([7, 9, 13]), ph=st.integers(0, 1),
               pw=st.integers(0, 1), bias=st.booleans())
    def check(seed, batch, c, o, h, w, ph, pw, bias):
        arrays, arrays64 = conv_inputs(seed, (batch, c, h, w), (o, c, 3, 3), dtype, bias=bias)
        y = backend.to_numpy(backend.conv2d(*on_device(backend, arrays), padding=(ph, pw), method="winograd",
                                            tile=m))
        expected = ops.conv2d(*arrays64, padding=(ph, pw))
        assert y.shape == expected.shape and np.all(np.isfinite(y))
        assert relative_frobenius_error(y, expected) < WINOGRAD_BOUNDS[dtype][m]

    check()


def transformed_weights(backend, w, m):
    """U = G g G^T (alpha^2, O, C) of the host weights ``w`` as the GPU backend computes it, on the host."""
    if backend.name == "opencl":
        from backends.opencl import winograd as ocl_winograd

        return ocl_winograd.transformed_weights(backend.rt, backend.asarray(w), m).get()
    from backends.jax import winograd as jax_winograd

    return np.asarray(jax_winograd.filter_transform(backend.asarray(w), m))


@pytest.mark.backends("opencl", "jax")
@pytest.mark.parametrize("m", TILES)
def test_weight_transform_is_g_g_gt(backend, dtype, m):
    """U against G g G^T in float64 (with the float32 matrices), rounded to the storage dtype."""
    w, w64 = rounded(random_array(5, (3, 4, 3, 3)), dtype)
    u = transformed_weights(backend, w, m)
    g = wg.winograd_matrices(m).G.astype(np.float32).astype(np.float64)
    expected = np.einsum("xu,ocuv,yv->xyoc", g, w64, g).reshape((m + 2) ** 2, 3, 4)
    assert u.shape == expected.shape and u.dtype == dtype
    tol = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3}[dtype.name]  # float arithmetic, one storage rounding
    np.testing.assert_allclose(u.astype(np.float64), expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_winograd_rejects_what_it_cannot_compute(backend):
    x = backend.asarray(random_array(0, (1, 2, 8, 8)).astype(np.float32))
    w3 = backend.asarray(random_array(1, (2, 2, 3, 3)).astype(np.float32))
    w5 = backend.asarray(random_array(2, (2, 2, 5, 5)).astype(np.float32))
    with pytest.raises(ValueError, match="tile: expected one of"):
        backend.conv2d(x, w3, method="winograd", tile=5)
    with pytest.raises(ValueError, match="needs a 3x3 kernel"):
        backend.conv2d(x, w5, padding=2, method="winograd", tile=4)
    with pytest.raises(ValueError, match="needs stride 1"):
        backend.conv2d(x, w3, stride=2, method="winograd", tile=4)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        backend.conv2d(backend.asarray(np.ones((1, 2, 1, 1), np.float32)), w3, method="winograd", tile=2)


def test_paper_optimizations_pick_winograd_for_3x3_stride_1(backend):
    be = get_backend(backend.name, optimizations=Optimizations.paper(),
                     **({"poison": True} if backend.name == "opencl" else {}))
    arrays, arrays64 = conv_inputs(1, (1, 3, 9, 9), (2, 3, 3, 3), np.float32, w_scale=1 / math.sqrt(27))
    y = be.to_numpy(be.conv2d(*on_device(be, arrays), padding=1))
    assert be.choices[("conv2d", "default", "winograd4")] == 1
    assert relative_frobenius_error(y, ops.conv2d(*arrays64, padding=1)) < WINOGRAD_BOUNDS[np.dtype(np.float32)][4]
    # a stride-2 layer stays direct
    be.conv2d(*on_device(be, arrays), stride=2, padding=1)
    assert be.choices[("conv2d", "default", "direct")] == 1

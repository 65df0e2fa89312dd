"""Winograd: exact theory, equivalence with direct convolution, and error bounds per tile size."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference import winograd as wg
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import THOROUGH, random_array, scales, seeds

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


# ----------------------------------------------------------------------------- the convolution


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


BOUNDS = {  # relative Frobenius error vs float64 on the same rounded inputs (issue #2)
    np.float32: {2: 3e-6, 4: 2e-5, 6: 5e-5},
    np.float16: {2: 4e-3, 4: 2.5e-2, 6: 6e-2},
}
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
        assert rel[m] < BOUNDS[dtype][m], (dtype, m, rel[m])
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
    assert rel > BOUNDS[np.float32][6], rel


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

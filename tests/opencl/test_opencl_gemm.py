"""The OpenCL matrix core (backends/opencl/gemm.py, kernels/gemm.cl): every candidate tile, every
operand layout, ragged M, N and K, both storage dtypes, against the float64 product; the
implicit-GEMM convolution per tile; the measured tile table and its lookup; bad tiles.

The outputs are poisoned (NaN) before the kernel writes them, so a missed element fails the
comparison. The shapes are one tile and a bit in every dimension and 2.5 slabs deep, so the
double-buffered K loop, its tail and the masked edges all run.
"""

import json

import numpy as np
import pytest

from backends.opencl import gemm
from backends.opencl.gemm import DEFAULT_TILE, TILES, GemmTile
from reference import ops
from reference.numerics import relative_frobenius_error

from ..helpers import THOROUGH, random_array

pytestmark = pytest.mark.backends("opencl")

TOLERANCE = {np.float32: 1e-5, np.float16: 2e-3}


def rounded(x, dtype):
    x = x.astype(dtype)
    return x, x.astype(np.float64)


def strided_operand(rng_seed, batch, rows, cols, unit_cols: bool, dtype):
    """A (batch, rows, cols) operand stored row-major (unit column stride) or column-major, and
    its (batch, row, col) strides."""
    x, x64 = rounded(random_array(rng_seed, (batch, rows, cols)), dtype)
    if unit_cols:
        return np.ascontiguousarray(x), x64, (rows * cols, cols, 1)
    return np.ascontiguousarray(x.transpose(0, 2, 1)), x64, (rows * cols, 1, rows)


LAYOUTS = [(True, True), (True, False), (False, True), (False, False)]  # (A's k stride 1, B's n stride 1)
#: the tiles built in the ci profile: every blocking, and each split tile's first split count (the
#: split count changes only K's ranges, which test_split_k_launches_and_temporaries checks); every
#: candidate under the thorough profile (PoCL takes seconds per build)
BUILT = TILES if THOROUGH else [t for i, t in enumerate(TILES) if t.splits == 1 or all(
    u.splits == 1 or (u.bm, u.bn, u.bk, u.tm, u.tn) != (t.bm, t.bn, t.bk, t.tm, t.tn) for u in TILES[:i])]
#: each tile once, the layouts taken in turn; and every layout on the default tile
CASES = [(tile, *LAYOUTS[i % 4]) for i, tile in enumerate(BUILT)] + [(DEFAULT_TILE, *layout) for layout in LAYOUTS]


@pytest.mark.parametrize("tile, a_k_unit, b_n_unit", CASES,
                         ids=[f"{t.name}-A{'k' if ak else 'm'}-B{'n' if bn else 'k'}" for t, ak, bn in CASES])
def test_gemm_every_tile_and_layout(backend, tile, a_k_unit, b_n_unit):
    rt = backend.rt
    m, n, k, batch = tile.bm + 3, tile.bn + 5, 2 * tile.bk + tile.bk // 2 + 1, 2
    a, a64, sa = strided_operand(1, batch, m, k, a_k_unit, np.float32)
    b, b64, sb = strided_operand(2, batch, k, n, b_n_unit, np.float32)
    bias, bias64 = rounded(random_array(3, (n,)), np.float32)
    c = rt.empty((batch, m, n), np.float32)
    gemm.gemm_batched(rt, rt.to_device(a), rt.to_device(b), c, m, n, k, batch, sa, sb, (m * n, n, 1),
                      bias=rt.to_device(bias), alpha=0.5, tile=tile)
    want = 0.5 * np.einsum("bik,bkj->bij", a64, b64) + bias64
    assert relative_frobenius_error(c.get(), want) < TOLERANCE[np.float32]


#: vector loads: tiles whose items load A and B slab shares of 4 and 2, 4 and 4, 1 and 8, 8 and 1 (two
#: vectors each), and a split-K tile; the layouts in turn, fp16 storage on two (vloada_half)
VECTOR_CASES = [(GemmTile.parse(name), *LAYOUTS[i % 4], dtype) for i, (name, dtype) in enumerate((
    ("128x64x8/8x4", np.float32), ("64x64x16/4x4", np.float16), ("16x128x8/2x8", np.float32),
    ("128x16x8/8x2", np.float32), ("32x32x8/4x4/k4", np.float16)))]


def test_vector_width_follows_the_layout():
    # (batch, row, col) strides, (rows, cols), slab (rows, cols), elements per item
    assert gemm.vector_width((0, 320, 1), (8192, 320), (128, 8), 4) == 4
    assert gemm.vector_width((0, 1, 320), (320, 8192), (8, 128), 4) == 4      # unit stride along rows
    assert gemm.vector_width((0, 77, 1), (4096, 77), (128, 8), 4) == 1        # 77 columns: a vector would straddle
    assert gemm.vector_width((0, 78, 1), (4096, 78), (128, 8), 4) == 2
    assert gemm.vector_width((0, 320, 1), (8192, 320), (128, 8), 2) == 2      # the item's share caps it
    assert gemm.vector_width((6, 320, 1), (10, 320), (128, 8), 4) == 2        # a batch stride 2 mod 4
    assert gemm.vector_width((0, 320, 3), (10, 320), (128, 8), 4) == 1        # no unit stride


@pytest.mark.parametrize("tile, a_k_unit, b_n_unit, storage", VECTOR_CASES,
                         ids=[f"{t.name}-A{'k' if ak else 'm'}-B{'n' if bn else 'k'}-{np.dtype(d).name}"
                              for t, ak, bn, d in VECTOR_CASES])
def test_gemm_vector_loads(backend, tile, a_k_unit, b_n_unit, storage):
    """Extents that are multiples of 4 but not of the tile (so the vector loads are taken, and
    the masked edges and the K tail still run), against float64."""
    rt = backend.rt
    m, n, k, batch = tile.bm + 4, tile.bn + 4, 2 * tile.bk + 4, 2
    a, a64, sa = strided_operand(16, batch, m, k, a_k_unit, storage)
    b, b64, sb = strided_operand(17, batch, k, n, b_n_unit, storage)
    layout = gemm._layout(tile, m, n, k, sa, sb, vectors=True)
    shares = (tile.bm * tile.bk // tile.threads, tile.bk * tile.bn // tile.threads)
    assert (layout["VA"], layout["VB"]) == tuple(min(4, s) for s in shares)
    c = rt.empty((batch, m, n), storage)
    gemm.gemm_batched(rt, rt.to_device(a), rt.to_device(b), c, m, n, k, batch, sa, sb, (m * n, n, 1),
                      alpha=0.5, tile=tile)
    assert relative_frobenius_error(c.get(), 0.5 * np.einsum("bik,bkj->bij", a64, b64)) < TOLERANCE[storage]


def test_fp16_vector_loads_keep_subnormals_signs_and_extremes(backend):
    """The fp16 vector loads convert the raw half bits themselves: A @ I must give back A exactly,
    subnormals (down to 2^-24), negative values and the largest half included."""
    rt = backend.rt
    tile = GemmTile.parse("64x64x16/4x4")
    special = np.array([2.0**-24, -2.0**-24, 3 * 2.0**-20, -1e-5, 2.0**-14, 65504.0, -65504.0, -0.0, 1.0, -2.5,
                        0.1, 1000.0], np.float16)
    a = np.resize(special, (1, 8, 16))
    a[0, 1] = a[0, 1, ::-1]
    eye = np.eye(16, dtype=np.float16)[None]
    assert gemm._layout(tile, 8, 16, 16, (128, 16, 1), (256, 16, 1), vectors=True)["VA"] == 4
    c = rt.empty((1, 8, 16), np.float16)
    gemm.gemm_batched(rt, rt.to_device(a), rt.to_device(eye), c, 8, 16, 16, 1, (128, 16, 1), (256, 16, 1),
                      (128, 16, 1), tile=tile)
    np.testing.assert_array_equal(c.get(), a)


#: the convolution's loader and epilogue depend on the accumulator block (tm x tn) and on the split, not on
#: the tile's other sizes (which the GEMM test covers for every tile): one tile per block, and one split
CONV_TILES = [GemmTile.parse(name) for name in ("128x64x16/8x4", "64x128x8/4x8", "64x64x16/4x4", "128x16x8/8x2",
                                                "16x128x8/2x8", "32x32x8/4x4/k4")]


@pytest.mark.parametrize("tile", CONV_TILES, ids=lambda t: t.name)
def test_implicit_gemm_convolution_every_tile(backend, tile):
    rt = backend.rt
    # 2 images of 9 x 11 pixels, stride (2, 1), kernel 3 x 2, padding (1, 0): ragged pixel count,
    # K = 5 * 6 = 30 not a multiple of any slab depth, O one past a tile row boundary
    x, x64 = rounded(random_array(4, (2, 5, 9, 11)), np.float32)
    w, w64 = rounded(random_array(5, (tile.bm // 2 + 1, 5, 3, 2), scale=0.3), np.float32)
    b, b64 = rounded(random_array(6, (w.shape[0],)), np.float32)
    want = ops.conv2d(x64, w64, b64, stride=(2, 1), padding=(1, 0))
    y = rt.empty(want.shape, np.float32)
    gemm.conv2d_implicit_gemm(rt, rt.to_device(x), rt.to_device(w), rt.to_device(b), y, (2, 1), (1, 0), tile=tile)
    assert relative_frobenius_error(y.get(), want) < TOLERANCE[np.float32]


@pytest.mark.parametrize("tile", [GemmTile.parse("128x64x8/8x4"), DEFAULT_TILE, GemmTile.parse("128x16x8/8x2/k2")],
                         ids=lambda t: t.name)
def test_fp16_storage_gemm_and_convolution(backend, tile):
    """fp16 storage, fp32 arithmetic: the float64 product of the fp16-rounded operands, to the
    fp16 rounding of the output."""
    rt = backend.rt
    m, n, k = tile.bm + 1, tile.bn + 2, 3 * tile.bk + 1
    a, a64, sa = strided_operand(7, 1, m, k, True, np.float16)
    b, b64, sb = strided_operand(8, 1, k, n, False, np.float16)
    c = rt.empty((1, m, n), np.float16)
    gemm.gemm_batched(rt, rt.to_device(a), rt.to_device(b), c, m, n, k, 1, sa, sb, (m * n, n, 1), tile=tile)
    assert relative_frobenius_error(c.get(), a64 @ b64) < TOLERANCE[np.float16]

    x, x64 = rounded(random_array(9, (1, 6, 7, 8)), np.float16)
    w, w64 = rounded(random_array(10, (5, 6, 3, 3), scale=0.3), np.float16)
    want = ops.conv2d(x64, w64, None, stride=(1, 1), padding=(1, 1))
    y = rt.empty(want.shape, np.float16)
    gemm.conv2d_implicit_gemm(rt, rt.to_device(x), rt.to_device(w), None, y, (1, 1), (1, 1), tile=tile)
    assert relative_frobenius_error(y.get(), want) < TOLERANCE[np.float16]


# ----------------------------------------------------------------------------------- the tile table


def test_tile_names_round_trip_and_bad_tiles_are_refused(backend):
    for tile in TILES:
        assert GemmTile.parse(tile.name) == tile
    with pytest.raises(ValueError, match="tile: expected a name like"):
        GemmTile.parse("128x128")
    with pytest.raises(ValueError, match="tm: expected 1, 2, 4 or 8"):
        GemmTile(64, 64, 8, 3, 4)
    with pytest.raises(ValueError, match="split evenly"):
        GemmTile(64, 64, 1, 4, 4)
    with pytest.raises(ValueError, match="pad: expected a multiple of 4"):
        GemmTile(64, 64, 8, 4, 4, pad=1)
    huge = GemmTile(1024, 1024, 128, 8, 8)  # 16384 items, 2 MiB of local memory
    rt = backend.rt
    a = rt.to_device(np.ones((1, 1), np.float32))
    with pytest.raises(ValueError, match="tile: 1024x1024x128/8x8 needs 16384 items"):
        gemm.gemm_batched(rt, a, a, rt.empty((1, 1), np.float32), 1, 1, 1, 1, (0, 1, 1), (0, 1, 1), (0, 1, 1),
                          tile=huge)


def test_choose_tile_takes_the_nearest_measured_shape(backend, tmp_path, monkeypatch):
    rt = backend.rt
    name = rt.device.name
    table = {"devices": {name: [
        {"kind": "gemm", "dtype": "float32", "m": 8192, "n": 320, "k": 320, "batch": 1, "tile": "128x64x8/8x4"},
        {"kind": "gemm", "dtype": "float32", "m": 2, "n": 1280, "k": 1280, "batch": 1, "tile": "16x128x8/2x8"},
        {"kind": "gemm", "dtype": "float16", "m": 8192, "n": 320, "k": 320, "batch": 1, "tile": "64x64x16/4x4"},
        {"kind": "conv", "dtype": "float32", "m": 320, "n": 8192, "k": 2880, "batch": 1, "tile": "128x128x8/8x8"},
    ]}}
    path = tmp_path / "gemm_tiles.json"
    path.write_text(json.dumps(table))
    monkeypatch.setattr(gemm, "TABLE_PATH", path)
    gemm._table.cache_clear()
    try:
        pick = lambda *args: gemm.choose_tile(rt, *args).name  # noqa: E731
        assert pick("gemm", np.float32, 8000, 300, 320) == "128x64x8/8x4"
        assert pick("gemm", np.float32, 4, 1280, 1000) == "16x128x8/2x8"
        assert pick("gemm", np.float16, 8000, 300, 320) == "64x64x16/4x4"
        assert pick("conv", np.float32, 320, 100, 2880) == "128x128x8/8x8"
        assert pick("conv", np.float16, 320, 100, 2880) == "128x128x8/8x8"  # no fp16 entry: the other dtype's
        monkeypatch.setattr(gemm, "TABLE_PATH", tmp_path / "missing.json")
        gemm._table.cache_clear()
        assert gemm.choose_tile(rt, "gemm", np.float32, 8192, 320, 320) == DEFAULT_TILE
    finally:
        gemm._table.cache_clear()


def test_committed_table_names_known_tiles():
    """Every tile the committed table picks is a candidate the tuner measured, of a known kind."""
    data = json.loads(gemm.TABLE_PATH.read_text())
    names = {t.name for t in TILES}
    for device, entries in data["devices"].items():
        assert entries, device
        for e in entries:
            assert e["tile"] in names and e["kind"] in gemm.KINDS and e["dtype"] in ("float32", "float16")


def test_split_k_launches_and_temporaries(backend):
    """A split-K tile: the products into a float32 (splits, batch, M, N) temporary and one
    reduction launch; K shorter than the splits leaves some ranges empty (they add zeros)."""
    rt = backend.rt
    tile = GemmTile.parse("32x32x8/4x4/k4")
    for k in (3 * tile.bk * tile.splits + 5, 9):
        a, a64, sa = strided_operand(11, 2, 40, k, True, np.float32)
        b, b64, sb = strided_operand(12, 2, k, 33, True, np.float32)
        c = rt.empty((2, 40, 33), np.float32)
        with rt.measure() as counted:
            gemm.gemm_batched(rt, rt.to_device(a), rt.to_device(b), c, 40, 33, k, 2, sa, sb, (40 * 33, 33, 1),
                              tile=tile)
        assert counted.kernels == ["gemm_batched", "gemm_splitk_reduce"]
        assert counted.temp_bytes == 4 * tile.splits * 2 * 40 * 33
        assert relative_frobenius_error(c.get(), np.einsum("bik,bkj->bij", a64, b64)) < TOLERANCE[np.float32]


def test_winograd_adds_split_k_partials_in_its_output_transform(backend, monkeypatch, dtype):
    """With a split-K tile for its products, Winograd keeps its 3 launches: the output transform
    reads the float32 partial sums and adds them."""
    from backends.opencl import winograd

    tile = GemmTile.parse("16x128x8/2x8/k8")
    monkeypatch.setattr(winograd, "choose_tile", lambda *args: tile)
    x, x64 = rounded(random_array(13, (2, 70, 9, 10)), dtype)
    w, w64 = rounded(random_array(14, (6, 70, 3, 3), scale=0.1), dtype)
    b, b64 = rounded(random_array(15, (6,)), dtype)
    args = [backend.asarray(a) for a in (x, w, b)]
    backend.conv2d(*args, padding=1, method="winograd", tile=4)  # transforms the weights once
    with backend.measure() as counted:
        y = backend.conv2d(*args, padding=1, method="winograd", tile=4)
    assert counted.kernels == ["winograd_input_transform", "gemm_batched", "winograd_output_transform"]
    tiles = 2 * 3 * 3
    assert counted.temp_bytes == dtype.itemsize * 36 * 70 * tiles + 4 * tile.splits * 36 * 6 * tiles
    want = ops.conv2d(x64, w64, b64, stride=(1, 1), padding=(1, 1))
    assert relative_frobenius_error(backend.to_numpy(y), want) < {4: 1e-5, 2: 5e-3}[dtype.itemsize]

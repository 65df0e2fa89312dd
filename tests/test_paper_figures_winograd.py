"""paper_figures/winograd.py: the Winograd tile table over SD 1.4's real 3x3 layers, and its figures."""

import csv
import math

import pytest

from paper_figures import winograd as section
from paper_figures.common import Scale


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("winograd")
    return out, section.build(out, Scale.named(quick=True))


def _rows(out):
    lines = [l for l in (out / "winograd_tiles.csv").read_text().splitlines() if not l.startswith("# ")]
    return list(csv.DictReader(lines))


def _row(rows, tile, points):
    (row,) = [r for r in rows if r["tile"] == tile and r["points"].split(" ")[0] == points]
    return row


def test_files_and_section(built):
    out, sec = built
    names = {p.name for p in sec.files}
    assert names == {"winograd_tiles.md", "winograd_tiles.csv", "winograd_error.png", "winograd_memory.png"}
    for p in sec.files:
        assert p.exists() and p.parent == out
    for png in ("winograd_error.png", "winograd_memory.png"):  # a real plot, not an empty canvas
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert sec.scaled_down and "error" in sec.scaled_down  # quick: the error is measured on a small shape
    assert sec.summary.startswith("F(4,3): 4.00x fewer multiplications")
    assert "F(4x4,3x3)" in (out / "winograd_tiles.md").read_text()


def test_rows_and_paper_choice(built):
    rows = _rows(built[0])
    keys = [(r["tile"], r["points"].split(" ")[0]) for r in rows]
    for key in [("direct", ""), ("F(2x2,3x3)", "lavin"), ("F(4x4,3x3)", "lavin"), ("F(6x6,3x3)", "lavin"),
                ("F(4x4,3x3)", "barabasz"), ("F(4x4,3x3)", "tflite"), ("F(6x6,3x3)", "integer")]:
        assert key in keys
    marked = [k for k, r in zip(keys, rows) if r["paper's choice"]]
    assert marked == [("F(4x4,3x3)", "lavin")]
    assert "[press]" in rows[keys.index(("F(4x4,3x3)", "lavin"))]["paper's choice"]


def test_reductions(built):
    rows = _rows(built[0])
    red = {m: float(_row(rows, f"F({m}x{m},3x3)", "lavin")["reduction both"]) for m in (2, 4, 6)}
    whole = {m: float(_row(rows, f"F({m}x{m},3x3)", "lavin")["whole-tile reduction"]) for m in (2, 4, 6)}
    assert float(_row(rows, "direct", "")["reduction both"]) == 1
    assert whole[6] > whole[4] > whole[2] > 1 and red[6] > red[4] > red[2] > 1
    assert whole == {2: 2.25, 4: 4.0, 6: 5.06}
    # SD's maps are powers of two: F(2,3) and F(4,3) tile them exactly; F(6,3) pads (8x8 -> 12x12)
    assert red[2] == 2.25 and red[4] == 4.0 and 4.0 < red[6] < 5.0
    assert float(_row(rows, "F(6x6,3x3)", "lavin")["reduction UNet"]) < 4.0  # the 8x8 and 16x16 maps


def test_cost_against_hand_counts():
    big = [("x", (1, 8, 96, 96, 8), 1, 1)]  # 96 = 2*48 = 4*24 = 6*16: whole tiles for every m
    for m, expected in ((2, 2.25), (4, 4.0), (6, 81 / 16)):
        assert section.network_cost(big, m)["reduction"] == pytest.approx(expected)
    # an 8x8 map, padding 1: F(6,3) needs 2x2 tiles of 8x8 = 256 products per (o, c) for 64 outputs x 9
    small = [("x", (1, 8, 8, 8, 8), 1, 3)]
    assert section.network_cost(small, 6)["reduction"] == pytest.approx(576 / 256)
    c = section.network_cost(small, 6)
    assert c["weight_bytes"] == 3 * 8 * 8 * 64 * 2 and c["weight_ratio"] == pytest.approx(64 / 9)
    assert c["largest_input_bytes"] == 4 * 64 * 8 * 2
    assert section.network_cost(small, None)["reduction"] == 1
    # the traced network: 28 distinct layers, 82 calls, padding 1
    layers = section.sd_layers()
    assert len(layers) == 28 and sum(n for *_, n in layers) == 82 and {p for _, _, p, _ in layers} == {1}


def test_memory_and_errors(built):
    rows = _rows(built[0])
    f = {m: _row(rows, f"F({m}x{m},3x3)", "lavin") for m in (2, 4, 6)}
    w = [float(f[m]["weights MB fp16"]) for m in (2, 4, 6)]
    assert float(_row(rows, "direct", "")["weights MB fp16"]) < w[0] < w[1] < w[2]
    assert [float(f[m]["weights vs 3x3"]) for m in (2, 4, 6)] == [1.78, 4.0, 7.11]
    fp16 = [float(f[m]["fp16 error"]) for m in (2, 4, 6)]
    fp32 = [float(f[m]["fp32 error"]) for m in (2, 4, 6)]
    direct16 = float(_row(rows, "direct", "")["fp16 error"])
    assert direct16 < fp16[0] < fp16[1] < fp16[2] < 0.05
    assert fp32[1] < fp32[2] and all(e < 1e-4 for e in fp32)
    integer = float(_row(rows, "F(6x6,3x3)", "integer")["fp32 error"])
    assert integer > 10 * fp32[2] or math.isnan(integer)  # the naive F(6,3) points lose


def test_device_times_from_the_committed_run(built):
    if not section.BENCH_RUNS:
        pytest.skip("no committed device run")
    rows = _rows(built[0])
    f4 = _row(rows, "F(4x4,3x3)", "lavin")
    assert float(f4["ms opencl fp16"]) > 0 and float(_row(rows, "cuDNN peer", "torch")["ms cuDNN fp16"]) > 0
    assert not _row(rows, "F(4x4,3x3)", "tflite")["ms opencl fp16"]  # the kernels use the default points only
    assert "commit" in (built[0] / "winograd_tiles.md").read_text()

"""The fusion section (paper_figures/fusion.py) and its experiment (experiments/fusion_counts.py):
the files it writes, the counters against the formula, and the per-pass totals against the trace."""

import csv
from collections import Counter

import pytest

from experiments import fusion_counts
from experiments.sd_shapes import sd14_calls
from paper_figures import fusion
from paper_figures.common import Scale


@pytest.fixture(scope="module")
def ocl():
    backend, why = fusion.open_backend("opencl")
    if backend is None:
        pytest.skip(f"OpenCL cannot start here: {why}")
    return backend


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion")
    return out, fusion.build(out, Scale.named(quick=True))


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("# ")))


def test_build_writes_its_files(section):
    out, sec = section
    names = {p.name for p in sec.files}
    for name in ("fusion_group_norm", "fusion_gelu", "fusion_totals", "fusion_latency"):
        assert {f"{name}.md", f"{name}.csv"} <= names
    assert "fusion.png" in names
    assert all(p.exists() and p.stat().st_size > 0 for p in sec.files)
    assert sec.title == fusion.TITLE and sec.summary and sec.scaled_down
    gn = read_rows(out / "fusion_group_norm.csv")
    assert len(gn) == sum(1 for l in fusion.traced_layers() if l.op == "group_norm")
    assert all(r["claim"].startswith("[press]") for r in gn)
    lat = read_rows(out / "fusion_latency.csv")
    if fusion.BENCH_RUNS:  # the committed H200 run's columns are filled
        assert all(r["h200_opencl_fused_ms"] and r["h200_opencl_unfused_ms"] for r in lat)


def test_section_counters_match_the_formula(section, ocl):
    out, _ = section
    for name in ("fusion_group_norm", "fusion_gelu"):
        rows = read_rows(out / f"{name}.csv")
        assert rows and all(r["match"] == "yes" for r in rows)
        assert all(r["fused_counted_launches"] == "1" for r in rows)
    # the fused GeGLU has no temporary; the fused GroupNorm only its (N, G, parts, 2) float32 partials
    assert all(r["fused_counted_temp_bytes"] == "0" for r in read_rows(out / "fusion_gelu.csv"))
    assert all(int(r["fused_counted_temp_bytes"]) % (8 * 32) == 0 for r in read_rows(out / "fusion_group_norm.csv"))


@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_counted_against_formula(ocl, silu):
    layer = fusion.Layer("unet", "group_norm", (2, 320, 64, 64), 1, groups=32, silu=silu)
    shape = fusion.scaled_shape(layer, side=2, tokens=2)
    assert shape == (2, 320, 2, 2)
    units = ocl.rt.device.max_compute_units
    # 4 elements per slab on the counted shape: one part, the (2, 32, 1, 2) float32 partials
    assert fusion.count(ocl, layer, shape, fused=True) == (1, 2 * 32 * 8) == fusion.formula(layer, True, shape=shape,
                                                                                         compute_units=units)
    # the real shape on the H200 (132 SMs): slabs of 10240 vectors in 10 parts (4 vectors per item)
    assert fusion.formula(layer, True) == (1, 2 * 32 * 10 * 8)
    launches, temp = fusion.count(ocl, layer, shape, fused=False)
    assert launches > 1 and temp > 0
    assert (launches, temp) == fusion.formula(layer, False, shape=shape) == (3 + silu, 12 * 2 * 32)


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_geglu_counted_against_formula(ocl, storage):
    layer = fusion.Layer("unet", "geglu", (2, 4096, 2560), 1)
    shape = fusion.scaled_shape(layer, side=2, tokens=3)
    assert fusion.count(ocl, layer, shape, fused=True, dtype=storage) == (1, 0)
    counted = fusion.count(ocl, layer, shape, fused=False, dtype=storage)
    assert counted == fusion.formula(layer, False, storage, shape) == (6, 6 * 2 * 3 * 1280 * (4 if storage == "float32" else 2))
    # the real shape's bytes scale with its rows
    assert fusion.formula(layer, False, storage)[1] == counted[1] * 4096 // 3


def test_network_totals_are_the_sum_over_the_traced_layers():
    rows = fusion.layer_counts(fusion.traced_layers())  # formula only: no backend needed
    totals = {(t["network"], t["op"]): t for t in fusion.network_totals(rows)}
    calls = sd14_calls()
    for network, ops in (("unet", ("group_norm", "geglu")), ("vae_decoder", ("group_norm",))):
        for op in ops:
            traced = Counter({c: n for c, n in calls[network].items() if c.op == op})
            t = totals[(network, op)]
            assert t["calls"] == sum(traced.values()) and t["layers"] == len(traced)
            assert t["fused_launches"] == t["calls"]
            assert (t["fused_temp_bytes"] == 0) == (op == "geglu")
            if op == "group_norm":
                want_launches = sum(n * (4 if c.kwarg("silu") else 3) for c, n in traced.items())
                want_bytes = sum(n * 12 * c.inputs[0][0] * c.kwarg("num_groups") for c, n in traced.items())
            else:
                want_launches = sum(n * 6 for c, n in traced.items())
                want_bytes = sum(n * 6 * 4 * c.inputs[0][0] * c.inputs[0][1] * c.inputs[0][2] // 2
                                 for c, n in traced.items())
            assert t["unfused_launches"] == want_launches and t["unfused_temp_bytes"] == want_bytes
            assert t["launches_saved"] == want_launches - t["calls"]
    # the inventory of paper.md: 61 + 30 GroupNorm layers, 16 GEGLU
    assert totals[("unet", "group_norm")]["calls"] == 61 and totals[("vae_decoder", "group_norm")]["calls"] == 30
    assert totals[("unet", "geglu")]["calls"] == 16


def test_experiment_main_writes_its_png(tmp_path, capsys):
    png = tmp_path / "counts.png"
    backend_name = "opencl" if fusion.open_backend("opencl")[0] is not None else "none"
    assert fusion_counts.main(["--backend", backend_name, "--shapes", "small", "--out", str(png)]) == 0
    assert png.exists() and png.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "group_norm+silu" in printed and "geglu" in printed and "per pass" in printed


def test_build_without_opencl_still_writes_formula_and_gpu_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(fusion, "open_backend", lambda name="opencl": (None, "no platform (test)"))
    sec = fusion.build(tmp_path, Scale.named(quick=True))
    assert (tmp_path / "fusion.png").exists() and "no OpenCL" in sec.summary
    assert "could not start" in (tmp_path / "fusion_group_norm.md").read_text()
    rows = read_rows(tmp_path / "fusion_group_norm.csv")
    assert all(r["match"] == "not counted" and r["unfused_temp_bytes"] for r in rows)
    if fusion.BENCH_RUNS:
        assert all(r["h200_opencl_fused_ms"] for r in read_rows(tmp_path / "fusion_latency.csv"))

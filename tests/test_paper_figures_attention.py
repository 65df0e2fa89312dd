"""paper_figures/attention.py (the attention section) and experiments/attention_variants.py."""

import csv

import pytest

from paper_figures import attention
from paper_figures.common import Scale


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("# ")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("attention")
    return out, attention.build(out, Scale.named(quick=True))


def test_build_writes_its_files(built):
    out, section = built
    names = {p.name for p in section.files}
    assert names == {"attention.md", "attention.csv", "attention.png"}
    assert all((out / n).stat().st_size > 0 for n in names)
    assert section.title and section.sentence and section.summary and section.scaled_down


def test_table_has_every_sd14_shape_and_variant(built):
    out, _ = built
    rows = _rows(out / "attention.csv")
    got = {(r["network"], int(r["B"]), int(r["H"]), int(r["N"]), int(r["M"]), int(r["d"]), r["variant"]) for r in rows}
    unet = [(4096, 40), (1024, 80), (256, 160), (64, 160)]
    expected = {("unet", 2, 8, n, m, d) for n, d in unet for m in (n, 77)} | {("vae_decoder", 1, 1, 4096, 4096, 512)}
    assert {g[:6] for g in got} == expected
    assert got == {e + (v,) for e in expected for v in ("naive", "partial_softmax", "flash")}
    counts = {(r["network"], r["N"], r["M"]): int(r["calls"]) for r in rows}
    assert counts[("unet", "4096", "4096")] == 5 and counts[("unet", "64", "77")] == 1
    assert counts[("vae_decoder", "4096", "4096")] == 1


def test_memory_formulas_by_hand():
    shape = (2, 8, 4096, 4096, 40, 40)
    scores = 2 * 8 * 4096 * 4096 * 2  # one fp16 N x M matrix per head: 512 MiB
    assert scores == 512 * 2**20
    assert attention.intermediate_bytes(shape, "naive", 2) == 2 * scores
    assert attention.intermediate_bytes(shape, "partial_softmax", 2) == scores + 2 * 8 * 4096 * 2 * 2
    assert attention.intermediate_bytes(shape, "flash", 2) == 0
    assert attention.intermediate_bytes(shape, "naive", 4) == 4 * scores
    for item in attention.sd14_attention_shapes():
        mem = [attention.intermediate_bytes(item["shape"], v, 2) for v in ("flash", "partial_softmax", "naive")]
        assert mem[0] < mem[1] < mem[2], item


def test_table_memory_column_matches(built):
    out, _ = built
    row = next(r for r in _rows(out / "attention.csv")
               if r["N"] == r["M"] == "4096" and r["d"] == "40" and r["variant"] == "naive")
    assert float(row["memory fp16 (MiB)"]) == 1024 and float(row["memory fp32 (MiB)"]) == 2048


def test_paper_rule_column(built):
    out, _ = built
    for r in _rows(out / "attention.csv"):
        assert r["paper: Adreno/Apple"] == ("flash" if r["d"] == "40" else "partial_softmax"), r
        assert r["paper: other GPUs"] == "partial_softmax"
        assert "flash" not in r["auto here"]  # no backend here is an Adreno or Apple GPU


def test_experiment_main_writes_png(tmp_path, capsys):
    from experiments import attention_variants

    png = tmp_path / "variants.png"
    rows = attention_variants.main(["--lengths", "8", "16", "--head-dims", "40", "--heads", "2",
                                    "--repeats", "1", "--out", str(png)])
    assert png.stat().st_size > 0
    assert {(r["N"], r["variant"]) for r in rows} == {(n, v) for n in (8, 16)
                                                      for v in ("naive", "partial_softmax", "flash")}
    assert all(r["ms"] is not None and r["ms"] > 0 for r in rows)
    assert "partial_softmax" in capsys.readouterr().out

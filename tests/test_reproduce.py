"""`make reproduce`'s quick path writes every table and figure, the index and the summary, with the
paper's numbers beside ours (the sections' own rows are tested in tests/test_paper_figures_*.py)."""

import csv

import pytest

from paper_figures import __main__ as reproduce
from paper_figures import paper_numbers


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    sections = reproduce.main(["--out", str(out), "--quick"])
    return out, sections


def test_every_section_writes_its_tables_and_figures(run):
    out, sections = run
    assert [s.title for s in sections] and len(sections) == len(reproduce.SECTIONS)
    for section in sections:
        suffixes = {p.suffix for p in section.files}
        assert {".md", ".csv", ".png"} <= suffixes, section.title
        for path in section.files:
            assert path.parent == out and path.stat().st_size > 200, path
            if path.suffix == ".csv":
                rows = list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))
                assert rows, f"{path.name} has no rows"
        assert section.sentence and section.summary and section.scaled_down  # quick is always scaled down


def test_the_index_shows_every_section_and_the_papers_numbers(run, capsys):
    out, sections = run
    index = (out / "index.md").read_text()
    for number, section in enumerate(sections, start=1):
        assert f"## {number}. {section.title}" in index
        for path in section.files:
            assert f"({path.name})" in index
    for claim in paper_numbers.CLAIMS:
        assert claim.cited in index
    assert "52.2% [press]" in index and "32.9% [press]" in index


def test_the_ablation_puts_the_papers_reductions_beside_ours(run):
    out, _ = run
    lines = [line for line in (out / "ablation.csv").read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    paper = [r for r in rows if r["configuration"] == "paper"]
    assert paper and all("52.2% [press]" in r["the paper's reduction"] for r in paper)
    assert all(r["reduction vs none"].endswith("%") for r in paper)
    committed = [r for r in rows if "H100" in r["source"]]
    assert {r["configuration"] for r in committed} >= {"none", "paper", "fused_group_norm", "winograd4"}
    for r in rows:  # total = text encoder + 20 iterations + decoder
        total = float(r["text encoder ms"]) / 1e3 + float(r["20 iterations s"]) + float(r["decoder ms"]) / 1e3
        assert float(r["total s"]) == pytest.approx(total, rel=1e-2)  # 3 significant digits each


def test_make_reproduce_full_passes_the_flag():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "$(if $(FULL),--full)" in makefile

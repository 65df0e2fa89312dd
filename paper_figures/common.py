"""What every section of ``make reproduce`` shares: its scale, its tables and figures, the
committed device runs it renders beside the local one.

A section is a module of paper_figures/ with ``build(out: Path, scale: Scale) -> Section``: it
writes its tables (Markdown and CSV, ``write_table``) and figures (PNG, ``figure``) into ``out``
and returns what it wrote with one sentence for the index.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the committed device runs of ``make bench`` (experiments/kernels.py) that tables render
BENCH_RUNS = sorted((ROOT / "experiments" / "results").glob("kernels_*_????-??-??.csv"))


@dataclass(frozen=True)
class Scale:
    """How much ``make reproduce`` computes. The default fits a 2-core CPU in minutes (reduced
    shapes, tiny networks, few seeds); ``full`` runs SD 1.4's shapes on whatever device is present.
    ``quick`` is the test suite's path: the smallest run that still writes every row."""

    full: bool = False
    quick: bool = False
    seeds: int = 3

    @classmethod
    def named(cls, full: bool = False, quick: bool = False) -> "Scale":
        return cls(full=full, quick=quick, seeds=1 if quick else 5 if full else 3)

    def describe(self) -> str:
        return "full SD 1.4 shapes" if self.full else "quick test run" if self.quick else \
            "reduced shapes for a CPU (make reproduce FULL=1 for SD 1.4's)"


@dataclass
class Section:
    """One part of the index: a title, one sentence, the files written, and what was scaled down."""

    title: str
    sentence: str
    files: list[Path] = field(default_factory=list)
    scaled_down: str | None = None
    summary: str | None = None  # one line for the printed summary


def write_table(out: Path, name: str, rows: list[dict], columns: list[str], title: str,
                notes: list[str] = ()) -> list[Path]:
    """``name``.md (title, notes, a Markdown table of ``columns``) and ``name``.csv (the same
    columns, the notes as leading ``# `` lines); values are written as given (format them first)."""
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / f"{name}.md", out / f"{name}.csv"
    lines = [f"# {title}", ""] + [line for n in notes for line in (n, "")]  # one paragraph per note
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    md.write_text("\n".join(lines) + "\n")
    with open(csv_path, "w", newline="") as f:
        for n in notes:
            f.write(f"# {n}\n")
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return [md, csv_path]


def figure(width: float = 6.0, height: float = 3.8, ncols: int = 1, nrows: int = 1):
    """A matplotlib (figure, axes) on the Agg backend: one Axes, or an (nrows, ncols) array of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=ncols == nrows == 1)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_bench(path: Path) -> tuple[dict, list[dict]]:
    """(header, rows) of a committed ``make bench`` CSV (experiments.kernels.read_csv)."""
    from experiments.kernels import read_csv

    return read_csv(path)


def fmt(value, digits: int = 3) -> str:
    """A number for a table: '' for None, 3 significant digits, or the value's own str."""
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)

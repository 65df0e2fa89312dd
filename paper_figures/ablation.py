"""The paper's ablation: Stable Diffusion per component, with no switch, each switch alone, and
all of them, beside the paper's latency reductions.

For each (backend, storage dtype, device) and each configuration of ``backends.optimizations.
ablation()`` (none, fused_group_norm, fused_gelu, partial_softmax, flash, winograd2/4/6, paper),
``experiments.sd_latency.measure`` times the text encoder, one UNet iteration (batch 2: guidance)
and the image decoder, and reads their peak memory. The paper's end-to-end number is

    total = text encoder + 20 x UNet iteration + decoder        (20 iterations, 512 x 512)

(our PNDM runs the UNet 21 times for 20 steps; the paper counts iterations, so do we here), and

    reduction = 1 - total(configuration) / total(none)

set beside the paper's 52.2% (Samsung S23 Ultra) and 32.9% (iPhone 14 Pro Max) [press]; what
those two are measured on (end-to-end or per step) and against which baseline is not known.

Rows come from two sources: this machine's run (by default tiny SD-shaped networks on the CPU
backends, since SD 1.4 takes minutes per configuration there; ``make reproduce FULL=1`` runs SD
1.4's shapes on every backend present), and the committed GPU runs of ``experiments.sd_latency``
(experiments/results/sd14_h200_2026-12-02/ and sd14_h100/, each described by a README or
experiments/results/sd14_h100.md; the JAX backend's runs of issue 13 in
experiments/results/issue13_h100_2026-12-07/ and issue13_h200_2026-12-07/, with ``best``, each
file one process), rendered with their device, date and commits. The notes add diffusers' eager
times from the same sessions (``PEERS``), the issue's yardstick for ``best``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from . import paper_numbers
from .common import ROOT, Scale, Section, figure, fmt, save, write_table

ITERATIONS = 20
COMPONENTS = ("text_encoder", "unet", "decoder")
#: the committed GPU runs: (file, (device, date, commits), backend, storage dtype)
H200 = ("NVIDIA H200, driver 580.159.04", "2026-12-02", "d6d263f")
H100 = ("NVIDIA H100 80GB HBM3, driver 580.159.04", "2026-11-25", "9a123b6..02379ed")
ISSUE13_H100 = "experiments/results/issue13_h100_2026-12-07"
ISSUE13_H200 = "experiments/results/issue13_h200_2026-12-07"
H100_1207 = ("NVIDIA H100 80GB HBM3, driver 580.159.04", "2026-12-07")  # + the run's commit
H200_1207 = ("NVIDIA H200, driver 580.159.04", "2026-12-07")
COMMITTED = [
    *[(f"experiments/results/sd14_h200_2026-12-02/sd_latency_{backend}_{dtype}.json", H200, backend, dtype)
      for backend in ("opencl", "jax") for dtype in ("float32", "float16")],
    ("experiments/results/sd14_h100/sd_latency_opencl_all.json", H100, "opencl", "float32"),
    ("experiments/results/sd14_h100/sd_latency_opencl_fp16.json", H100, "opencl", "float16"),
    ("experiments/results/sd14_h100/sd_latency_jax_all.json", H100, "jax", "float32"),
    (f"{ISSUE13_H100}/call20_50e618e/sd_latency_float16_all_default.json",
     (*H100_1207, "50e618e"), "jax", "float16"),
    (f"{ISSUE13_H100}/call21_50e618e/sd_latency_float16_best_default.json",  # best alone in its process
     (*H100_1207, "50e618e"), "jax", "float16"),
    (f"{ISSUE13_H100}/call11_19b7054/sd_latency_bfloat16_none+fused_group_norm+fused_gelu+partial_softmax+flash.json",
     (*H100_1207, "19b7054"), "jax", "bfloat16"),
    (f"{ISSUE13_H100}/call12_19b7054/sd_latency_float32_none+fused_group_norm+winograd4+paper_autolayout.json",
     (*H100_1207, "19b7054"), "jax", "float32"),
    (f"{ISSUE13_H200}/call16_0c87ce5/sd_latency_float16_none+flash+best_mosaic.json",
     (*H200_1207, "0c87ce5"), "jax", "float16"),
    (f"{ISSUE13_H200}/call15_0c87ce5/sd_latency_bfloat16_none+best_mosaic.json",
     (*H200_1207, "0c87ce5"), "jax", "bfloat16"),
]
#: diffusers' eager UNet iteration and decoder in the sessions above (experiments.diffusers_latency):
#: (file, device, storage dtype)
PEERS = [
    (f"{ISSUE13_H100}/call21_50e618e/diffusers_latency_float16.json", ", ".join(H100_1207), "float16"),
    (f"{ISSUE13_H100}/call11_19b7054/diffusers_latency_bfloat16.json", ", ".join(H100_1207), "bfloat16"),
    (f"{ISSUE13_H100}/call12_19b7054/diffusers_latency_float32.json", ", ".join(H100_1207), "float32"),
    (f"{ISSUE13_H200}/call15_0c87ce5/diffusers_latency_float16.json", ", ".join(H200_1207), "float16"),
]
COLUMNS = ["source", "shapes", "backend", "dtype", "configuration", "text encoder ms", "UNet ms / iteration",
           "20 iterations s", "decoder ms", "total s", "reduction vs none", "the paper's reduction",
           "text encoder peak MiB", "UNet peak MiB", "decoder peak MiB"]


def total_seconds(row: dict) -> float:
    return row["text_encoder_s"] + ITERATIONS * row["unet_s"] + row["decoder_s"]


def local_runs(scale: Scale) -> list[tuple[dict, list[dict]]]:
    """(group, rows) per backend and dtype measured here."""
    from backends import available_backends
    from backends.optimizations import ablation
    from experiments import sd_latency

    configs = list(ablation()) if not scale.quick else ["none", "paper"]
    plans = []  # (backend, dtype, configs)
    for name in available_backends():
        if name == "numpy":
            continue  # the numpy backend's switches compute the same reference: nothing to ablate
        if name == "jax" and not scale.full:
            plans.append((name, "float32", ["none", "paper"] if not scale.quick else []))  # a compile per config
            continue
        plans.append((name, "float32", configs))
        if scale.full:
            plans.append((name, "float16", configs))
    groups = []
    for name, dtype, names in plans:
        if not names:
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # its own progress table; ours is the section's
            rows = sd_latency.measure(name, names, tiny=not scale.full, iterations=1 if scale.quick else 3,
                                      batch=2, dtype=np.dtype(dtype))
        device = rows[0]["backend"].split("(")[1].split(",")[0].strip("'") if rows else ""
        groups.append(({"source": f"this machine ({device})", "shapes": "SD 1.4" if scale.full else "tiny SD-shaped",
                        "backend": name, "dtype": dtype}, rows))
    return groups


def committed_runs() -> list[tuple[dict, list[dict]]]:
    groups = []
    for path, (device, date, commits), backend, dtype in COMMITTED:
        rows = json.loads((ROOT / path).read_text())
        groups.append(({"source": f"{device}, {date}, commits {commits} ({path})", "shapes": "SD 1.4",
                        "backend": backend, "dtype": dtype}, rows))
    return groups


def peer_notes() -> list[str]:
    """A line per ``PEERS`` file: diffusers' eager times in the same session as our rows."""
    notes = []
    for path, device, dtype in PEERS:
        peer = json.loads((ROOT / path).read_text())
        notes.append(f"{peer['system']}, {device}, {dtype}: UNet iteration {fmt(peer['unet_ms'])} ms, decoder "
                     f"{fmt(peer['decoder_ms'])} ms ({path}; same session as this device's issue-13 rows, "
                     "not the same process).")
    return notes


def table_rows(groups) -> list[dict]:
    out = []
    for group, rows in groups:
        base = next((r for r in rows if r["config"] == "none"), None)
        for r in rows:
            total = total_seconds(r)
            reduction = None if base is None or r is base else 1 - total / total_seconds(base)
            paper = "; ".join(f"{claim.cited} ({device})" for device, _, claim in paper_numbers.REDUCTIONS) \
                if r["config"] == "paper" else ""
            out.append({**group, "configuration": r["config"],
                        "text encoder ms": fmt(r["text_encoder_s"] * 1e3), "UNet ms / iteration": fmt(r["unet_s"] * 1e3),
                        "20 iterations s": fmt(ITERATIONS * r["unet_s"]), "decoder ms": fmt(r["decoder_s"] * 1e3),
                        "total s": fmt(total), "reduction vs none": "" if reduction is None else f"{100 * reduction:.1f}%",
                        "the paper's reduction": paper,
                        **{f"{label} peak MiB": fmt(r.get(f"{c}_peak_mib"), 4)
                           for c, label in zip(COMPONENTS, ("text encoder", "UNet", "decoder"))},
                        "_total": total, "_reduction": reduction, "_row": r})
    return out


def plot(rows: list[dict], path: Path) -> Path:
    """One panel per (source, backend, dtype): stacked seconds per configuration."""
    groups = list(dict.fromkeys((r["source"], r["backend"], r["dtype"]) for r in rows))
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = figure(width=4.6 * ncols, height=4.0 * nrows, ncols=ncols, nrows=nrows)
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    for ax, key in zip(axes, groups):
        mine = [r for r in rows if (r["source"], r["backend"], r["dtype"]) == key]
        x = np.arange(len(mine))
        bottom = np.zeros(len(mine))
        for c, label in zip(COMPONENTS, ("text encoder", f"UNet x {ITERATIONS}", "decoder")):
            seconds = np.array([r["_row"][f"{c}_s"] * (ITERATIONS if c == "unet" else 1) for r in mine])
            ax.bar(x, seconds, bottom=bottom, label=label)
            bottom += seconds
        if mine[0]["shapes"] == "SD 1.4":
            ax.axhline(11.5, color="k", ls="--", lw=1, label="paper, S23 Ultra: 11.5 s [press]")
        ax.set_xticks(x, [r["configuration"] for r in mine], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("seconds (20 iterations)")
        ax.set_title(f"{key[1]} {key[2]}, {mine[0]['shapes']}\n{key[0].split(' (')[0][:48]}", fontsize=8)
        ax.legend(fontsize=7)
    return save(fig, path)


def build(out: Path, scale: Scale) -> Section:
    rows = table_rows(local_runs(scale) + committed_runs())
    notes = [f"total = text encoder + {ITERATIONS} x UNet iteration + decoder (UNet and text encoder on a batch of 2: "
             "classifier-free guidance); reduction = 1 - total / total(none), on the same backend, dtype and device.",
             "The paper's reductions (52.2% Samsung S23 Ultra, 32.9% iPhone 14 Pro Max) are [press]: secondary "
             "coverage of the paper; what they are measured on and against which baseline is unknown. The paper's "
             "per-component numbers (its Table 1) are not available to us.",
             "Committed GPU rows: experiments/results/sd14_h200_2026-12-02/README.md and sd14_h100.md say how they "
             "were measured (random weights, SD 1.4 shapes). Rows of this machine: " + scale.describe() + ".",
             "On a CPU the local rows time tiny networks, where kernel launches and host work dominate and JAX's "
             "Pallas kernels (the paper's switches) run in interpret mode: they show the machinery, not the paper's "
             "effect; the GPU rows (and `make reproduce FULL=1` on a GPU) are the ones to read against the paper.",
             *peer_notes(),
             "Generated by `make reproduce` (paper_figures/ablation.py)."]
    files = write_table(out, "ablation", rows, COLUMNS, "The ablation: SD per component, per switch", notes)
    files.append(plot(rows, out / "ablation.png"))
    paper_rows = [r for r in rows if r["configuration"] == "paper" and r["_reduction"] is not None]
    summary = "; ".join(f"{r['backend']} {r['dtype']} {r['shapes']} ({r['source'].split(',')[0].split(' (')[0]}): "
                        f"{100 * r['_reduction']:.1f}%" for r in paper_rows)
    return Section("The ablation: SD per component, per switch",
                   "Text encoder, UNet iteration, 20 iterations, decoder and total with no switch, each switch "
                   "alone and all of them, per backend and dtype, beside the paper's 52.2% and 32.9% reductions.",
                   files, scaled_down=None if scale.full else "tiny SD-shaped networks on this machine's backends "
                   "(JAX: none and paper only); the committed GPU rows are SD 1.4",
                   summary=f"paper switches cut the total by: {summary} (paper: 52.2% S23 Ultra, 32.9% iPhone)")

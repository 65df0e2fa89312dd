"""Winograd tile sizes over SD 1.4's real 3x3 layers: per tile F(m x m, 3 x 3) and point set, the
multiplication reduction and transformed memory summed over the UNet's and the VAE decoder's
3x3 stride-1 convolutions (traced, with how often each runs: experiments/sd_shapes.py), the
measured fp32 / fp16-storage error (reference/winograd.py), and the committed H200 device times
(experiments/results/kernels_*.csv).

The paper's argument for F(4x4, 3x3): a larger tile saves more multiplications, but memory and
numeric error grow with it; on SD's 8x8 maps F(6,3) also wastes most of its tile on padding.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from reference import winograd as wg

from .common import BENCH_RUNS, Scale, Section, figure, fmt, read_bench, save, write_table
from .paper_numbers import WINOGRAD_TILE

TILES = (2, 4, 6)
NETWORKS = ("unet", "vae_decoder")
#: bytes of one fp16 element (the paper's storage precision)
FP16 = 2
MB = 1e6


def point_set_cases() -> list[tuple[int, str]]:
    """(m, point set): each tile with the default points first, then for every other tile the sets
    of POINT_SETS whose points differ from the default's (identical sets would repeat a row)."""
    cases = [(m, "lavin") for m in TILES]
    for m in TILES:
        for name, table in wg.POINT_SETS.items():
            if name != "lavin" and m in table and tuple(table[m]) != tuple(wg.POINT_SETS["lavin"][m]):
                cases.append((m, name))
    return cases


# -- the layers and their cost --------------------------------------------------------------------


def sd_layers() -> list[tuple[str, tuple[int, int, int, int, int], int, int]]:
    """[(network, (N, C, H, W, O), padding, count per evaluation)]: every distinct 3x3 stride-1
    convolution of one UNet evaluation (batch 2) and one VAE decode, from the traces."""
    from experiments.sd_shapes import is_conv3x3_stride1, trace_unet, trace_vae_decoder

    layers = []
    for network, trace in zip(NETWORKS, (trace_unet, trace_vae_decoder)):
        counts = Counter()
        for call in trace():
            if is_conv3x3_stride1(call):
                ph, pw = call.kwarg("padding")
                if ph != pw:
                    raise ValueError(f"{network}: a 3x3 convolution with padding {(ph, pw)}; expected square padding")
                counts[(call.inputs[0] + (call.weights[0][0],), ph)] += 1
        layers += [(network, shape, pad, n) for (shape, pad), n in counts.items()]
    return layers


def network_cost(layers, m: int | None) -> dict:
    """Multiplications and memory of ``layers`` ([(network, (N, C, H, W, O), padding, count)]) under
    F(m, 3), or direct convolution for ``m`` None: GEMM multiplications (direct and Winograd, ragged
    edge tiles padded to whole tiles), weight bytes (fp16; transformed for Winograd, summed over the
    layers: each call is its own layer), the largest transformed-input temporary (fp16 bytes)."""
    direct = wino = weights = weights3x3 = 0
    largest, largest_layer = 0, None
    for _, (n, c, h, w, o), pad, count in layers:
        cost = wg.winograd_cost(c, o, h, w, m=m or 2, padding=pad, batch=n)
        direct += count * cost.direct_mults
        wino += count * (cost.direct_mults if m is None else cost.winograd_mults)
        weights3x3 += count * cost.weight_elements * FP16
        weights += count * (cost.weight_elements if m is None else cost.transformed_weight_elements) * FP16
        temp = 0 if m is None else cost.transformed_input_elements * c * FP16
        if temp > largest:
            largest, largest_layer = temp, (n, c, h, w, o)
    return dict(direct_mults=direct, mults=wino, reduction=direct / wino, weight_bytes=weights,
                weight_ratio=weights / weights3x3, weight3x3_bytes=weights3x3,
                largest_input_bytes=largest, largest_input_layer=largest_layer)


def whole_tile_reduction(m: int, r: int = 3) -> float:
    """m^2 r^2 / (m + r - 1)^2: the reduction when every tile is whole (2.25, 4, 5.06 for m = 2, 4, 6)."""
    return m * m * r * r / (m + r - 1) ** 2


# -- the error ------------------------------------------------------------------------------------


def error_shapes(scale: Scale) -> tuple[list[tuple[int, int, int]], int, str | None]:
    """([(C, H = W, O)], seeds, what was reduced or None): where the error is measured."""
    if scale.full:  # a few real SD 1.4 layers at batch 1: UNet 8x8 and 16x16, decoder 64x64
        return [(1280, 8, 1280), (640, 16, 1280), (512, 64, 512)], min(scale.seeds, 2), None
    if scale.quick:
        return [(16, 16, 16)], 1, "error on 16 channels, 16x16 maps, 1 seed (not SD's layer shapes)"
    return [(32, 16, 32)], scale.seeds, f"error on 32 channels, 16x16 maps, {scale.seeds} seeds (not SD's layer shapes)"


def measure_errors(shapes, seeds: int, cases, dtypes=("float32", "float16")) -> dict:
    """{(m or None for direct, points, dtype): median relative Frobenius error} over shapes x seeds,
    each against float64 direct convolution of the same rounded inputs (fp16: fp16 storage, fp32
    arithmetic, as conv2d_winograd documents)."""
    errs: dict = {}
    for ci, (c, size, o) in enumerate(shapes):
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * ci + seed)
            x = rng.standard_normal((1, c, size, size))
            w = rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)
            for dtype in dtypes:
                xr, wr = x.astype(dtype), w.astype(dtype)
                y = wg.conv2d(xr.astype(np.float64), wr.astype(np.float64), padding=1)
                errs.setdefault((None, None, dtype), []).append(
                    wg.relative_frobenius_error(wg.conv2d(xr, wr, padding=1), y))
                for m, points in cases:
                    with np.errstate(over="ignore", invalid="ignore"):  # fp16 may overflow: a result
                        y_hat = wg.conv2d_winograd(xr, wr, padding=1, m=m, points=points)
                        errs.setdefault((m, points, dtype), []).append(wg.relative_frobenius_error(y_hat, y))
    return {k: float(np.median(v)) for k, v in errs.items()}


# -- the committed device times -------------------------------------------------------------------

VARIANTS = {None: "direct", 2: "winograd2", 4: "winograd4", 6: "winograd6"}
BACKENDS = ("opencl", "jax")
DTYPES = ("float16", "float32")
PEER = ("F.conv2d (cuDNN)", "torch")


def time_column(backend: str, dtype: str) -> str:
    return f"ms {backend} {'fp16' if dtype == 'float16' else 'fp32'}"


def bench_times(layers, run: Path | None = None) -> tuple[dict, list[str]]:
    """({(variant, backend, dtype): ms per UNet evaluation + VAE decode}, notes) from a committed
    ``make bench`` run (the newest of BENCH_RUNS): each shape's device_ms times how often the
    networks call it, summed over the shapes that every backend and variant measured in that dtype
    (so one dtype's columns compare like with like)."""
    run = run or (BENCH_RUNS[-1] if BENCH_RUNS else None)
    if run is None:
        return {}, ["No committed device run (experiments/results/kernels_*.csv): no times."]
    header, rows = read_bench(run)
    counts = {str(shape): count for _, shape, _, count in layers}
    ms = {(r["shape"], r["variant"], r["backend"], r["dtype"]): r["device_ms"] for r in rows
          if r["op"] == "conv3x3" and r.get("check") == "ok" and "device_ms" in r}
    times, notes = {}, []
    devices = "; ".join(header[k] for k in ("device opencl", "device jax", "device torch") if k in header)
    notes.append(f"Times: {run.name} ({devices}; {header.get('date', '?')}; commit {header.get('commit', '?')}); "
                 "device_ms per call times the calls per UNet evaluation (batch 2) + one VAE decode, summed.")
    for dtype in DTYPES:
        keys = [(v, b) for b in BACKENDS for v in VARIANTS.values()] + [PEER]
        shapes = [s for s in counts if all((s, v, b, dtype) in ms for v, b in keys)]
        for v, b in keys:
            if shapes:
                times[(v, b, dtype)] = sum(counts[s] * ms[(s, v, b, dtype)] for s in shapes)
        calls = sum(counts[s] for s in shapes)
        notes.append(f"{dtype}: over the {len(shapes)} of {len(counts)} distinct shapes ({calls} of "
                     f"{sum(counts.values())} calls) that every backend and variant measured.")
    return times, notes


# -- the section ----------------------------------------------------------------------------------

COLUMNS = ["tile", "points", "paper's choice", "whole-tile reduction", "reduction UNet", "reduction decoder",
           "reduction both", "weights MB fp16", "weights vs 3x3", "largest input temp MB fp16",
           "fp32 error", "fp16 error"] + [time_column(b, d) for d in DTYPES for b in BACKENDS] + \
          ["ms cuDNN fp16", "ms cuDNN fp32"]


def build(out: Path, scale: Scale) -> Section:
    layers = sd_layers()
    cases = point_set_cases()
    shapes, seeds, reduced = error_shapes(scale)
    errors = measure_errors(shapes, seeds, cases)
    times, time_notes = bench_times(layers)

    rows, costs = [], {}
    for m, points in [(None, None)] + cases:
        cost = {net: network_cost([l for l in layers if l[0] == net], m) for net in NETWORKS}
        both = costs[m] = network_cost(layers, m)
        default = points in (None, "lavin")
        row = {
            "tile": "direct" if m is None else f"F({m}x{m},3x3)",
            "points": "" if m is None else points + (" (default)" if points == "lavin" else ""),
            "paper's choice": "yes [press]" if m == WINOGRAD_TILE and points == "lavin" else "",
            "whole-tile reduction": fmt(1.0 if m is None else whole_tile_reduction(m)),
            "reduction UNet": fmt(cost["unet"]["reduction"]),
            "reduction decoder": fmt(cost["vae_decoder"]["reduction"]),
            "reduction both": fmt(both["reduction"]),
            "weights MB fp16": fmt(both["weight_bytes"] / MB),
            "weights vs 3x3": fmt(both["weight_ratio"]),
            "largest input temp MB fp16": fmt(both["largest_input_bytes"] / MB),
            "fp32 error": fmt(errors[(m, points, "float32")], 2),
            "fp16 error": fmt(errors[(m, points, "float16")], 2),
        }
        if default:
            for d in DTYPES:
                for b in BACKENDS:
                    row[time_column(b, d)] = fmt(times.get((VARIANTS[m], b, d)))
        rows.append(row)
    rows.append({"tile": "cuDNN peer", "points": "torch F.conv2d (its own algorithm choice)",
                 "ms cuDNN fp16": fmt(times.get((*PEER, "float16"))),
                 "ms cuDNN fp32": fmt(times.get((*PEER, "float32")))})

    n_layers = sum(count for *_, count in layers)
    error_where = ("the real SD layer shapes (C, H=W, O) " + ", ".join(map(str, shapes)) + " at batch 1"
                   if reduced is None else "a reduced shape, " + ", ".join(f"{c} channels in, {o} out, {h}x{h}"
                                                                 for c, h, o in shapes))
    largest = costs[6]["largest_input_layer"]
    notes = [
        f"Layers: the {len(layers)} distinct 3x3 stride-1 convolutions ({n_layers} calls) of one SD 1.4 UNet "
        "evaluation (batch 2, 64x64 latents) and one VAE decode (64x64 -> 512x512), traced by "
        "experiments/sd_shapes.py; padding 1 in all.",
        "Reduction: direct / Winograd GEMM multiplications (reference.winograd.winograd_cost), summed over the "
        "calls, ragged edge tiles padded to whole tiles (on the 8x8 maps F(6,3) computes 12x12 outputs for 8x8). "
        "'whole-tile reduction' is m^2 9 / (m+2)^2, what an infinitely large map would give.",
        "Memory: transformed weights (m+2)^2 per 3x3 kernel, fp16, summed over the layers; largest transformed "
        f"input V (tiles x (m+2)^2 x C, fp16) over the layers (for F(6,3): layer (N, C, H, W, O) {largest}).",
        f"Error: median relative Frobenius error against float64 direct convolution of the same rounded inputs, "
        f"on {error_where}; {seeds} seed(s); inputs N(0,1), weights N(0, 1/(9C)); fp16 = fp16 storage of "
        "inputs, transforms and products with fp32 arithmetic.",
        "Paper's choice [press]: F(4x4, 3x3) (paper_figures/paper_numbers.py WINOGRAD_TILE). Point sets: "
        "reference/winograd.py POINT_SETS; the device kernels use the default (lavin) points only.",
    ] + time_notes
    files = write_table(out, "winograd_tiles", rows, COLUMNS,
                        "Winograd tile sizes over SD 1.4's real 3x3 layers", notes)
    files.append(_error_figure(out / "winograd_error.png", errors, cases))
    files.append(_memory_figure(out / "winograd_memory.png", costs, layers))

    f4 = costs[4]
    summary = (f"F(4,3): {f4['reduction']:.2f}x fewer multiplications over SD 1.4's 3x3 layers "
               f"(F(2,3) {costs[2]['reduction']:.2f}x, F(6,3) {costs[6]['reduction']:.2f}x), "
               f"fp16 error {errors[(4, 'lavin', 'float16')]:.1e} (direct {errors[(None, None, 'float16')]:.1e})")
    t4, td = times.get(("winograd4", "opencl", "float16")), times.get(("direct", "opencl", "float16"))
    if t4 and td:
        summary += f"; H200 opencl fp16 {t4:.1f} ms vs direct {td:.1f} ms"
    return Section(
        title="Winograd tile sizes over SD 1.4's real 3x3 layers",
        sentence="Per Winograd tile size and point set: multiplications saved, transformed memory and numeric "
                 "error over every 3x3 convolution of SD 1.4's UNet and VAE decoder, with the committed H200 times.",
        files=files,
        scaled_down=reduced,
        summary=summary,
    )


def _error_figure(path: Path, errors: dict, cases) -> Path:
    fig, ax = figure(6.0, 3.8)
    colors = {"float32": "C0", "float16": "C1"}
    labels = {"float32": "fp32", "float16": "fp16 storage"}
    for dtype in DTYPES[::-1]:
        ax.semilogy(TILES, [errors[(m, "lavin", dtype)] for m in TILES], "o-", color=colors[dtype],
                    label=f"{labels[dtype]}, default points")
        ax.axhline(errors[(None, None, dtype)], color=colors[dtype], ls="--", lw=1,
                   label=f"{labels[dtype]}, direct convolution")
        others = [(m, p) for m, p in cases if p != "lavin" and np.isfinite(errors[(m, p, dtype)])]
        for i, (m, p) in enumerate(others):
            ax.semilogy([m], [errors[(m, p, dtype)]], "x", color=colors[dtype])
            ax.annotate(p, (m, errors[(m, p, dtype)]), textcoords="offset points",
                        xytext=(6, 4 if i % 2 else -9), fontsize=7)
    ax.set_xticks(TILES, [f"F({m},3)" for m in TILES])
    ax.set_ylabel("relative error vs float64")
    ax.set_title("Winograd error grows with the tile (x: other point sets)")
    ax.legend(fontsize=7)
    return save(fig, path)


def _memory_figure(path: Path, costs: dict, layers) -> Path:
    fig, ax = figure(6.0, 3.8)
    ax.semilogy(TILES, [costs[m]["weight_bytes"] / MB for m in TILES], "o-", color="C0",
                label="transformed weights, summed over the layers")
    ax.axhline(costs[None]["weight_bytes"] / MB, color="C0", ls="--", lw=1, label="3x3 weights (direct)")
    ax.semilogy(TILES, [costs[m]["largest_input_bytes"] / MB for m in TILES], "s-", color="C1",
                label="largest transformed input V over the layers")
    largest_map = max(n * c * h * w for _, (n, c, h, w, _o), _p, _c in layers) * FP16 / MB
    ax.axhline(largest_map, color="C1", ls="--", lw=1, label="largest input activation (direct)")
    ax.set_xticks(TILES, [f"F({m},3)" for m in TILES])
    ax.set_ylabel("MB, fp16")
    ax.set_title("Winograd memory over SD 1.4's 3x3 layers")
    ax.legend(fontsize=7)
    return save(fig, path)

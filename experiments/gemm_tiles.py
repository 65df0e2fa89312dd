"""The OpenCL matrix core's tile table: every candidate tile (backends/opencl/gemm.py ``TILES``)
timed on every GEMM of SD 1.4, the fastest written to ``backends/opencl/gemm_tiles.json``.

    python -m experiments.gemm_tiles                      # all shapes, fp32 and fp16 storage
    python -m experiments.gemm_tiles --sources linear --dtypes float32 --no-write
    python -m experiments.gemm_tiles --compare-vectors   # the table's tiles, vector vs scalar loads

The GEMMs ("sources"), each at SD 1.4's shapes (experiments/sd_shapes.py):

    linear       the UNet's linear layers: m = rows, n = out, k = in (B = W^T, k-unit stride)
    winograd2|4|6  the batched stage of Winograd F(m, 3) per 3x3 layer: batch alpha^2, m = O,
                 n = tiles, k = C (B = V, n-unit stride)
    conv         the direct 3x3 convolution as an implicit GEMM: m = O, n = N*H*W, k = 9C
    attention    attention's two products per attention shape, unsplit: the scores (attention_scores,
                 m = N queries, n = M keys, k = d, batch B*H) and the fused softmax's P V
                 (attention_pv_softmax, m = N, n = dv, k = M)

Method: seeded random operands (never zeros); one call per tile to build its kernel, checked
against the first tile's output (relative Frobenius error under 1e-5 in fp32 storage, 2e-3 in
fp16; a tile that disagrees is dropped and reported); then ``--repeats`` calls, each timed by
its profiling events (a split-K tile's time includes its reduction launch), and the median.
Split-K tiles are tried only where the unsplit tile's grid has fewer than ``gemm.SPLIT_BELOW``
work-groups, and never for attention. The table entry per (kind, dtype, shape) is the fastest
tile. The CSV beside the JSON (``--out``) holds every measurement.

``--compare-vectors``: per shape, the tile the table picks, timed with the vector loads the layout
allows (gemm.py ``vector_width``) and with scalar loads (``vectors=False``), both checked against
each other; a CSV ``gemm_vectors_<device>_<date>.csv``, the table untouched.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from dataclasses import replace
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from backends.opencl import gemm
from backends.opencl.runtime import Runtime
from reference.numerics import relative_frobenius_error

from . import sd_shapes

SOURCES = ("linear", "winograd2", "winograd4", "winograd6", "conv", "attention")
AGREE = {"float32": 1e-5, "float16": 2e-3}


def gemm_shapes(source: str) -> dict:
    """{(m, n, k, batch): the layer shape it comes from} for every GEMM of a source at SD 1.4's
    shapes (a linear's (rows, in, out), a convolution's (N, C, H, W, O)), without repeats."""
    if source == "linear":
        return {(rows, out, fin, 1): (rows, fin, out) for rows, fin, out in sd_shapes.linear_shapes()}
    if source == "attention":  # layer: (the product, (B, H, N, M, d, dv))
        shapes = {}
        for b, h, n, m, d, dv in sd_shapes.attention_shapes():
            shapes[(n, m, d, b * h)] = ("attention_scores", (b, h, n, m, d, dv))
            shapes[(n, dv, m, b * h)] = ("attention_pv_softmax", (b, h, n, m, d, dv))
        return shapes
    convs = sd_shapes.conv3x3_shapes()
    if source == "conv":
        return {(o, n * h * w, 9 * c, 1): (n, c, h, w, o) for n, c, h, w, o in convs}
    m = int(source[-1])
    return {(o, n * -(-h // m) * -(-w // m), c, (m + 2) ** 2): (n, c, h, w, o) for n, c, h, w, o in convs}


class Problem:
    """The device operands of one GEMM, and a call of it with a given tile."""

    def __init__(self, rt: Runtime, source: str, shape, layer, dtype: str, seed: int):
        self.rt, self.source, self.shape, self.dtype = rt, source, shape, np.dtype(dtype)
        rng = np.random.default_rng(seed)
        m, n, k, batch = shape
        normal = lambda *s: rt.to_device(rng.standard_normal(s, dtype=np.float32).astype(self.dtype))  # noqa: E731
        if source == "conv":
            img, c, h, w, _ = layer
            self.x, self.w = normal(img, c, h, w), normal(m, c, 3, 3)
            self.out = rt.empty((img, m, h, w), self.dtype)
        elif source == "attention":  # scores: Q (batch, m, k) and K (batch, n, k); P V: the scores, stats, V
            self.product = layer[0]
            if self.product == "attention_scores":
                self.a, self.b = normal(batch, m, k), normal(batch, n, k)
                self.out = rt.empty((batch, m, n), np.float32)
            else:
                scores = rng.standard_normal((batch, m, k), dtype=np.float32)
                row_max = scores.max(axis=-1)
                stats = np.stack([row_max, np.exp(scores - row_max[..., None]).sum(axis=-1)], axis=-1)
                self.a, self.stats = rt.to_device(scores), rt.to_device(stats.astype(np.float32))
                self.b = normal(batch, k, n)
                self.out = rt.empty((batch, m, n), self.dtype)
        else:
            self.a, self.b = normal(batch, m, k), normal(batch, k, n)
            self.out = rt.empty((batch, m, n), self.dtype)

    def __call__(self, tile, vectors: bool = True):
        m, n, k, batch = self.shape
        a_strides, b_strides = self.strides()
        if self.source == "conv":
            gemm.conv2d_implicit_gemm(self.rt, self.x, self.w, None, self.out, (1, 1), (1, 1), tile=tile,
                                      vectors=vectors)
        elif self.source == "attention":
            if self.product == "attention_scores":
                args = (self.a, self.b, self.out, m, n, k, 1.0)
            else:
                args = (self.a, self.stats, self.b, self.out, m, k, n)
            kernel, grid, local = gemm.attention_product(self.rt, self.product, self.dtype, m, n, k, batch,
                                                         a_strides, b_strides, causal=False, tile=tile, vectors=vectors)
            self.rt.launch(kernel, grid, local, *args)
        else:  # the linears' B = W^T: the (n, k) weights read with swapped strides
            gemm.gemm_batched(self.rt, self.a, self.b, self.out, m, n, k, batch, a_strides, b_strides,
                              (m * n, n, 1), tile=tile, vectors=vectors)

    def strides(self):
        """The (A, B) (batch, row, col) strides of the call."""
        m, n, k, batch = self.shape
        if self.source == "conv":
            return (0, k, 1), (0, n, 1)
        if self.source == "linear":
            return (0, k, 1), (0, 1, k)
        if self.source == "attention" and self.product == "attention_scores":
            return (m * k, k, 1), (n * k, 1, k)
        return (m * k, k, 1), (k * n, n, 1)

    @property
    def kind(self) -> str:
        return self.source if self.source in ("conv", "attention") else "gemm"

    def flops(self) -> int:
        m, n, k, batch = self.shape
        return 2 * m * n * k * batch


def time_tile(rt: Runtime, problem: Problem, tile, repeats: int, vectors: bool = True) -> float:
    """Median device seconds of one call (its profiling events)."""
    times = []
    for _ in range(repeats):
        with rt.measure() as counted:
            problem(tile, vectors)
        times.append(counted.device_seconds())
    return statistics.median(times)


def compare_vectors(rt: Runtime, args) -> int:
    """``--compare-vectors``: the table's tile per shape, vector loads against scalar loads."""
    device = rt.device.name
    stamp = datetime.now(timezone.utc)
    path = args.out / f"gemm_vectors_{device.replace(' ', '-').lower()}_{stamp:%Y-%m-%d}.csv"
    rows = []
    for source in args.sources:
        for dtype in args.dtypes:
            for i, (shape, layer) in enumerate(list(gemm_shapes(source).items())[:args.limit]):
                problem = Problem(rt, source, shape, layer, dtype, seed=i)
                m, n, k, batch = shape
                tile = gemm.choose_tile(rt, problem.kind, dtype, m, n, k, batch)
                if source == "attention":
                    tile = replace(tile, splits=1)
                widths = gemm._layout(tile, m, n, k, *problem.strides(), vectors=True)
                if source == "conv":
                    widths["VB"] = 1
                outs, secs = [], {}
                for vectors in (True, False):
                    problem(tile, vectors)
                    outs.append(problem.out.get().astype(np.float64))
                    secs[vectors] = time_tile(rt, problem, tile, args.repeats, vectors)
                err = relative_frobenius_error(outs[0], outs[1])
                rows.append({"source": source, "dtype": dtype, "m": m, "n": n, "k": k, "batch": batch,
                             "tile": tile.name, "VA": widths["VA"], "VB": widths["VB"],
                             "vector_ms": f"{secs[True] * 1e3:.5g}", "scalar_ms": f"{secs[False] * 1e3:.5g}",
                             "scalar/vector": f"{secs[False] / secs[True]:.3f}",
                             "agree": "ok" if err < AGREE[dtype] else f"FAIL {err:.2e}"})
                print(",".join(str(v) for v in rows[-1].values()), flush=True)
                del problem
    with path.open("w", newline="") as f:
        f.write(f"# device: {device} ({rt.device.platform.name}), driver {rt.device.driver_version}\n")
        f.write(f"# date: {stamp:%Y-%m-%d %H:%M} UTC; repeats: {args.repeats} (median of profiling events)\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0 if all(r["agree"] == "ok" for r in rows) else 1


def write(rt, args, csv_path: Path, rows: list, best: dict, stamp, seconds: float, final: bool) -> None:
    """The CSV of every measurement so far, and (unless --no-write) the table's entries of this
    device updated with the fastest tile per shape so far: rewritten after every shape, so a run
    stopped by a time limit keeps what it measured."""
    device = rt.device.name
    with csv_path.open("w", newline="") as f:
        f.write(f"# device: {device} ({rt.device.platform.name}), driver {rt.device.driver_version}\n")
        f.write(f"# date: {stamp:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s{'' if final else ' (partial)'}\n")
        f.write(f"# repeats: {args.repeats} (median of profiling events)\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if args.no_write:
        return
    path = gemm.TABLE_PATH
    data = json.loads(path.read_text()) if path.exists() else {"devices": {}}
    entries = {(e["kind"], e["dtype"], e["m"], e["n"], e["k"], e["batch"]): e for e in data["devices"].get(device, [])}
    for (kind, dtype, m, n, k, batch), (tile, secs) in best.items():
        entries[(kind, dtype, m, n, k, batch)] = {"kind": kind, "dtype": dtype, "m": m, "n": n, "k": k,
                                                  "batch": batch, "tile": tile, "device_ms": round(secs * 1e3, 5)}
    data["devices"][device] = sorted(entries.values(), key=lambda e: (e["kind"], e["dtype"], e["m"], e["n"],
                                                                      e["k"], e["batch"]))
    data.setdefault("about", "The fastest tile per GEMM shape, measured by python -m experiments.gemm_tiles "
                             "(backends/opencl/gemm.py reads it).")
    measured = data.setdefault("measured", {})
    runs = [r for r in measured.get(device, "").split("; ") if r and csv_path.name not in r]
    measured[device] = "; ".join(runs + [f"{stamp:%Y-%m-%d}: {csv_path.name}{'' if final else ' (partial)'}"])
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "float16"), default=["float32", "float16"])
    parser.add_argument("--tiles", nargs="+", default=None, help="tile names (default: gemm.TILES)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="at most this many shapes per source")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("--no-write", action="store_true", help="do not update backends/opencl/gemm_tiles.json")
    parser.add_argument("--compare-vectors", action="store_true",
                        help="time the table's tiles with vector and with scalar loads instead of tuning")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    tiles = [gemm.GemmTile.parse(t) for t in args.tiles] if args.tiles else list(gemm.TILES)

    rt = Runtime.for_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.compare_vectors:
        return compare_vectors(rt, args)
    tiles = [t for t in tiles if t.threads <= rt.max_work_group_size and t.local_bytes <= rt.local_mem_size]
    device = rt.device.name
    stamp = datetime.now(timezone.utc)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"gemm_tiles_{device.replace(' ', '-').lower()}_{stamp:%Y-%m-%d}_{'-'.join(args.sources)}.csv"
    rows, best = [], {}
    started = time.perf_counter()
    for source in args.sources:
        shapes = list(gemm_shapes(source).items())[:args.limit]
        for dtype in args.dtypes:
            for i, (shape, layer) in enumerate(shapes):
                problem = Problem(rt, source, shape, layer, dtype, seed=i)
                reference, timed = None, {}
                for tile in tiles:
                    if tile.splits > 1 and source == "attention":
                        continue  # never split
                    if tile.splits > 1 and replace(tile, splits=1).groups(
                            shape[0], shape[1], shape[3]) >= gemm.SPLIT_BELOW:
                        continue  # enough tiles of C to fill the device unsplit
                    problem(tile)
                    out = problem.out.get().astype(np.float64)
                    if reference is None:
                        reference = out
                    err = relative_frobenius_error(out, reference)
                    if not err < AGREE[dtype]:
                        print(f"  {source} {shape} {dtype} {tile.name}: disagrees with {tiles[0].name} "
                              f"(error {err:.2e}); dropped")
                        continue
                    seconds = time_tile(rt, problem, tile, args.repeats)
                    timed[tile.name] = seconds
                    rows.append({"source": source, "kind": problem.kind, "dtype": dtype, "m": shape[0],
                                 "n": shape[1], "k": shape[2], "batch": shape[3], "tile": tile.name,
                                 "device_ms": f"{seconds * 1e3:.5g}",
                                 "TFLOP/s": f"{problem.flops() / seconds / 1e12:.4g}"})
                fastest = min(timed, key=timed.get)
                key = (problem.kind, dtype) + tuple(shape)
                if key not in best or timed[fastest] < best[key][1]:
                    best[key] = (fastest, timed[fastest])
                print(f"{source} {dtype} m,n,k,batch={shape}: {fastest} {timed[fastest] * 1e3:.4g} ms "
                      f"({problem.flops() / timed[fastest] / 1e12:.3g} TFLOP/s); "
                      f"default {gemm.DEFAULT_TILE.name} {timed.get(gemm.DEFAULT_TILE.name, float('nan')) * 1e3:.4g} ms",
                      flush=True)
                del problem
                write(rt, args, csv_path, rows, best, stamp, time.perf_counter() - started, final=False)
    write(rt, args, csv_path, rows, best, stamp, time.perf_counter() - started, final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

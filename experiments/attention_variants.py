"""The three attention variants side by side on one backend: latency and intermediate memory vs
sequence length and head dimension.

    python -m experiments.attention_variants                       # OpenCL, float32, N = 64..1024
    python -m experiments.attention_variants --backend jax --lengths 128 512 --head-dims 40 160
    python -m experiments.attention_variants --dtype float16 --heads 8 --batch 2 --out att.png

For each N in --lengths (self-attention, M = N) and d in --head-dims, with --batch x --heads
heads: naive (stores the N x M scores A and probabilities P), the paper's partially fused
softmax (stores A and the N x 2 row statistics) and FlashAttention (stores neither; its tiles
stay on chip), timed with ``backend.compile`` + ``backend.time`` (device time where the backend
has a timer), printed as a table and plotted (--out: latency and memory, log-log, one line per
variant and head dim). Memory: the formulas of paper_figures/attention.py in the storage dtype;
our kernels keep A, P and the statistics in float32 whatever that dtype is. The functions are
paper_figures/attention.py's (one implementation); ``make reproduce`` renders SD 1.4's shapes.

Questions to try:

* At which N does the naive score matrix stop fitting in the last-level cache (a few MiB per
  core here; tens of MiB on a GPU's L2) and in device memory? naive stores 2 B H N^2 b bytes:
  at N = 4096, 8 heads, batch 2, fp16 that is 1 GiB per call, on a phone that shares its memory
  with everything else.
* Does the partially fused softmax gain anything where A is stored anyway? It saves P and one
  pass over it; it still writes and reads A once.
* Why does the paper use FlashAttention only at d = 40? Flash keeps a block of Q rows and a
  dv-wide accumulator per row in registers; as d grows the blocks of keys that fit on chip shrink, so it re-reads K and V more often
  and occupancy falls: compare flash and partial_softmax at --head-dims 40 160 512.
* Where does flash win on this device at all, and where does it lose to a plain matmul + softmax
  (e.g. JAX on a CPU, where XLA's naive version is a tuned GEMM)?
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from paper_figures.attention import (VARIANTS, intermediate_bytes, mib, paper_choice, plot,
                                     start_backends, time_variant)
from paper_figures.common import fmt

ITEMSIZE = {"float32": 4, "float16": 2}


def run(backend_name: str = "opencl", dtype: str = "float32", lengths=(64, 256, 1024), head_dims=(40, 160),
        heads: int = 8, batch: int = 1, repeats: int = 3, warmup: int = 1) -> list[dict]:
    """One row per (d, N, variant): ms on ``backend_name``, intermediate MiB, the auto choice."""
    backends, notes = start_backends([backend_name])
    if backend_name not in backends:
        raise SystemExit("; ".join(notes))
    backend = backends[backend_name]
    rows = []
    for d, n, variant in itertools.product(head_dims, lengths, VARIANTS):
        shape = (batch, heads, n, n, d, d)
        rows.append({"d": d, "N": n, "variant": variant,
                     "ms": time_variant(backend, shape, variant, dtype, repeats=repeats, warmup=warmup),
                     "bytes": intermediate_bytes(shape, variant, ITEMSIZE[dtype]),
                     "auto": paper_choice(d, backend.vendor)})
    return rows


def print_table(rows: list[dict]) -> None:
    columns = ("d", "N", "variant", "ms", "intermediate MiB", "auto here")
    print("  ".join(f"{c:>17}" for c in columns))
    for r in rows:
        cells = (r["d"], r["N"], r["variant"], fmt(r["ms"]), mib(r["bytes"]), r["auto"])
        print("  ".join(f"{str(c):>17}" for c in cells))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="opencl", choices=("opencl", "jax"), help="backend to time (not numpy)")
    parser.add_argument("--dtype", default="float32", choices=tuple(ITEMSIZE), help="storage dtype of q, k, v")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="sequence lengths N (M = N)")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[40, 160], help="head dimensions d (= dv)")
    parser.add_argument("--heads", type=int, default=8, help="heads per batch element")
    parser.add_argument("--batch", type=int, default=1, help="batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per cell (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (kernel builds, JIT)")
    parser.add_argument("--out", type=Path, default=Path("attention_variants.png"), help="the plot (PNG)")
    args = parser.parse_args(argv)
    rows = run(args.backend, args.dtype, args.lengths, args.head_dims, args.heads, args.batch, args.repeats,
               args.warmup)
    print(f"attention variants on {args.backend}, {args.dtype}, batch {args.batch} x {args.heads} heads, M = N")
    print_table(rows)
    styles = dict(zip(args.head_dims, itertools.cycle(("-", "--", ":", "-."))))
    series = {f"{v} d={d}": (v, styles[d], [(r["N"], r["ms"]) for r in rows if r["d"] == d and r["variant"] == v])
              for d in args.head_dims for v in VARIANTS}
    memory = {f"{v} ({args.dtype})": (v, "-", [(r["N"], r["bytes"]) for r in rows
                                              if r["d"] == args.head_dims[0] and r["variant"] == v])
              for v in ("naive", "partial_softmax")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(args.out, series, memory, title=f"{args.backend} {args.dtype}")
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()

"""How accurate is Winograd F(m x m, 3 x 3), per tile size, point set and precision?

    python -m experiments.winograd_error                       # the default table
    python -m experiments.winograd_error --channels 320 --size 64 --seeds 3
    python -m experiments.winograd_error --show-matrices 4 --points tflite

For each (m, points, dtype) the inputs are drawn from a seeded normal distribution, rounded to
the dtype, convolved by ``reference.winograd.conv2d_winograd`` in that dtype (fp16 = fp16
storage, fp32 arithmetic) and compared with a float64 direct convolution of the same rounded
inputs. Columns: median relative Frobenius error and median componentwise error
max|y_hat - y| / (|W| * |X|) over the seeds, and the cost model's multiplication reduction.

It prints the table and saves ``--plot`` (error vs tile size per point set and dtype).

Things to try: the "integer" points for m = 6 (and watch fp16 overflow to NaN); larger channel
counts (the error barely moves: it is per-element); your own points with --custom.
"""

from __future__ import annotations

import argparse
from fractions import Fraction

import numpy as np

from reference import winograd as wg

DEFAULT_CASES = [(2, "lavin"), (4, "lavin"), (4, "barabasz"), (4, "tflite"), (6, "lavin"), (6, "integer")]


def error_table(cases=DEFAULT_CASES, dtypes=("float32", "float16"), channels=32, size=16, seeds=5):
    """Rows of dicts: m, points, dtype, relative and componentwise error (medians), mult reduction."""
    rows = []
    for dtype in dtypes:
        for m, points in cases:
            errs = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                x = rng.standard_normal((1, channels, size, size))
                w = rng.standard_normal((channels, channels, 3, 3))
                with np.errstate(over="ignore", invalid="ignore"):  # fp16 may overflow: that is a result
                    errs.append(wg.winograd_error(x, w, m=m, points=points, padding=1, dtype=dtype))
            cost = wg.winograd_cost(channels, channels, size, size, m=m)
            rows.append(dict(m=m, points=points if isinstance(points, str) else "custom", dtype=dtype,
                             relative=float(np.median([e.relative for e in errs])),
                             componentwise=float(np.median([e.componentwise for e in errs])),
                             mult_reduction=cost.mult_reduction))
    return rows


def format_table(rows) -> str:
    lines = ["| tile | points | dtype | relative error | componentwise error | mult. reduction |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| F({r['m']}x{r['m']},3x3) | {r['points']} | {r['dtype']} | {r['relative']:.2e} | "
                     f"{r['componentwise']:.2e} | {r['mult_reduction']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=32, help="input = output channels (default 32)")
    parser.add_argument("--size", type=int, default=16, help="feature map height = width (default 16)")
    parser.add_argument("--seeds", type=int, default=5, help="random inputs per cell; medians are shown")
    parser.add_argument("--dtypes", default="float32,float16", help="comma-separated storage dtypes")
    parser.add_argument("--custom", metavar="M:P1,P2,...",
                        help="add a row with your own points, e.g. 4:0,1,-1,1/2,-2 (fractions allowed)")
    parser.add_argument("--show-matrices", type=int, metavar="M", help="print A^T, G, B^T of F(M,3) and exit")
    parser.add_argument("--points", default=None, help="point set for --show-matrices (default lavin)")
    parser.add_argument("--plot", metavar="PNG", default="winograd_error.png",
                        help="where to save the plot of error vs tile size (default winograd_error.png; '' for none)")
    args = parser.parse_args(argv)

    if args.show_matrices:
        exact = args.points != "tflite"
        for name, mat in zip(("A^T", "G", "B^T"), wg.winograd_matrices(args.show_matrices, points=args.points, exact=exact)):
            print(f"{name} =")
            for row in mat:
                print("   " + "  ".join(f"{str(v):>7}" if exact else f"{v:9.5f}" for v in row))
        return

    cases = list(DEFAULT_CASES)
    if args.custom:
        m, _, pts = args.custom.partition(":")
        cases.append((int(m), tuple(Fraction(p) for p in pts.split(","))))
    rows = error_table(cases, args.dtypes.split(","), args.channels, args.size, args.seeds)
    print(f"Winograd error vs float64 direct convolution; {args.channels} channels, {args.size}x{args.size}, "
          f"padding 1, median over {args.seeds} seeds")
    print(format_table(rows))
    if args.plot:
        print(f"wrote {plot(rows, args.plot)}")


def plot(rows, path) -> str:
    """Error vs tile size: one line per (point set, dtype), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    series = {}
    for r in rows:
        series.setdefault((str(r["points"]), r["dtype"]), []).append((r["m"], r["relative"]))
    for (points, dtype), values in series.items():
        values.sort()
        ax.semilogy([m for m, _ in values], [e for _, e in values], "o-" if dtype == "float32" else "s--",
                    label=f"{points}, {dtype}")
    ax.set_xlabel("output tile m of F(m x m, 3 x 3)")
    ax.set_ylabel("relative error vs float64")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


if __name__ == "__main__":
    main()

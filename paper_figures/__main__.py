"""Regenerate every table and figure that the project can reproduce so far.

    python -m paper_figures [--out DIR] [--seeds N]
"""

import argparse
from pathlib import Path

from . import winograd_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out", help="output folder")
    parser.add_argument("--seeds", type=int, default=5, help="random inputs per measured cell")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = winograd_table.build(args.out, seeds=args.seeds)
    for path in written:
        print(f"wrote {path}")
    print("Not generated here yet: the end-to-end ablation table. The network exists (reference/sd); on a GPU,\n"
          "python -m experiments.sd_latency measures each switch per component (an H100 run:\n"
          "experiments/results/sd14_h100.md).")


if __name__ == "__main__":
    main()

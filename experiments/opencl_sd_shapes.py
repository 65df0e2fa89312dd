"""Every OpenCL kernel variant at Stable Diffusion 1.4's shapes: error, launches, temporaries, time.

    python -m experiments.opencl_sd_shapes                     # SD 1.4 shapes, fp32 storage
    python -m experiments.opencl_sd_shapes --dtype float16     # fp16 storage, fp32 arithmetic
    python -m experiments.opencl_sd_shapes --quick             # small shapes (a CPU smoke run)

For each case the inputs are drawn once (seeded), rounded to the storage dtype, run through the
OpenCL backend and compared with the NumPy reference in float64 on the same rounded inputs.
Columns: relative Frobenius error; kernel launches and temporary device bytes of one call (the
fusion claims); and the median wall time of ``--repeats`` calls after one warm-up, measured
around ``queue.finish()``. That time includes the Python launch overhead; it is a rough number
for orientation, not the performance issue's benchmark.

Things to try: compare "naive" with "partial_softmax" temp bytes at N = 4096 (one N x N tensor
less); watch flash's zero temporaries; see how the Winograd error grows with the tile.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from backends.opencl import OpenCLBackend
from reference import attention as ref_attention
from reference import ops
from reference.numerics import relative_frobenius_error


def sd_cases(quick: bool):
    """(name, reference function, inputs, backend call) at SD 1.4's 64x64-latent level (batch 1)."""
    s = 8 if quick else 64  # latent side
    c = 32 if quick else 320  # channels at that level
    heads, d = (2, 16) if quick else (8, 40)
    n = s * s
    ff = 4 * c  # GEGLU's projection gives 2 * ff features, split in halves
    vae_d = 64 if quick else 512
    cases = []
    for fused in (False, True):
        cases.append((f"group_norm+silu {(1, c, s, s)} G=32 fused={fused}",
                      lambda x: ops.silu(ops.group_norm(x, 32)), [(1, c, s, s)],
                      lambda be, x, f=fused: be.group_norm(x, 32, fused=f, silu=True)))
    for fused in (False, True):
        cases.append((f"geglu {(1, n, 2 * ff)} fused={fused}", ops.geglu, [(1, n, 2 * ff)],
                      lambda be, x, f=fused: be.geglu(x, fused=f)))
    for method in ("naive", "partial_softmax", "flash"):
        cases.append((f"self-attention {(1, heads, n, d)} {method}", ref_attention.attention,
                       [(1, heads, n, d)] * 3, lambda be, q, k, v, m=method: be.attention(q, k, v, method=m)))
    for method in ("naive", "partial_softmax", "flash"):
        cases.append((f"cross-attention N={n} M=77 d={d} {method}", ref_attention.attention,
                      [(1, heads, n, d), (1, heads, 77, d), (1, heads, 77, d)],
                      lambda be, q, k, v, m=method: be.attention(q, k, v, method=m)))
    cases.append((f"VAE attention {(1, 1, n, vae_d)} flash", ref_attention.attention, [(1, 1, n, vae_d)] * 3,
                  lambda be, q, k, v: be.attention(q, k, v, method="flash")))
    conv_ref = lambda x, w: ops.conv2d(x, w, padding=1)  # noqa: E731
    cases.append((f"conv3x3 {(1, c, s, s)}->{c} direct", conv_ref, [(1, c, s, s), (c, c, 3, 3)],
                   lambda be, x, w: be.conv2d(x, w, padding=1, method="direct")))
    for m in (2, 4, 6):
        cases.append((f"conv3x3 {(1, c, s, s)}->{c} winograd F({m},3)", conv_ref, [(1, c, s, s), (c, c, 3, 3)],
                       lambda be, x, w, m=m: be.conv2d(x, w, padding=1, method="winograd", tile=m)))
    return cases


def run(dtype="float32", quick=False, repeats=5, device=None):
    be = OpenCLBackend(device=device)
    rows = []
    for i, (name, reference, shapes, call) in enumerate(sd_cases(quick)):
        rng = np.random.default_rng(i)
        host = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        if name.startswith("conv"):
            host[1] = (host[1] / np.sqrt(9 * shapes[1][1])).astype(dtype)  # unit-variance outputs
        args = [be.asarray(h) for h in host]
        with be.measure() as counted:
            out = call(be, *args)
        error = relative_frobenius_error(be.to_numpy(out), reference(*(h.astype(np.float64) for h in host)))
        times = []
        for _ in range(repeats):
            be.rt.finish()
            start = time.perf_counter()
            call(be, *args)
            be.rt.finish()
            times.append(time.perf_counter() - start)
        rows.append(dict(case=name, error=error, launches=counted.launches,
                         temp_mib=counted.temp_bytes / 2**20, ms=1e3 * statistics.median(times)))
    return be, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="storage dtype")
    parser.add_argument("--quick", action="store_true", help="small shapes instead of SD 1.4's")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (median shown)")
    parser.add_argument("--device", default=None, help="OpenCL device (see PYOPENCL_CTX); default: first GPU")
    args = parser.parse_args(argv)
    be, rows = run(args.dtype, args.quick, args.repeats, args.device)
    print(f"device: {be.rt.device.name} ({be.rt.device.platform.name}); storage {args.dtype}; "
          f"time = median of {args.repeats} calls, wall clock around queue.finish()")
    print("| case | rel. error vs float64 | launches | temp MiB | ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['error']:.2e} | {r['launches']} | {r['temp_mib']:.3f} | {r['ms']:.2f} |")


if __name__ == "__main__":
    main()

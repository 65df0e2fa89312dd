"""Where the device time of one SD 1.4 UNet (or decoder) call goes on the JAX backend: a
``jax.profiler`` trace of warm calls, its GPU kernels summed by name and by kind
(``python -m experiments.probes.jax_unet_profile --dtype float16 --configs none best``).

For each configuration: the component built as ``experiments.sd_latency`` builds it (random SD 1.4
weights, batch 2, 64 x 64 latents), one warm-up call (compiles), the wall time of ``--iterations``
calls, then those calls again under ``jax.profiler.trace``. The trace's GPU stream events are the
kernels; the table gives each kind's device milliseconds per call (convolutions, matrix products,
our Pallas kernels by name, XLA's fusions, copies and transposes), the kernels' sum against the
wall time (the gap is idle GPU: launch gaps, host work), and the ``--top`` kernels by time.
"""

import argparse
import collections
import gzip
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from backends import get_backend
from experiments import sd_latency, sd_shapes
from reference.sd.checkpoint import random_parameters, storage_dtype

#: (kind, pattern on the kernel name), first match wins
KINDS = (
    ("pallas flash_attention", r"flash_attention"),
    ("pallas partial softmax", r"softmax_stats|attention_pv_softmax"),
    ("pallas group_norm", r"group_norm"),
    ("pallas gelu/geglu", r"gelu|geglu"),
    ("pallas winograd", r"winograd"),
    ("convolution (cuDNN)", r"fprop|dgrad|implicit_gemm|cudnn|conv2d|convolution"),  # not XLA's "convert" fusions
    ("matrix product (cuBLAS/Triton GEMM)", r"gemm|cublas|cutlass|xmma|nvjet|triton_|matmul|dot"),  # nvjet: cuBLAS's
    ("XLA fusion with a transpose (layout change fused into work)", r"transpose_fusion"),
    ("transpose / copy alone", r"transpose|copy|memcpy|memset"),
    ("XLA fusion (elementwise, reduction)", r"fusion|loop_|input_|reduce|concatenate|convert"),
)


#: the component's network in ``sd_shapes`` (same batch: 2 for the UNet, 1 for the decoder)
TRACED = {"unet": "unet", "decoder": "vae_decoder"}


def kind_of(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, lower)), "other")


def gpu_kernels(trace_dir: Path) -> list[tuple[str, float]]:
    """(name, microseconds) of every kernel on the GPU's stream lines of the newest trace."""
    path = max(trace_dir.glob("plugins/profile/*/*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    with gzip.open(path, "rb") as f:
        events = json.load(f)["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    lines = collections.Counter()
    kernels = []
    for e in events:
        if e.get("ph") != "X" or "gpu" not in processes.get(e["pid"], "").lower():
            continue
        line = threads.get((e["pid"], e["tid"]), "?")
        lines[line] += e.get("dur", 0.0)
        if line.lower().startswith("stream"):
            kernels.append((e["name"], float(e.get("dur", 0.0))))
    print("  trace lines on the GPU (us, all calls): " + ", ".join(f"{k}: {v:.0f}" for k, v in lines.most_common(8)))
    return kernels


def profile(component: str, config: str, dtype, iterations: int, top: int, tiny: bool = False,
            backend_options: dict | None = None) -> None:
    configs = sd_latency.component_configs(tiny)
    cls = dict(sd_latency.COMPONENTS)[component]
    index = [name for name, _ in sd_latency.COMPONENTS].index(component)
    params = random_parameters(cls.build({**cls.DEFAULTS, **configs[component]}).parameter_shapes(), seed=index)
    data = sd_latency.inputs(configs, 2, dtype)[component]
    backend_options = backend_options or {}
    backend = get_backend("jax", optimizations=sd_latency.CONFIGS[config], **backend_options)
    model = cls(configs[component], params, backend=backend, dtype=dtype, source="random parameters")
    start = time.perf_counter()
    sd_latency.timed_call(backend, model, data)
    first = time.perf_counter() - start
    walls = [sd_latency.timed_call(backend, model, data) for _ in range(iterations)]
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(iterations):
                sd_latency.timed_call(backend, model, data)
        kernels = gpu_kernels(Path(tmp))
    total = sum(us for _, us in kernels) / iterations / 1e3
    wall = statistics.median(walls) * 1e3
    if not kernels:
        print(f"\n## {component}, {config}: wall {wall:.2f} ms per call; the trace has no GPU kernels (no GPU?)")
        return
    form = "".join(f" ({name}={value})" for name, value in backend_options.items())
    print(f"\n## {component}, {config}{form}, {np.dtype(dtype).name}: wall {wall:.2f} ms per call (median of {iterations}), "
          f"kernels {total:.2f} ms ({len(kernels) // iterations} launches per call), first call {first:.1f} s")
    if not tiny:  # SD 1.4's shapes: the products' useful work (sd_shapes.network_flops) per second
        work = sum(sd_shapes.network_flops(TRACED[component]).values())
        print(f"products {work / 1e9:.0f} GFLOP per call: {work / wall / 1e9:.0f} TFLOP/s of the wall, "
              f"{work / total / 1e9:.0f} of the kernels' sum")
    print()
    by_kind = collections.defaultdict(lambda: [0.0, 0])
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for name, us in kernels:
        for table, key in ((by_kind, kind_of(name)), (by_name, name)):
            table[key][0] += us / iterations / 1e3
            table[key][1] += 1
    print("| kind | ms per call | share | launches per call |\n|---|---|---|---|")
    for kind, (ms, count) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"| {kind} | {ms:.3f} | {ms / total:.1%} | {count // iterations} |")
    print(f"\n| kernel (top {top}) | kind | ms per call | launches per call |\n|---|---|---|---|")
    for name, (ms, count) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {name[:90]} | {kind_of(name)} | {ms:.3f} | {count // iterations} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--component", default="unet", choices=[name for name, _ in sd_latency.COMPONENTS])
    parser.add_argument("--configs", nargs="+", default=["none", "best"], choices=list(sd_latency.CONFIGS))
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--tiny", action="store_true", help="tiny SD-shaped networks (a smoke test on a CPU)")
    parser.add_argument("--backend-option", action="append", default=[], metavar="NAME=VALUE",
                        type=sd_latency.parse_backend_option,
                        help="a keyword argument of JaxBackend, e.g. fused_group_norm_form=split; repeatable")
    parser.add_argument("--xla-option", action="append", default=[], metavar="NAME=VALUE",
                        type=sd_latency.parse_xla_option,
                        help="an XLA option of the networks' programs (JaxBackend's compiler_options); repeatable")
    args = parser.parse_args(argv)
    backend_options = dict(args.backend_option)
    if args.xla_option:
        backend_options["compiler_options"] = dict(args.xla_option)
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    for config in args.configs:
        profile(args.component, config, storage_dtype(args.dtype), args.iterations, args.top, args.tiny,
                backend_options)


if __name__ == "__main__":
    main()

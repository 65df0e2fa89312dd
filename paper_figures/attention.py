"""Attention: naive, partially fused softmax, FlashAttention (the paper's third idea), per SD 1.4
attention shape: the intermediate memory each variant stores, its latency here and on the
committed GPU run, and which variant the paper's rule (and our backends' ``method="auto"``) picks.

Shapes. Every ``backend.attention`` call of one SD 1.4 UNet evaluation (batch 2, classifier-free
guidance) and one VAE decode, traced by experiments/sd_shapes.py (``sd14_calls``), with its count
per network: UNet self-attention N = M = 4096 / 1024 / 256 / 64 tokens with d = 40 / 80 / 160 /
160 (8 heads), cross-attention on the same N with M = 77 text tokens, and the VAE decoder's one
self-attention N = M = 4096, 1 head, d = 512.

Intermediate memory per call, for q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) and b bytes per
element (fp16: b = 2, fp32: b = 4); only what a variant writes to device memory besides q, k, v
and the output O (B, H, N, dv):

    naive            A = s Q K^T and P = softmax(A), both N x M per head:  2 B H N M b
    partial_softmax  A, plus the (L, S) row statistics, N x 2 per head:    (B H N M + 2 B H N) b
    flash            nothing: the running max, sum and output accumulator of a block of query
                     rows live in registers and on-chip (__local / shared) memory, with a block
                     of K and V; over a whole call that state is O(N d), never an N x M array.

Example (the hand check of the tests): N = M = 4096, 8 heads, batch 2, fp16: naive stores
2 x (2 x 8 x 4096 x 4096 x 2 bytes) = 1 GiB, partial 512 MiB + 256 KiB, flash 0.
Our OpenCL and JAX kernels keep A, P and the statistics in float32 whatever the storage dtype
(backends/opencl/attention.py, backends/jax/attention.py), so the fp32 column is what they store.

Latency. Locally on each backend that starts (OpenCL, e.g. on PoCL, and JAX; the numpy reference
is not timed): ``backend.compile`` then ``backend.time`` (the timing of experiments/kernels.py's
``measure_row``: device median where the backend has a device timer, else wall), float32 inputs.
A 2-core CPU cannot run the full shapes in minutes, so by default the token counts are divided
by 16 (self-attention: N and M; cross-attention: N, M = 77 kept), heads and d kept; ``quick``
divides by 64 and times OpenCL only; ``full`` runs SD 1.4's shapes. Beside them, the committed GPU
run (``BENCH_RUNS``, rows with op == "attention"): our OpenCL and JAX variants and torch's
F.scaled_dot_product_attention (a peer) at the full shapes, in float16.

Choice. The paper's rule: FlashAttention on Adreno and Apple GPUs for d = 40, the partially fused
softmax everywhere else (backends/optimizations.py ``auto_attention_method``); the table shows it
for those GPUs and for any other device, and what ``method="auto"`` resolves to on each backend
here (by its ``vendor``) and on the GPU run's device.

    python -m experiments.attention_variants --help     # the same functions on chosen lengths
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .common import BENCH_RUNS, Scale, Section, figure, fmt, read_bench, save, write_table

TITLE = "Attention: naive, partially fused softmax, FlashAttention"
VARIANTS = ("naive", "partial_softmax", "flash")
TORCH_VARIANT = "F.scaled_dot_product_attention"
TEXT_TOKENS = 77
LOCAL_BACKENDS = ("opencl", "jax")
GPU_DTYPE = "float16"
COLORS = {"naive": "tab:red", "partial_softmax": "tab:blue", "flash": "tab:green", TORCH_VARIANT: "black"}


# -- shapes and memory ----------------------------------------------------------------------------


def sd14_attention_shapes() -> list[dict]:
    """Every distinct attention call of SD 1.4 (traced): network, kind (self / cross), count per
    evaluation and shape (B, H, N, M, d, dv), in the order the networks call them."""
    from experiments.sd_shapes import sd14_calls

    shapes = []
    for network, calls in sd14_calls().items():
        for call, count in calls.items():
            if call.op != "attention":
                continue
            (b, h, n, d), (_, _, m, _), (_, _, _, dv) = call.inputs
            kind = "cross" if m == TEXT_TOKENS and n != TEXT_TOKENS else "self"
            shapes.append(dict(network=network, kind=kind, count=count, shape=(b, h, n, m, d, dv)))
    return shapes


def intermediate_bytes(shape, variant: str, itemsize: int) -> int:
    """Bytes a variant writes to device memory besides q, k, v and O (the module docstring's
    formulas) for shape (B, H, N, M, d[, dv]) and ``itemsize`` bytes per element."""
    b, h, n, m = shape[:4]
    if variant == "naive":
        return 2 * b * h * n * m * itemsize
    if variant == "partial_softmax":
        return (b * h * n * m + 2 * b * h * n) * itemsize
    if variant == "flash":
        return 0
    raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")


def scaled_shape(shape, divisor: int):
    """The local timing shape: token counts / ``divisor`` (cross-attention keeps M = 77)."""
    b, h, n, m, d, dv = shape
    return (b, h, max(1, n // divisor), m if m == TEXT_TOKENS else max(1, m // divisor), d, dv)


def paper_choice(d: int, vendor: str) -> str:
    from backends.optimizations import auto_attention_method

    return auto_attention_method(d, vendor)


def mib(nbytes) -> str:
    return "" if nbytes is None else "0" if nbytes == 0 else fmt(nbytes / 2**20, 4)


# -- local timing ---------------------------------------------------------------------------------


def start_backends(names) -> tuple[dict, list[str]]:
    """{name: backend} of those that start here (numpy is never timed), and notes on the others."""
    from backends import get_backend

    backends, notes = {}, []
    for name in names:
        if name == "numpy":
            notes.append("backend numpy: the reference, not timed")
            continue
        try:
            backends[name] = get_backend(name)
        except Exception as exc:  # noqa: BLE001  (no OpenCL driver, no jax: a note, not a failure)
            notes.append(f"backend {name}: not available ({type(exc).__name__}: {exc})")
    return backends, notes


def time_variant(backend, shape, variant: str, dtype: str = "float32", repeats: int = 3, warmup: int = 1,
                 seed: int = 0) -> float | None:
    """Median milliseconds of one ``backend.attention(method=variant)`` call on seeded normal
    inputs of ``shape`` (B, H, N, M, d[, dv]): device time where the backend has a timer, else wall
    (as experiments/kernels.py's measure_row). None (and a printed reason) if the call fails."""
    b, h, n, m, d = shape[:5]
    dv = shape[5] if len(shape) > 5 else d
    rng = np.random.default_rng(seed)
    q, k, v = (backend.asarray(rng.standard_normal(s, dtype=np.float32).astype(dtype))
               for s in ((b, h, n, d), (b, h, m, d), (b, h, m, dv)))
    fn = backend.compile(lambda q, k, v: backend.attention(q, k, v, method=variant))
    try:
        timing = backend.time(lambda: fn(q, k, v), repeats=repeats, warmup=warmup)
    except Exception as exc:  # noqa: BLE001  (a failing kernel leaves its cell empty)
        print(f"attention {shape} {variant} on {backend.name}: failed: {type(exc).__name__}: {exc}")
        return None
    seconds = timing.device_median if timing.device_median is not None else timing.wall_median
    return 1e3 * seconds


# -- the committed GPU run ------------------------------------------------------------------------


def gpu_run(paths=None) -> tuple[dict, dict, str]:
    """(header, {(backend, variant, (B, H, N, M, d), dtype): ms}, description) of the newest
    committed ``make bench`` run; empty where there is none."""
    paths = BENCH_RUNS if paths is None else paths
    if not paths:
        return {}, {}, "no committed GPU run (experiments/results/kernels_*.csv)"
    path = paths[-1]
    header, rows = read_bench(path)
    times = {}
    for r in rows:
        if r.get("op") != "attention" or not str(r.get("check", "")).startswith("ok"):
            continue
        ms = r.get("device_ms", r.get("wall_ms"))
        if ms is None:
            continue
        shape = tuple(int(s) for s in re.findall(r"\d+", r["shape"]))
        times[(r["backend"], r["variant"], shape, r["dtype"])] = float(ms)
    device = header.get("device opencl", header.get("device torch", "?")).split(",")[0]
    describe = (f"{path.name}: {device}, {header.get('date', '?')}, commit {header.get('commit', '?')}")
    return header, times, describe


def gpu_vendor(header: dict) -> str:
    """The GPU run's OpenCL platform and vendor text (what ``method="auto"`` reads there)."""
    text = header.get("device opencl", "")
    match = re.search(r"\(([^)]*)\)", text)
    return f"{match.group(1) if match else ''} {text}"


# -- the table and the figure ---------------------------------------------------------------------


def plot(path: Path, series: dict, memory: dict, title: str = "") -> Path:
    """Two log-log panels: latency (``series``: {label: (variant, linestyle, [(N, ms)])}) and
    intermediate memory (``memory``: {label: (variant, linestyle, [(N, bytes)])}) vs N."""
    fig, axes = figure(11, 4.2, ncols=2)
    ax_t, ax_m = axes[0]
    for ax, data, ylabel in ((ax_t, series, "ms per call"), (ax_m, memory, "intermediate memory (bytes)")):
        for label, (variant, style, points) in data.items():
            points = sorted((x, y) for x, y in points if y is not None and y > 0)
            if points:
                ax.loglog(*zip(*points), style, color=COLORS.get(variant, "gray"), marker="o", ms=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length N (self-attention, M = N)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    ax_t.set_title("latency" + (f" ({title})" if title else ""), fontsize=9)
    ax_m.set_title("stored besides q, k, v, O", fontsize=9)
    return save(fig, path)


def memory_series(shapes, itemsize: int = 2) -> dict:
    """The memory panel's lines over self-attention ``shapes`` (B, H, N, M, d, dv)."""
    label = {2: "fp16", 4: "fp32"}[itemsize]
    series = {f"{v} ({label})": (v, "-", [(s[2], intermediate_bytes(s, v, itemsize)) for s in shapes])
              for v in ("naive", "partial_softmax")}
    return series


def build(out: Path, scale: Scale) -> Section:
    out.mkdir(parents=True, exist_ok=True)
    divisor = 1 if scale.full else 64 if scale.quick else 16
    repeats, warmup = (5, 2) if scale.full else (1, 1) if scale.quick else (3, 1)
    backends, notes = start_backends(("opencl",) if scale.quick else LOCAL_BACKENDS)
    header, gpu, gpu_describe = gpu_run()
    vendor_gpu = gpu_vendor(header) if header else None
    shapes = sd14_attention_shapes()

    rows = []
    local_ms: dict = {}
    for item in shapes:
        shape = item["shape"]
        b, h, n, m, d, dv = shape
        local = scaled_shape(shape, divisor)
        bench_shape = (b, h, n, m, d)
        auto_local = "; ".join(f"{name}: {paper_choice(d, be.vendor)}" for name, be in backends.items())
        for variant in VARIANTS:
            for name, be in backends.items():
                local_ms[(name, variant, shape)] = time_variant(be, local, variant, repeats=repeats, warmup=warmup)
            rows.append({
                "network": item["network"], "attention": item["kind"], "calls": item["count"],
                "B": b, "H": h, "N": n, "M": m, "d": d, "variant": variant,
                "memory fp16 (MiB)": mib(intermediate_bytes(shape, variant, 2)),
                "memory fp32 (MiB)": mib(intermediate_bytes(shape, variant, 4)),
                "local (N, M)": f"({local[2]}, {local[3]})",
                **{f"{name} ms (local)": fmt(local_ms.get((name, variant, shape))) for name in LOCAL_BACKENDS},
                "GPU opencl ms": fmt(gpu.get(("opencl", variant, bench_shape, GPU_DTYPE))),
                "GPU jax ms": fmt(gpu.get(("jax", variant, bench_shape, GPU_DTYPE))),
                "GPU torch SDPA ms": fmt(gpu.get(("torch", TORCH_VARIANT, bench_shape, GPU_DTYPE))),
                "paper: Adreno/Apple": paper_choice(d, "qualcomm adreno"),
                "paper: other GPUs": paper_choice(d, "other"),
                "auto here": auto_local,
                "auto on GPU run": paper_choice(d, vendor_gpu) if vendor_gpu else "",
            })

    columns = list(rows[0])
    local_devices = ", ".join(f"{name}: {be.device_info()['name']}" for name, be in backends.items())
    table_notes = [
        "Memory: what a variant stores besides q, k, v and O, per call: naive 2 B H N M b (scores A and "
        "probabilities P), partial_softmax (B H N M + 2 B H N) b (A and the N x 2 statistics), flash 0 (its "
        "state stays on chip); b = 2 (fp16) or 4 (fp32). "
        "Our kernels keep A, P and the statistics in float32.",
        f"Local latency: median ms, float32, {repeats} timed calls after {warmup} warm-up, at the shapes in "
        f"`local (N, M)` (tokens / {divisor}; heads and d kept) on {local_devices or 'no backend'}."
        + (" Quick run: OpenCL only." if scale.quick else ""),
        f"GPU: {GPU_DTYPE}, full shapes, from {gpu_describe}; empty cells: shapes or variants that run did not "
        "measure (or failed its check).",
        "paper: the variant the paper's rule picks (flash on Adreno and Apple GPUs for d = 40, partial_softmax "
        "elsewhere); auto: what method=\"auto\" resolves to on our backends here (by vendor) and on the GPU run.",
        *notes,
    ]
    if getattr(backends.get("jax"), "interpret", False):
        table_notes.append("jax here runs its Pallas kernels (partial_softmax's two, flash) in the Pallas interpreter "
                           "(no GPU): its local partial_softmax and flash times measure that, naive is XLA's CPU code.")
    files = write_table(out, "attention", rows, columns, TITLE, table_notes)

    # the figure: UNet self-attention levels (+ the VAE's, a separate point set) vs N
    self_shapes = [i["shape"] for i in shapes if i["kind"] == "self" and i["network"] == "unet"]
    series = {}
    for variant in VARIANTS:
        if gpu:
            series[f"GPU opencl {variant}"] = (variant, "-", [(s[2], gpu.get(("opencl", variant, s[:5], GPU_DTYPE)))
                                                            for s in self_shapes])
            series[f"GPU jax {variant}"] = (variant, "-.", [(s[2], gpu.get(("jax", variant, s[:5], GPU_DTYPE)))
                                                          for s in self_shapes])
        for name in backends:
            series[f"local {name} {variant} (N/{divisor})"] = (
                variant, "--" if name == "opencl" else ":",
                [(scaled_shape(s, divisor)[2], local_ms[(name, variant, s)]) for s in self_shapes])
    if gpu:
        series["GPU torch SDPA"] = (TORCH_VARIANT, "-", [(s[2], gpu.get(("torch", TORCH_VARIANT, s[:5], GPU_DTYPE)))
                                                         for s in self_shapes])
    files.append(plot(out / "attention.png", series, memory_series(self_shapes),
                      title=f"GPU {GPU_DTYPE}, local float32; UNet self-attention, d = 40/80/160/160"))

    big = next(i["shape"] for i in shapes if i["shape"][2] == 4096 and i["shape"][4] == 40 and i["kind"] == "self")
    gpu_part = ""
    if gpu:
        gpu_ms = {v: gpu.get(("opencl", v, big[:5], GPU_DTYPE)) for v in VARIANTS}
        gpu_part = ("; GPU OpenCL fp16 " + " / ".join(f"{v} {fmt(ms)} ms" for v, ms in gpu_ms.items())
                    + f", torch SDPA {fmt(gpu.get(('torch', TORCH_VARIANT, big[:5], GPU_DTYPE)))} ms")
    summary = (f"attention N=4096 d=40 (x{next(i['count'] for i in shapes if i['shape'] == big)} per UNet step): "
               f"fp16 intermediates naive {mib(intermediate_bytes(big, 'naive', 2))} MiB, partial "
               f"{mib(intermediate_bytes(big, 'partial_softmax', 2))} MiB, flash 0{gpu_part}")
    scaled_down = None if scale.full else (
        f"local latency at tokens / {divisor} (self-attention N and M, cross-attention N; heads, d and M = 77 kept)"
        + (", OpenCL only" if scale.quick else "") + "; memory and GPU columns at full SD 1.4 shapes")
    return Section(TITLE, "Per SD 1.4 attention shape, the intermediate memory of the three variants (formulas), "
                   "their latency here and on the committed GPU run, and the variant the paper's rule picks.",
                   files, scaled_down=scaled_down, summary=summary)

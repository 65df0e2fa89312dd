"""Fused GroupNorm and GELU: launches, temporary bytes, latency (issue 14).

For every GroupNorm(+SiLU) and GEGLU layer of SD 1.4 (traced by experiments/sd_shapes.py: the UNet
at batch 2, the VAE decoder at batch 1), fused against unfused:

* kernel launches and temporary bytes, counted by the OpenCL backend's counters
  (``backend.measure()``). Counting runs the op, so by default it runs on *scaled-down* shapes
  that take the same code path: the launches do not depend on the size, and the temporary bytes
  follow a formula (``formula``) that is checked against the counter on the scaled shape and then
  evaluated on the real shape. ``Scale.full`` counts on the real shapes.
* the whole network's totals per pass: the sum over the traced layers of count x per-layer value.
* latency: local (OpenCL on whatever device is here, PoCL on a CPU: reduced shapes) and from the
  committed GPU run (``BENCH_RUNS``: rows ``group_norm+silu`` and ``geglu``).

The paper's claim ([press], /work/shared/paper.md): the fused GroupNorm is one GPU command with no
intermediate tensors; the fused GELU does GEGLU's split and multiply in the same draw call.

Formulas (backends/opencl/group_norm.py and gelu.py document the kernel plans):

    group_norm fused     1 launch (the one-launch form; the split form 2); temporaries the
                         (N, G, parts, 2) float32 partial statistics, 8 * N * G * parts bytes, with
                         ``parts`` from ``group_norm.fused_plan`` on the device (the H200's 132 SMs
                         for the real shapes)
    group_norm unfused   3 launches (+1 for SiLU, in place on the output); temporaries the (N, G)
                         float32 mean and the (N, G, 2) float32 (mean correction, variance):
                         12 * N * G bytes, whatever the storage dtype
    geglu fused          1 launch, 0 temporary bytes
    geglu unfused        erf form 6 launches and 6 temporaries of the output's size (a, b, three
                         inside the unfused gelu, the gate); tanh form 9 and 9
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import BENCH_RUNS, Scale, Section, figure, fmt, read_bench, save, write_table

#: the device of the committed GPU runs (an H200's SMs), for the fused GroupNorm's parts
H200_COMPUTE_UNITS = 132
TITLE = "Fused GroupNorm and GELU: launches, temporary bytes, latency"
OPS = ("group_norm", "geglu")
BENCH_OPS = {"group_norm": "group_norm+silu", "geglu": "geglu"}
NETWORKS = {"unet": "UNet (one evaluation, batch 2)", "vae_decoder": "VAE decoder (one decode)"}
PAPER_CLAIM = {
    "group_norm": "[press] one GPU command, no intermediate tensors",
    "geglu": "[press] GELU with its split and multiply in one draw call",
}
#: scaled-down counting shapes: GroupNorm maps cut to SIDE x SIDE, GEGLU rows to TOKENS (N, C, G
#: and the feature width stay: the counted temporaries of GroupNorm depend on N * G only)
COUNT_SIDE = {"quick": 2, "default": 4}
COUNT_TOKENS = {"quick": 2, "default": 8}
#: local latency: the benchmark's shapes with maps divided by LAT_DIV_SIDE, rows by LAT_DIV_TOKENS
LAT_DIV_SIDE = {"quick": 16, "default": 8}
LAT_DIV_TOKENS = {"quick": 64, "default": 16}


@dataclass(frozen=True)
class Layer:
    """One distinct GroupNorm or GEGLU call of a network and how often it runs per pass."""

    network: str
    op: str
    shape: tuple
    count: int
    groups: int = 0  # GroupNorm only
    silu: bool = False  # GroupNorm only
    approximate: bool = False  # GEGLU only

    @property
    def kind(self) -> str:
        if self.op == "group_norm":
            return "group_norm+silu" if self.silu else "group_norm"
        return "geglu (tanh)" if self.approximate else "geglu"


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


@functools.lru_cache(maxsize=1)
def traced_layers() -> tuple[Layer, ...]:
    """Every distinct GroupNorm and GEGLU call of SD 1.4's UNet and VAE decoder with its count
    (experiments.sd_shapes traces), in order of first call."""
    from experiments.sd_shapes import sd14_calls

    layers = []
    for network, calls in sd14_calls().items():
        for call, count in calls.items():
            if call.op == "group_norm":
                layers.append(Layer(network, "group_norm", call.inputs[0], count,
                                    groups=call.kwarg("num_groups"), silu=bool(call.kwarg("silu"))))
            elif call.op == "geglu":
                layers.append(Layer(network, "geglu", call.inputs[0], count,
                                    approximate=bool(call.kwarg("approximate"))))
    return tuple(layers)


def formula(layer: Layer, fused: bool, dtype="float32", shape=None,
            compute_units: int = H200_COMPUTE_UNITS) -> tuple[int, int]:
    """(launches, temporary bytes) of one call of ``layer`` (on ``shape``, default its own) by the
    OpenCL backend's kernel plans (module docstring) on a device of ``compute_units``."""
    shape = tuple(shape or layer.shape)
    if fused and layer.op == "group_norm":
        from backends.opencl import group_norm  # (pyopencl: only where the formula is asked for)

        plan = group_norm.fused_plan(shape, layer.groups, compute_units)
        return len(group_norm.FORM_KERNELS[group_norm.FUSED_FORM]), 8 * shape[0] * layer.groups * plan.parts
    if fused:
        return 1, 0
    if layer.op == "group_norm":
        return 3 + layer.silu, 12 * shape[0] * layer.groups
    nodes = 9 if layer.approximate else 6
    return nodes, nodes * (math.prod(shape) // 2) * np.dtype(dtype).itemsize


def scaled_shape(layer: Layer, side: int, tokens: int) -> tuple:
    """The shape counted instead of the real one: same code path, fewer elements."""
    if layer.op == "group_norm":
        return layer.shape[:2] + tuple(min(s, side) for s in layer.shape[2:])
    return (layer.shape[0], min(layer.shape[1], tokens)) + tuple(layer.shape[2:])


def _call(backend, layer: Layer, x, fused: bool):
    if layer.op == "group_norm":
        return backend.group_norm(x, layer.groups, fused=fused, silu=layer.silu)
    return backend.geglu(x, approximate=layer.approximate, fused=fused)


def _input(backend, shape, dtype, seed=0):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def count(backend, layer: Layer, shape, fused: bool, dtype="float32") -> tuple[int, int]:
    """(launches, temporary bytes) that ``backend``'s counters report for one call on ``shape``."""
    x = _input(backend, shape, dtype)
    with backend.measure() as counters:
        backend.synchronize(_call(backend, layer, x, fused))
    return counters.launches, counters.temp_bytes


def open_backend(name: str = "opencl"):
    """(backend, None), or (None, why) when it cannot start or has no counters."""
    try:
        from backends import get_backend

        backend = get_backend(name)
    except Exception as exc:  # no OpenCL platform, no pyopencl, a broken driver ...
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not hasattr(backend, "measure"):
        return None, f"backend {name!r} has no launch counters"
    return backend, None


def device_name(backend) -> str:
    try:
        return str(backend.device_info().get("name", backend))
    except Exception:
        return repr(backend)


def layer_counts(layers, backend=None, dtype="float32", side=4, tokens=8, full=False) -> list[dict]:
    """One row per layer: real-shape launches and temporary bytes (fused, unfused) by formula,
    and, with a backend, the counters on the counted shape (the real one if ``full``) beside the
    formula on that shape (``match``)."""
    rows = []
    for layer in layers:
        run_shape = tuple(layer.shape) if full else scaled_shape(layer, side, tokens)
        row = {"network": layer.network, "op": layer.kind, "shape": _shape_text(layer.shape),
               "count": layer.count, "counted_shape": _shape_text(run_shape), "claim": PAPER_CLAIM[layer.op]}
        match = True
        units = backend.rt.device.max_compute_units if backend is not None else H200_COMPUTE_UNITS
        for fused, tag in ((True, "fused"), (False, "unfused")):
            launches, temp = formula(layer, fused, dtype)
            row[f"{tag}_launches"], row[f"{tag}_temp_bytes"] = launches, temp
            if backend is not None:
                counted = count(backend, layer, run_shape, fused, dtype)
                row[f"{tag}_counted_launches"], row[f"{tag}_counted_temp_bytes"] = counted
                match &= counted == formula(layer, fused, dtype, run_shape, units)
        row["match"] = ("yes" if match else "NO") if backend is not None else "not counted"
        row["launches_saved"] = row["unfused_launches"] - row["fused_launches"]
        row["temp_bytes_avoided"] = row["unfused_temp_bytes"] - row["fused_temp_bytes"]
        rows.append(row)
    return rows


def network_totals(rows: list[dict]) -> list[dict]:
    """Per (network, op): layers, calls per pass and the per-pass sums of count x per-layer value."""
    sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        op = "group_norm" if r["op"].startswith("group_norm") else "geglu"
        s = sums[(r["network"], op)]
        s["layers"] += 1
        s["calls"] += r["count"]
        for key in ("fused_launches", "unfused_launches", "fused_temp_bytes", "unfused_temp_bytes",
                    "launches_saved", "temp_bytes_avoided"):
            s[key] += r["count"] * r[key]
    return [{"network": net, "op": op, **dict(s)} for (net, op), s in sums.items()]


# ----------------------------------------------------------------------------------- latency


def bench_shapes(op: str) -> list[tuple]:
    """The benchmark's shapes for ``op`` (the SD 1.4 GroupNorm+SiLU / GEGLU shapes it times):
    taken from the committed run, else the traced layers."""
    shapes = []
    for path in BENCH_RUNS[-1:]:
        for r in read_bench(path)[1]:
            if r["op"] == BENCH_OPS[op]:
                shape = tuple(int(s) for s in r["shape"].strip("()").split(","))
                if shape not in shapes:
                    shapes.append(shape)
    if not shapes:
        shapes = list(dict.fromkeys(l.shape for l in traced_layers() if l.op == op and (l.silu or op == "geglu")))
    return shapes


def reduce_latency_shape(op: str, shape, div_side: int, div_tokens: int) -> tuple:
    if op == "group_norm":
        return shape[:2] + tuple(max(1, s // div_side) for s in shape[2:])
    return (shape[0], max(1, shape[1] // div_tokens)) + tuple(shape[2:])


def local_latency(backend, op: str, shape, dtype="float32", repeats=5, warmup=1) -> dict:
    """Median device (and wall) ms of fused and unfused on ``backend`` at ``shape``."""
    layer = Layer("bench", op, tuple(shape), 1, groups=32, silu=True)
    x = _input(backend, shape, dtype)
    out = {}
    for fused, tag in ((True, "fused"), (False, "unfused")):
        t = backend.time(lambda: _call(backend, layer, x, fused), repeats=repeats, warmup=warmup)
        med = t.device_median if t.device_median is not None else t.wall_median
        out[f"{tag}_ms"] = med * 1e3
    return out


def gpu_run(path: Path | None = None) -> tuple[dict, dict]:
    """(header, {(op, shape, dtype, backend, variant): row}) of the committed GPU run."""
    if path is None:
        if not BENCH_RUNS:
            return {}, {}
        path = BENCH_RUNS[-1]
    header, rows = read_bench(path)
    table = {}
    for r in rows:
        for op, bench_op in BENCH_OPS.items():
            if r["op"] == bench_op:
                table[(op, r["shape"], r["dtype"], r["backend"], r["variant"])] = r
    return header, table


def run_label(header: dict, path: Path | None) -> str:
    device = header.get("device opencl", "?").split(",")[0]
    date = header.get("date", "?").split(" to ")[0]
    commit = header.get("commit", "?").split()[0]
    return f"{device}, {date}, commit {commit}" + (f" ({path.name})" if path else "")


def latency_rows(backend, scale: Scale, dtype="float32") -> tuple[list[dict], dict, Path | None]:
    header, gpu = gpu_run()
    path = BENCH_RUNS[-1] if BENCH_RUNS else None
    level = "quick" if scale.quick else "default"
    rows = []
    for op in OPS:
        shapes = bench_shapes(op)
        if scale.quick:
            shapes = shapes[:1] + shapes[-1:]
        for shape in shapes:
            key = _shape_text(shape)
            row = {"op": BENCH_OPS[op], "shape": key}
            for variant, backend_name, col in (("fused", "opencl", "h200_opencl_fused_ms"),
                                               ("unfused", "opencl", "h200_opencl_unfused_ms"),
                                               ("fused", "jax", "h200_jax_fused_ms"),
                                               ("unfused", "jax", "h200_xla_unfused_ms")):
                r = gpu.get((op, key, dtype, backend_name, variant))
                row[col] = fmt(r.get("device_ms")) if r else ""
                if r and backend_name == "opencl":
                    row[f"h200_{variant}_launches"] = r.get("launches", "")
                    row[f"h200_{variant}_temp_bytes"] = r.get("temp_bytes", "")
            torch_rows = [r for (o, s, d, b, _), r in gpu.items() if (o, s, d, b) == (op, key, dtype, "torch")]
            row["h200_torch_ms"] = fmt(torch_rows[0].get("device_ms")) if torch_rows else ""
            if backend is not None:
                local = tuple(shape) if scale.full else reduce_latency_shape(op, shape, LAT_DIV_SIDE[level],
                                                                              LAT_DIV_TOKENS[level])
                lat = local_latency(backend, op, local, dtype, repeats=2 if scale.quick else 5)
                row["local_shape"] = _shape_text(local)
                row["local_fused_ms"], row["local_unfused_ms"] = fmt(lat["fused_ms"]), fmt(lat["unfused_ms"])
            rows.append(row)
    return rows, header, path


def gpu_pass_ms(layers, dtype="float32") -> list[dict]:
    """Per (network, op): H200 OpenCL device ms per pass, fused and unfused, summed over the traced
    layers the committed run measured (count x median), with how many of the calls it covers."""
    _, gpu = gpu_run()
    sums: dict = defaultdict(lambda: defaultdict(float))
    for layer in layers:
        s = sums[(layer.network, layer.op)]
        s["calls"] += layer.count
        if layer.op == "group_norm" and not layer.silu:
            continue
        rows = {v: gpu.get((layer.op, _shape_text(layer.shape), dtype, "opencl", v)) for v in ("fused", "unfused")}
        if all(r and "device_ms" in r for r in rows.values()):
            s["covered"] += layer.count
            for v, r in rows.items():
                s[f"{v}_ms"] += layer.count * r["device_ms"]
    return [{"network": n, "op": o, "calls": int(s["calls"]), "covered": int(s["covered"]),
             "fused_ms": s["fused_ms"], "unfused_ms": s["unfused_ms"]} for (n, o), s in sums.items()]


# ----------------------------------------------------------------------------------- figure


def plot(path: Path, rows: list[dict], totals: list[dict], latency: list[dict] | None = None,
         title_note: str = "") -> Path:
    """Launches and temporary bytes per pass (fused vs unfused), and latency per shape."""
    ncols = 3 if latency else 2
    fig, axes = figure(width=5.0 * ncols, height=4.2, ncols=ncols)
    axes = np.asarray(axes).ravel()
    labels = [f"{t['network'].replace('vae_decoder', 'decoder')}\n{t['op']}" for t in totals]
    xs = np.arange(len(totals))
    ax = axes[0]
    ax.bar(xs - 0.2, [t["fused_launches"] for t in totals], 0.4, label="fused")
    ax.bar(xs + 0.2, [t["unfused_launches"] for t in totals], 0.4, label="unfused")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("kernel launches per pass")
    ax.set_title("launches (sum over traced layers)")
    ax.legend()
    ax = axes[1]
    unfused = [max(t["unfused_temp_bytes"], 1) / 2**20 for t in totals]
    ax.bar(xs + 0.2, unfused, 0.4, color="C1", label="unfused")
    ax.set_yscale("log")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("temporary MiB per pass (fused: 0)")
    ax.set_title("temporary bytes" + title_note)
    ax.legend()
    if latency:
        ax = axes[2]
        pairs = [(r, r.get("h200_opencl_fused_ms"), r.get("h200_opencl_unfused_ms")) for r in latency]
        source = "H200 OpenCL"
        if not any(f for _, f, _ in pairs):
            pairs = [(r, r.get("local_fused_ms"), r.get("local_unfused_ms")) for r in latency]
            source = "local OpenCL (reduced shapes)"
        pairs = [(r, float(f), float(u)) for r, f, u in pairs if f and u]
        xl = np.arange(len(pairs))
        ax.bar(xl - 0.2, [f for _, f, _ in pairs], 0.4, label="fused")
        ax.bar(xl + 0.2, [u for _, _, u in pairs], 0.4, label="unfused")
        ax.set_xticks(xl, [f"{r['op'].split('+')[0]}\n{r['shape']}" for r, _, _ in pairs], fontsize=6, rotation=60)
        ax.set_yscale("log")
        ax.set_ylabel("device ms per call")
        ax.set_title(f"latency, {source}, fp32")
        ax.legend()
    return save(fig, path)


# ----------------------------------------------------------------------------------- section


def build(out: Path, scale: Scale) -> Section:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    level = "quick" if scale.quick else "default"
    layers = traced_layers()
    backend, why = open_backend("opencl")
    side, tokens = COUNT_SIDE[level], COUNT_TOKENS[level]
    rows = layer_counts(layers, backend, "float32", side, tokens, full=scale.full)
    totals = network_totals(rows)
    counted = (f"counted by the OpenCL counters on {device_name(backend)} "
               + ("on the real shapes" if scale.full else
                  f"on scaled shapes (maps cut to {side}x{side}, GEGLU rows to {tokens}; same code path); "
                  "real-shape temporary bytes by the formula, checked against the counter on the counted shape")
               if backend is not None else
               f"OpenCL could not start here ({why}): launches and temporary bytes are by formula only, not counted")
    notes = [f"SD 1.4 traced by experiments/sd_shapes.py (UNet batch 2, VAE decoder batch 1); fp32 storage. {counted}.",
             "Formula: GroupNorm fused 1 launch, 0 B; unfused 3 launches (+1 SiLU, in place), 12*N*G B of float32 "
             "statistics; GEGLU fused 1, 0 B; unfused (erf) 6 launches, 6 temporaries of the output's size.",
             "Our unfused GroupNorm already keeps its intermediates down to the statistics (and runs SiLU in place), "
             "so its avoided bytes are small; the paper's 'no intermediate tensors' is against a graph of full-size "
             "reshape/mean/variance/normalize results, which is not counted here.",
             "Generated by `make reproduce` (paper_figures/fusion.py)."]
    columns = ["network", "op", "shape", "count", "fused_launches", "unfused_launches", "fused_temp_bytes",
               "unfused_temp_bytes", "counted_shape", "fused_counted_launches", "unfused_counted_launches",
               "fused_counted_temp_bytes", "unfused_counted_temp_bytes", "match", "claim"]
    files = []
    files += write_table(out, "fusion_group_norm", [r for r in rows if r["op"].startswith("group_norm")], columns,
                         "Fused vs unfused GroupNorm(+SiLU) on SD 1.4's layers: launches and temporary bytes per call",
                         notes)
    files += write_table(out, "fusion_gelu", [r for r in rows if r["op"].startswith("geglu")], columns,
                         "Fused vs unfused GEGLU (a * gelu(b)) on SD 1.4's layers: launches and temporary bytes per call",
                         notes)

    pass_ms = {(p["network"], p["op"]): p for p in gpu_pass_ms(layers)}
    header, _ = gpu_run()
    label = run_label(header, BENCH_RUNS[-1]) if BENCH_RUNS else "no committed GPU run"
    total_rows = []
    for t in totals:
        p = pass_ms.get((t["network"], t["op"]), {})
        total_rows.append({
            "network": NETWORKS.get(t["network"], t["network"]), "op": t["op"], "layers": t["layers"],
            "calls": t["calls"], "fused_launches": t["fused_launches"], "unfused_launches": t["unfused_launches"],
            "launches_saved": t["launches_saved"], "unfused_temp_MiB": fmt(t["unfused_temp_bytes"] / 2**20),
            "temp_bytes_avoided": t["temp_bytes_avoided"],
            "h200_calls_covered": f"{p.get('covered', 0)}/{p.get('calls', t['calls'])}",
            "h200_fused_ms": fmt(p.get("fused_ms")) if p.get("covered") else "",
            "h200_unfused_ms": fmt(p.get("unfused_ms")) if p.get("covered") else ""})
    files += write_table(out, "fusion_totals", total_rows, list(total_rows[0]),
                         "Per pass: launches saved and temporary bytes avoided by fusion (sum over the traced layers)",
                         [notes[0], notes[2], f"h200_*_ms: OpenCL device ms per pass from the committed run ({label}), "
                                    "count x median over the layers whose shape it measured (GroupNorm+SiLU and "
                                    "GEGLU shapes; plain GroupNorm not measured).", notes[3]])

    lat, header, path = latency_rows(backend, scale)
    lat_cols = ["op", "shape", "local_shape", "local_fused_ms", "local_unfused_ms", "h200_opencl_fused_ms",
                "h200_opencl_unfused_ms", "h200_jax_fused_ms", "h200_xla_unfused_ms", "h200_torch_ms",
                "h200_fused_launches", "h200_unfused_launches", "h200_fused_temp_bytes", "h200_unfused_temp_bytes"]
    local = (f"local: OpenCL on {device_name(backend)}, "
             + ("the real shapes" if scale.full else "reduced shapes (local_shape)") + ", device ms (median)"
             if backend is not None else f"local: not measured, OpenCL could not start ({why})")
    files += write_table(out, "fusion_latency", lat, lat_cols,
                         "Fused vs unfused latency per call (fp32): local and the committed GPU run",
                         [local + ".", f"h200_*: the committed run {label}; jax fused = our Pallas kernel, "
                          "xla unfused = jnp ops under XLA (which fuses them itself), torch = "
                          "F.group_norm+F.silu / chunk + a*F.gelu(gate). Launches/temp bytes as that commit counted "
                          "them (its unfused GroupNorm kept 8*N*G B of statistics; this tree's kernels 12*N*G B).",
                          notes[3]])
    files.append(plot(out / "fusion.png", rows, totals, lat))

    gn = {t["network"]: t for t in totals if t["op"] == "group_norm"}
    ge = [t for t in totals if t["op"] == "geglu"]
    mism = [r for r in rows if r["match"] == "NO"]
    summary = ("fusion: UNet GroupNorm " + f"{gn['unet']['unfused_launches']}->{gn['unet']['fused_launches']} launches, "
               f"decoder {gn['vae_decoder']['unfused_launches']}->{gn['vae_decoder']['fused_launches']}; GEGLU "
               f"{ge[0]['unfused_launches']}->{ge[0]['fused_launches']} launches, "
               f"{ge[0]['temp_bytes_avoided'] / 2**20:.0f} MiB temporaries avoided per UNet pass; "
               + ("counters = formula on every layer" if backend is not None and not mism else
                  f"{len(mism)} layers where counter != formula" if backend is not None else "by formula (no OpenCL)"))
    dec = pass_ms.get(("vae_decoder", "group_norm"))
    if dec and dec["covered"]:
        summary += f"; H200 decoder GroupNorm+SiLU {dec['fused_ms']:.1f} ms fused vs {dec['unfused_ms']:.1f} unfused"
    return Section(TITLE,
                   "Per SD 1.4 layer, fused GroupNorm and GEGLU are one launch with no temporary buffer where the "
                   "unfused kernels take 3-6 launches and temporaries (counted by the OpenCL counters), summed per "
                   "pass, with local and H200 latency: fusion wins everywhere except the one-work-group-per-group "
                   "GroupNorm on the decoder's large maps.",
                   files,
                   scaled_down=None if scale.full else
                   f"counts on scaled shapes (maps {side}x{side}, GEGLU rows {tokens}; bytes for the real shapes by a "
                   f"formula checked against the counters); local latency on reduced shapes",
                   summary=summary)

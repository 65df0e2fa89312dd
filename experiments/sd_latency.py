"""Stable Diffusion 1.4 per component, per configuration of the paper's switches: seconds and memory.

    python -m experiments.sd_latency --backend opencl                       # none vs paper, SD 1.4
    python -m experiments.sd_latency --backend jax --configs none paper fused_group_norm
    python -m experiments.sd_latency --backend opencl --tiny --iterations 2  # seconds on a CPU

Random weights with SD 1.4's shapes (drawn once, shared by every configuration), a batch of 2
for the UNet and text encoder (classifier-free guidance, as the pipeline runs it), 64 x 64
latents (512 x 512 images). For each configuration: one warm-up call per component (kernel
builds, JIT compilation), then ``--iterations`` timed calls of each component, each synchronized
with the device; each number is their median.
On OpenCL the timed calls run on a queue without profiling (``profiling=False``: the events
cost the host about 6 us per launch on an H200, ``experiments/probes/launch_cost.py``), as a
user would run; then the component is built again on a profiling queue and one more call is
counted: its launches, the sum of their device times, and its wall time (``*_launches``,
``*_device_s``, ``*_counted_wall_s``). Peak memory comes from the backend (OpenCL: bytes of live buffers it allocated, peak since the
component started; JAX: the process's peak, which never goes down).

On JAX the first call's seconds are split into tracing, lowering and XLA's backend compile
(``*_first_trace_s``, ``*_first_lower_s``, ``*_first_compile_s``, from jax.monitoring's duration
events). XLA autotunes each convolution and GEMM the first time it meets it and keeps the result
for the process, so the first configuration of a run pays the autotuning and the later ones reuse
much of it (H200, fp16: ``none`` first 24.2 s of XLA compile, the next ones 8-11 s); run one
configuration per process for the first call a user sees (``--process-per-config`` spawns one
per configuration, one after the other; each row records its ``process``). ``--backend-option
compilation_cache=DIR`` turns on JAX's persistent compilation cache (``JaxBackend``'s option): a
later process that compiles the same program loads XLA's executable (and its autotuning) from DIR
instead; ``*_first_cache_hits`` and ``*_first_cache_misses``
count the programs loaded and compiled, so a row says whether its first call was cold or warm.

Configurations (``CONFIGS``): ``none``, each of the paper's switches alone, ``paper`` (all of
them, the paper's literal choices) and ``best`` (``Optimizations.best()``: each switch as
measured on this backend, device and storage dtype, backends/optimizations.py's ``MEASURED``).
Things to try: ``--configs winograd2 winograd4 winograd6`` (the tile size trade-off), ``flash``
against ``partial_softmax`` (the paper's per-device choice), ``--dtype float16`` or ``bfloat16``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from datetime import datetime, timezone

import numpy as np

from backends import get_backend
from backends.optimizations import Optimizations, ablation
from experiments.kernels import git_commit
from reference.sd.checkpoint import random_parameters, storage_dtype
from reference.sd.pipeline import SD14_CONFIGS
from reference.sd.text_encoder import TextEncoder
from reference.sd.tiny import TINY_TEXT_ENCODER, TINY_UNET, TINY_VAE
from reference.sd.unet import UNet2DConditionModel
from reference.sd.vae import VAEDecoder

#: the paper's switches one at a time, all together, and the device's measured preset
CONFIGS = {**ablation(), "best": Optimizations.best()}
#: JAX's compile events (jax.monitoring) -> the row's keys: tracing, lowering to MLIR (the Pallas
#: kernels' Triton IR is built here), XLA's compilation (autotuning, the kernels' PTX)
JAX_COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                      "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                      "/jax/core/compile/backend_compile_duration": "compile_s"}
#: JAX's persistent compilation cache events -> the row's keys (programs loaded / compiled and stored)
JAX_CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": "cache_hits",
                    "/jax/compilation_cache/cache_misses": "cache_misses"}


class CompilePhases:
    """Seconds JAX spent per compile phase while active (``with phases: ...``), summed over every
    jitted function compiled meanwhile, from ``jax.monitoring``'s duration events, and the
    persistent compilation cache's hits and misses (``counts``)."""

    def __init__(self):
        self.seconds = dict.fromkeys(JAX_COMPILE_EVENTS.values(), 0.0)
        self.counts = dict.fromkeys(JAX_CACHE_EVENTS.values(), 0)
        self._active = False
        try:
            import jax.monitoring
        except ImportError:
            self.available = False
            return
        self.available = True
        jax.monitoring.register_event_duration_secs_listener(self._record)
        jax.monitoring.register_event_listener(self._count)

    def _record(self, event, duration, **_):
        if self._active and event in JAX_COMPILE_EVENTS:
            self.seconds[JAX_COMPILE_EVENTS[event]] += duration

    def _count(self, event, **_):
        if self._active and event in JAX_CACHE_EVENTS:
            self.counts[JAX_CACHE_EVENTS[event]] += 1

    def __enter__(self):
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.counts = dict.fromkeys(self.counts, 0)
        self._active = True
        return self

    def __exit__(self, *exc):
        self._active = False


COMPONENTS = (("text_encoder", TextEncoder), ("unet", UNet2DConditionModel), ("decoder", VAEDecoder))


def component_configs(tiny: bool) -> dict:
    """The networks' configs; the decoder's force_upcast is off, so ``--dtype float16`` times the
    decoder in float16 as the paper runs it (SD 1.4's config would run it in float32: reference/sd/vae.py)."""
    if tiny:
        return {"text_encoder": {**TINY_TEXT_ENCODER, "vocab_size": 1000}, "unet": TINY_UNET,
                "decoder": {**TINY_VAE, "force_upcast": False}}
    return {"text_encoder": SD14_CONFIGS["text_encoder"], "unet": SD14_CONFIGS["unet"],
            "decoder": {**SD14_CONFIGS["vae"], "force_upcast": False}}


def inputs(configs: dict, batch: int, dtype) -> dict:
    """Seeded random inputs of the pipeline's shapes (never zeros)."""
    rng = np.random.default_rng(0)
    unet = configs["unet"]
    side = unet["sample_size"]
    latents = rng.standard_normal((batch, unet["in_channels"], side, side)).astype(dtype)
    context = rng.standard_normal((batch, 77, unet["cross_attention_dim"])).astype(dtype)
    ids = rng.integers(0, configs["text_encoder"]["vocab_size"], size=(batch, 77))
    return {"text_encoder": (ids,), "unet": (latents, 501, context), "decoder": (latents[:1],)}


def release(backend, model) -> None:
    """Free a model's device memory before the next one is measured: its arrays, and what the
    backend derived from them (``clear_caches``: on OpenCL the transformed Winograd weights)."""
    model.params.clear()
    backend.clear_caches()
    gc.collect()


def timed_call(backend, model, args) -> float:
    start = time.perf_counter()
    backend.synchronize(model(*args))
    return time.perf_counter() - start


def counted_call(backend, model, args) -> dict:
    """One call on a backend with launch counters (OpenCL): its wall seconds, its launches, and
    the sum of its launches' device times (profiling events), whose ratio to the wall time is
    the host's share: launch work, Python, gaps between kernels."""
    with backend.measure() as counted:
        wall = timed_call(backend, model, args)
    return {"wall_s": wall, "launches": counted.launches, "device_s": counted.device_seconds()}


def autotune_result_files(directory) -> int:
    """How many autotuning results XLA keeps under ``directory`` (files at any depth; 0 if None)."""
    return sum(path.is_file() for path in Path(directory).rglob("*")) if directory else 0


def run_context(backend, backend_name: str) -> dict:
    """What a row needs to be reproduced beyond its configuration: the device, the commit (or
    BENCH_COMMIT on a copy without git), the process id (rows of one process share it) and, for JAX, the process's XLA_FLAGS, persistent
    compilation cache directory (None: off) and XLA's autotuning results (directory, mode, files)."""
    context = {"device": backend.device_info().get("name"), "commit": git_commit(), "process": os.getpid()}
    if backend_name == "jax":
        import jax

        context["xla_flags"] = os.environ.get("XLA_FLAGS", "")
        context["compilation_cache"] = jax.config.jax_compilation_cache_dir
        # XLA's autotuning results (JaxBackend's autotune_results): where, how, and how many
        # there were before this row's programs compiled (0: XLA times every candidate); XLA
        # keeps them one file each in a subdirectory per GPU description
        # (XLA's option names, read from the backend's public compiler_options: experiments do
        # not import a backend's modules, tests/test_layering.py)
        results = backend.compiler_options.get("xla_gpu_per_fusion_autotune_cache_dir")
        context["autotune_results"] = results
        context["autotune_results_mode"] = backend.compiler_options.get("xla_gpu_experimental_autotune_cache_mode")
        context["autotune_results_files"] = autotune_result_files(results)
    return context


def measure(backend_name: str, config_names, tiny: bool, iterations: int, batch: int, dtype, device=None,
            on_row=None, backend_options=None):
    """The rows of ``config_names``; ``on_row(rows so far)`` after each (so that a run cut short
    keeps what it measured). ``backend_options``: more keyword arguments of the backend."""
    configs = component_configs(tiny)
    shapes = {name: cls.build({**cls.DEFAULTS, **configs[name]}).parameter_shapes() for name, cls in COMPONENTS}
    t0 = time.perf_counter()
    params = {name: random_parameters(shapes[name], seed=i) for i, (name, _) in enumerate(COMPONENTS)}
    print(f"random weights: {sum(p.size for ps in params.values() for p in ps.values()) / 1e6:.0f}M parameters "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    data = inputs(configs, batch, dtype)
    phases = CompilePhases() if backend_name == "jax" else None
    print(HEADER, flush=True)
    rows = []
    for config_name in config_names:
        options = {**({"device": device} if device is not None else {}), **(backend_options or {})}
        be = get_backend(backend_name, optimizations=CONFIGS[config_name], **options)
        # OpenCL: the timed calls on a queue without profiling, the counted call on ``be``'s (profiling)
        timing_be = (get_backend(backend_name, optimizations=CONFIGS[config_name], profiling=False, **options)
                     if hasattr(be, "measure") else be)
        row = {"config": config_name, "backend": repr(be), **({"backend_options": backend_options} if backend_options else {}),
               **run_context(be, backend_name)}
        for name, cls in COMPONENTS:
            model = cls(configs[name], params[name], backend=timing_be, dtype=dtype, source="random parameters")
            timing_be.reset_peak_memory()
            if phases is not None:
                with phases:
                    row[f"{name}_first_s"] = timed_call(timing_be, model, data[name])  # compiles
                row.update({f"{name}_first_{phase}": s for phase, s in phases.seconds.items()})
                row.update({f"{name}_first_{event}": n for event, n in phases.counts.items()})
            else:
                row[f"{name}_first_s"] = timed_call(timing_be, model, data[name])  # builds
            times = [timed_call(timing_be, model, data[name]) for _ in range(iterations)]
            row[f"{name}_s"] = statistics.median(times)
            stats = timing_be.memory_stats()
            row[f"{name}_peak_mib"] = None if stats["peak_bytes"] is None else stats["peak_bytes"] / 2**20
            row["peak_scope"] = stats["peak_scope"]
            release(timing_be, model)
            if hasattr(be, "measure"):  # one more call, counted: launches, device time, wall time
                model = cls(configs[name], params[name], backend=be, dtype=dtype, source="random parameters")
                timed_call(be, model, data[name])  # builds, uploads
                counted = counted_call(be, model, data[name])
                row[f"{name}_launches"] = counted["launches"]
                row[f"{name}_device_s"] = counted["device_s"]
                row[f"{name}_counted_wall_s"] = counted["wall_s"]
                print(f"  {config_name} {name}: {counted['launches']} launches, device {counted['device_s'] * 1e3:.1f} ms, "
                      f"timed wall {row[f'{name}_s'] * 1e3:.1f} ms (/ device {row[f'{name}_s'] / counted['device_s']:.2f}), "
                      f"counted wall {counted['wall_s'] * 1e3:.1f} ms (profiling queue)", flush=True)
                release(be, model)
        row["choices"] = {f"{op} {how} -> {what}": n for (op, how, what), n in sorted(timing_be.choices.items())}
        print(format_row(row), flush=True)
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


def format_row(row) -> str:
    def mib(v):
        return "n/a" if v is None else f"{v:.0f}"

    return (f"| {row['config']} | {row['text_encoder_s'] * 1e3:.1f} | {row['unet_s'] * 1e3:.1f} | "
            f"{row['decoder_s'] * 1e3:.1f} | {mib(row['text_encoder_peak_mib'])} | {mib(row['unet_peak_mib'])} | "
            f"{mib(row['decoder_peak_mib'])} | {row['unet_first_s']:.1f} |"
            + (f" {row['unet_first_trace_s']:.1f} / {row['unet_first_lower_s']:.1f} / {row['unet_first_compile_s']:.1f} |"
               if "unet_first_trace_s" in row else " |"))


HEADER = ("| configuration | text encoder ms | UNet ms / iteration | decoder ms | text encoder peak MiB | "
          "UNet peak MiB | decoder peak MiB | UNet first call s | of which trace / lower / XLA compile s (JAX) |\n"
          "|---|---|---|---|---|---|---|---|---|")


def parse_backend_option(text: str) -> tuple[str, str]:
    """"NAME=VALUE" -> (NAME, VALUE); argparse's ``type``."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_xla_option(text: str) -> tuple[str, object]:
    """"NAME=VALUE" -> (NAME, VALUE as a bool, an int or the string); argparse's ``type``."""
    name, value = parse_backend_option(text)
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    return name, int(value) if value.lstrip("-").isdigit() else value


def measure_in_processes(backend_name: str, config_names, *args, on_row=None, **kwargs):
    """``measure`` with each configuration in a fresh process of its own (spawned), one after the
    other; the other arguments as for ``measure``. Every row's first call is then a cold process's
    (no autotuning or kernels inherited from an earlier configuration), and no row runs after
    others in the same process (on the H100, ``best`` measured last in one process ran about 20%
    slower than alone in its own: 12.71 against 10.36 ms, calls 20-21)."""
    rows = []
    for config_name in config_names:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as process:
            rows += process.submit(measure, backend_name, [config_name], *args, **kwargs).result()
        if on_row is not None:
            on_row(rows)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["numpy", "opencl", "jax"], default="opencl")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["none", "paper"])
    p.add_argument("--iterations", type=int, default=3, help="timed calls per component after the warm-up")
    p.add_argument("--batch", type=int, default=2, help="2: classifier-free guidance, as the pipeline")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--tiny", action="store_true", help="tiny SD-shaped networks instead of SD 1.4")
    p.add_argument("--device", default=None, help="OpenCL device")
    p.add_argument("--xla-option", action="append", default=[], metavar="NAME=VALUE", type=parse_xla_option,
                   help="JAX: an XLA option of the networks' programs (JaxBackend's compiler_options), e.g. "
                        "xla_gpu_enable_triton_gemm=false; repeatable")
    p.add_argument("--backend-option", action="append", default=[], metavar="NAME=VALUE", type=parse_backend_option,
                   help="a keyword argument of the backend, as a string, e.g. (JAX) fused_group_norm_form=split, "
                        "parameter_layouts=default, group_norm_view=slab, compilation_cache=DIR; repeatable (the backend checks the value)")
    p.add_argument("--json", default=None, help="write the rows as JSON (rewritten after each configuration)")
    p.add_argument("--process-per-config", action="store_true",
                   help="run each configuration in a process of its own (cold first calls, no row after others)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="save the ablation as stacked bars per configuration (paper_figures.ablation's figure)")
    args = p.parse_args(argv)
    xla_options = dict(args.xla_option)
    if xla_options and args.backend != "jax":
        p.error("--xla-option: only the jax backend compiles through XLA")
    backend_options = {**({"compiler_options": xla_options} if xla_options else {}), **dict(args.backend_option)}
    print(f"{'tiny' if args.tiny else 'SD 1.4'} components, batch {args.batch}, {args.dtype}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    def write_json(rows):
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)

    run = measure_in_processes if args.process_per_config else measure
    rows = run(args.backend, args.configs, args.tiny, args.iterations, args.batch, storage_dtype(args.dtype),
               args.device, on_row=write_json if args.json else None, backend_options=backend_options or None)
    if args.plot:
        from paper_figures import ablation

        group = {"source": "this machine", "shapes": "tiny SD-shaped" if args.tiny else "SD 1.4",
                 "backend": args.backend, "dtype": args.dtype}
        print(f"wrote {ablation.plot(ablation.table_rows([(group, rows)]), Path(args.plot))}")
    return rows


if __name__ == "__main__":
    main()

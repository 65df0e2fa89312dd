"""The kernel benchmark: each paper idea, variant, backend, storage dtype and SD 1.4 shape, first
checked against the float64 reference, then timed, next to torch and the device's ceilings.

    python -m experiments.kernels                    # full SD 1.4 shapes with a GPU, reduced without
    python -m experiments.kernels --ops attention --dtypes float16 --backends jax
    make bench BENCH_ARGS="--ops winograd --dtypes float32"

Method (llm.c's dev/cuda harness: one reference, many versions; check every version, then time it):

1. For each op and shape: seeded random normal inputs (never zeros; weights scaled by
   1/sqrt(fan_in) like torch's initialization), rounded to the storage dtype. The float64
   reference (``reference/``) runs on those same rounded values, on a part of the output that
   depends on nothing else, where the full reference would take too long on the host (the
   ``checked`` column): attention on batch 0 and its first 2 heads, convolution on the first 8
   output channels (of the full input), linear on the first 256 rows; GroupNorm and GEGLU whole.
2. For each backend (``get_backend(name)``, built once; OpenCL and JAX by default, numpy when
   asked) and variant, and for torch where it runs: one call through ``backend.compile`` (the JIT
   compilation on JAX, kernel builds on OpenCL), its output compared on that part: the relative
   Frobenius error, ``check`` = ok or FAIL against ``TOLERANCE`` (or the variant's own bound).
3. Then ``backend.time(fn, repeats, warmup, args=arrays)``: medians of the device time and of the
   wall time of one call. OpenCL's device time is the sum of the profiling events of every launch
   of the call; JAX's is one jitted program of R calls on distinct copies of the inputs (at least
   256 MiB of them, R <= 64), divided by R (JaxBackend.time: JAX's 20-40 us dispatch per call
   from Python would otherwise hide the kernels of a few microseconds, and one input read again
   and again would come from L2); torch's from a CUDA graph of back-to-back calls replayed between
   CUDA events (``peers.TorchCUDA.time``: torch's best setting for a short kernel, which keeps
   its eager dispatch out of the number). OpenCL's Winograd caches the
   transformed weights after the first call (as a deployed network does), so its timed calls leave
   out the filter transform; JAX's transforms them in every call.

Roles (column ``role``):

    ours       our versions of the paper's ideas: fused GroupNorm and GEGLU, the partially fused
               softmax and FlashAttention, Winograd F(2|4|6) (OpenCL kernels and JAX Pallas), and
               the OpenCL GEMM
    baseline   our unfused OpenCL versions (fused=False, naive attention, direct convolution):
               what the ideas improve on
    peer       other people's implementations: torch on CUDA, and on JAX the variants that are
               plain jnp, i.e. XLA's own fusion and kernels (fused=False, naive, direct, linear)
    reference  the numpy backend (float32 on the host; only with --backends numpy)

Columns:

    op            group_norm+silu | geglu | attention | conv3x3 | linear
    shape         group_norm+silu (N, C, H, W), 32 groups; geglu (B, tokens, 2F), the input;
                  attention (B, H, N, M, d); conv3x3 (N, C, H, W, O), stride 1, padding 1;
                  linear (rows, in, out)
    variant       fused | unfused; naive | partial_softmax | flash; direct | winograd2|4|6;
                  gemm; or the torch function
    backend, dtype, role
    rel_error     ||y - y_ref||_F / ||y_ref||_F on the checked part, in float64
    check, checked
    device_ms     median device milliseconds per call (``timer`` says how they were measured)
    wall_ms       median wall milliseconds per call until the result is ready; wall - device is
                  the host's overhead (launches, Python, dispatch)
    GB/s          minimal traffic (every input read once, every output written once) / device time
    TFLOP/s       conv3x3 2 N O C 9 H W (direct-convolution FLOPs, also for Winograd, which
                  multiplies less: an effective rate); attention 4 B H N M d; linear
                  2 rows in out; empty for group_norm+silu and geglu
    of_ceiling    the memory-bound ops' GB/s, the others' TFLOP/s, over the ceiling named in
                  ``ceiling``: the best rate measured in this run on the device the row ran on
                  (``peers``: copy bandwidth; fp32: FMA probe or cuBLAS without TF32; float16 and
                  bfloat16: the tensor-core matmul where torch measured it, else the fp32 rate)
    ceiling       which ceiling
    vs_best_peer  best peer device ms / this row's device ms, same op, shape and dtype
                  (> 1: faster than every peer)
    launches, temp_bytes  kernel launches and temporary buffer bytes of one call (OpenCL only)
    timer
    note          "failed: ..." where the call raised (the row then has no numbers)

Where a backend has no device timer (numpy) the wall time stands in for device time in the
derived columns. Outputs: ``<out>/kernels_<device>_<date>.csv`` (``# key: value`` header lines,
then the rows), ``.md`` (a header block, then one table per op) and ``_<op>.png`` per idea.
The CSV and Markdown are rewritten after every shape (header ``status: partial, ...`` until the
end), so a run stopped by a time limit keeps what it measured; each op's summary line is printed
when it finishes and all of them again at the end. Without a GPU (no CUDA for JAX and no OpenCL
GPU) the default is reduced shapes (spatial sides / 8, channels / 8, ...: see each op's
``shapes``), which run in minutes on a CPU. On a GPU the full run is long (the Winograd op
compiles 3 JAX kernels per shape and dtype); split it with --ops, --dtypes and --backends.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.metadata
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backends import get_backend
from reference import attention as ref_attention
from reference import elementwise as ref_elementwise
from reference import gelu as ref_gelu
from reference import gemm as ref_gemm
from reference import group_norm as ref_group_norm
from reference import winograd as ref_winograd
from reference.numerics import relative_frobenius_error

from . import peers, sd_shapes

OPS = ("group_norm", "gelu", "attention", "winograd", "gemm")
BACKENDS = ("opencl", "jax")
DTYPES = ("float32", "float16")
ALL_DTYPES = ("float32", "float16", "bfloat16")
SIZES = ("full", "reduced", "tiny")
REPO = Path(__file__).resolve().parents[1]

#: the largest relative Frobenius error a check accepts, per storage dtype (a variant may set its own)
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
#: the seed of every input; each (op, shape) draws from its own stream of it
SEED = 0


def storage_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# -- the ops ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One version of an op: ``kwargs`` select it on every backend; ``baseline``: the unfused
    version an idea is compared against; ``xla_on_jax``: plain framework code (jnp on JAX, so
    XLA's) on a backend whose baselines are peers (``Backend.baselines_are_peers``);
    ``tolerance``: its own bounds per dtype, where it is less accurate than the op's default."""

    name: str
    kwargs: dict = field(default_factory=dict)
    baseline: bool = False
    xla_on_jax: bool = False
    tolerance: dict = field(default_factory=dict)
    #: the backends that have this version (empty: every backend)
    backends: tuple = ()


def normal(rng, shape, scale=1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


class Op(ABC):
    """An idea's benchmark: shapes, inputs, the float64 reference on the checked part, the call
    on a backend and on torch, and FLOPs. Inputs are made in float32; the caller rounds them to
    the storage dtype, and gives the reference those rounded values in float64."""

    idea: str       # the --ops name (the module name in reference/ and backends/)
    op: str         # the op column
    memory_bound: bool
    variants: tuple[Variant, ...]
    torch_variant: str

    @abstractmethod
    def shapes(self, size: str) -> list[tuple]:
        """The shapes of a run: "full" (SD 1.4's), "reduced" (for a CPU) or "tiny" (the tests')."""

    @abstractmethod
    def inputs(self, shape, rng) -> tuple:
        """The op's arrays (float32), seeded random normal."""

    @abstractmethod
    def reference(self, *inputs):
        """The float64 reference of the checked part of the output."""

    def compared(self, y):
        """The checked part of a backend's output (all of it by default)."""
        return y

    @abstractmethod
    def checked(self, shape) -> str:
        """Which part of the output is checked, in words."""

    @abstractmethod
    def call(self, backend, variant: Variant):
        """fn(*arrays): the op on a backend."""

    @abstractmethod
    def torch_call(self, torch: "peers.TorchCUDA"):
        """fn(*tensors): torch's version (a peer)."""

    def flops(self, shape) -> int | None:
        """FLOPs of one call, None for the memory-bound ops."""
        return None


class GroupNormSiLU(Op):
    idea, op, memory_bound = "group_norm", "group_norm+silu", True
    variants = (Variant("fused", {"fused": True}),
                Variant("fused_one_launch", {"form": "one_launch"}, backends=("opencl", "jax")),
                Variant("fused_split", {"form": "split"}, backends=("opencl", "jax")),
                Variant("unfused", {"fused": False}, baseline=True, xla_on_jax=True))
    torch_variant = "F.group_norm+F.silu"
    GROUPS, EPS = 32, 1e-5
    #: the UNet's levels at batch 2, then the VAE decoder's at batch 1 (the issue's list)
    FULL = [(2, 320, 64, 64), (2, 640, 32, 32), (2, 1280, 16, 16), (1, 512, 128, 128), (1, 256, 256, 256),
            (1, 128, 512, 512)]

    def shapes(self, size):
        if size == "full":
            return self.FULL
        if size == "reduced":  # spatial sides / 8, channels kept (32 groups)
            return [(n, c, h // 8, w // 8) for n, c, h, w in self.FULL]
        return [(2, 64, 5, 3)]

    def inputs(self, shape, rng):
        c = shape[1]
        return normal(rng, shape), 1 + normal(rng, (c,), 0.1), normal(rng, (c,), 0.1)

    def reference(self, x, weight, bias):
        return ref_elementwise.silu(ref_group_norm.group_norm(x, self.GROUPS, weight, bias, self.EPS))

    def checked(self, shape):
        return "whole tensor"

    def call(self, backend, variant):
        if "form" in variant.kwargs:  # one of the two fused forms, whichever fused=True picks
            return lambda x, w, b: backend.group_norm_form(x, self.GROUPS, w, b, self.EPS, silu=True, **variant.kwargs)
        return lambda x, w, b: backend.group_norm(x, self.GROUPS, w, b, self.EPS, silu=True, **variant.kwargs)

    def torch_call(self, torch):
        return lambda x, w, b: torch.group_norm_silu(x, w, b, self.GROUPS, self.EPS)


class GEGLU(Op):
    idea, op, memory_bound = "gelu", "geglu", True
    variants = (Variant("fused", {"fused": True}),
                Variant("unfused", {"fused": False}, baseline=True, xla_on_jax=True))
    torch_variant = "chunk, a*F.gelu(gate)"
    #: the feed-forward input (B, tokens, 2F) of the UNet's four levels
    FULL = [(2, 4096, 2560), (2, 1024, 5120), (2, 256, 10240), (2, 64, 10240)]

    def shapes(self, size):
        if size == "full":
            return self.FULL
        if size == "reduced":  # tokens / 64 (spatial sides / 8), features / 4
            return [(b, max(1, n // 64), f // 4) for b, n, f in self.FULL]
        return [(2, 3, 40)]

    def inputs(self, shape, rng):
        return (normal(rng, shape),)

    def reference(self, x):
        return ref_gelu.geglu(x, approximate=False)

    def checked(self, shape):
        return "whole tensor"

    def call(self, backend, variant):
        return lambda x: backend.geglu(x, approximate=False, **variant.kwargs)

    def torch_call(self, torch):
        return torch.geglu


class Attention(Op):
    idea, op, memory_bound = "attention", "attention", False
    variants = (Variant("naive", {"method": "naive"}, baseline=True, xla_on_jax=True),
                Variant("partial_softmax", {"method": "partial_softmax"}),
                Variant("flash", {"method": "flash"}))
    torch_variant = "F.scaled_dot_product_attention"
    TEXT_TOKENS = 77
    CHECKED_HEADS = 2
    #: (B, H, N, M, d): the UNet's self- and cross-attention per level, the VAE's one head
    FULL = [(2, 8, 4096, 4096, 40), (2, 8, 4096, 77, 40), (2, 8, 1024, 1024, 80), (2, 8, 1024, 77, 80),
            (2, 8, 256, 256, 160), (1, 1, 4096, 4096, 512)]

    def shapes(self, size):
        if size == "full":
            return self.FULL
        if size == "reduced":  # image tokens / 64 (spatial sides / 8); the 77 text tokens and d kept
            return [(b, h, n // 64, m if m == self.TEXT_TOKENS else m // 64, d) for b, h, n, m, d in self.FULL]
        return [(2, 3, 33, 7, 16)]

    def inputs(self, shape, rng):
        b, h, n, m, d = shape
        return normal(rng, (b, h, n, d)), normal(rng, (b, h, m, d)), normal(rng, (b, h, m, d))

    def reference(self, q, k, v):
        heads = slice(0, self.CHECKED_HEADS)
        return ref_attention.attention(q[:1, heads], k[:1, heads], v[:1, heads])

    def compared(self, y):
        return y[:1, :self.CHECKED_HEADS]

    def checked(self, shape):
        heads = min(shape[1], self.CHECKED_HEADS)
        return "batch 0, head 0" if heads == 1 else f"batch 0, heads 0-{heads - 1}"

    def call(self, backend, variant):
        return lambda q, k, v: backend.attention(q, k, v, causal=False, **variant.kwargs)

    def torch_call(self, torch):
        return torch.attention

    def flops(self, shape):
        b, h, n, m, d = shape
        return 4 * b * h * n * m * d


class Conv3x3(Op):
    idea, op, memory_bound = "winograd", "conv3x3", False
    # Winograd's error grows with the tile (reference/winograd.py; tests/test_winograd.py measures
    # it at C = 32): F(6) is allowed 10x the fp32 default, F(4) and F(6) more in low precision
    variants = (Variant("direct", {"method": "direct"}, baseline=True, xla_on_jax=True),
                Variant("winograd2", {"method": "winograd", "tile": 2}),
                Variant("winograd4", {"method": "winograd", "tile": 4}, tolerance={"float16": 5e-2, "bfloat16": 1e-1}),
                Variant("winograd6", {"method": "winograd", "tile": 6},
                        tolerance={"float32": 1e-3, "float16": 1e-1, "bfloat16": 2e-1}))
    torch_variant = "F.conv2d (cuDNN)"
    CHECKED_CHANNELS = 8
    #: the reduced run's representatives: UNet level 1, an up block's skip concatenation
    #: (640 + 320 channels in), and the VAE decoder at 128 x 128 and at 512 x 512
    REPRESENTATIVES = [(2, 320, 64, 64, 320), (2, 960, 64, 64, 320), (1, 512, 128, 128, 512),
                       (1, 128, 512, 512, 128)]

    def shapes(self, size):
        if size == "full":  # every distinct 3x3 stride-1 convolution of the UNet and the decoder
            return sd_shapes.conv3x3_shapes()
        if size == "reduced":  # channels / 8, spatial sides / 8
            return [(n, c // 8, h // 8, w // 8, o // 8) for n, c, h, w, o in self.REPRESENTATIVES]
        return [(2, 12, 7, 5, 10)]

    def inputs(self, shape, rng):
        n, c, h, w, o = shape
        fan_in = c * 9
        return normal(rng, (n, c, h, w)), normal(rng, (o, c, 3, 3), fan_in**-0.5), normal(rng, (o,), fan_in**-0.5)

    def reference(self, x, w, b):
        return ref_winograd.conv2d(x, w[:self.CHECKED_CHANNELS], b[:self.CHECKED_CHANNELS], stride=1, padding=1)

    def compared(self, y):
        return y[:, :self.CHECKED_CHANNELS]

    def checked(self, shape):
        return f"output channels 0-{self.CHECKED_CHANNELS - 1}" if shape[4] > self.CHECKED_CHANNELS else \
            "all output channels"

    def call(self, backend, variant):
        return lambda x, w, b: backend.conv2d(x, w, b, stride=1, padding=1, **variant.kwargs)

    def torch_call(self, torch):
        return lambda x, w, b: torch.conv2d(x, w, b, padding=1)

    def flops(self, shape):
        n, c, h, w, o = shape
        return 2 * n * o * c * 9 * h * w


class Linear(Op):
    idea, op, memory_bound = "gemm", "linear", False
    variants = (Variant("gemm", xla_on_jax=True),)
    torch_variant = "F.linear"
    CHECKED_ROWS = 256
    #: the reduced run's representatives, full -> reduced (image tokens / 64, i.e. spatial sides
    #: / 8; the 77 text tokens and the time embedding's batch of 2 kept; features / 8)
    REDUCED = {(8192, 320, 320): (128, 40, 40), (154, 768, 320): (154, 96, 40),
               (2048, 640, 5120): (32, 80, 640), (2, 1280, 1280): (2, 160, 160)}

    def shapes(self, size):
        if size == "full":  # every distinct linear layer of the UNet
            return sd_shapes.linear_shapes()
        if size == "reduced":
            return list(self.REDUCED.values())
        return [(300, 16, 24)]

    def inputs(self, shape, rng):
        rows, fan_in, out = shape
        return normal(rng, (rows, fan_in)), normal(rng, (out, fan_in), fan_in**-0.5), normal(rng, (out,), fan_in**-0.5)

    def reference(self, x, weight, bias):
        return ref_gemm.linear(x[:self.CHECKED_ROWS], weight, bias)

    def compared(self, y):
        return y[:self.CHECKED_ROWS]

    def checked(self, shape):
        return f"rows 0-{self.CHECKED_ROWS - 1}" if shape[0] > self.CHECKED_ROWS else "all rows"

    def call(self, backend, variant):
        return lambda x, w, b: backend.linear(x, w, b)

    def torch_call(self, torch):
        return torch.linear

    def flops(self, shape):
        rows, fan_in, out = shape
        return 2 * rows * fan_in * out


BENCHMARKS = {op.idea: op for op in (GroupNormSiLU(), GEGLU(), Attention(), Conv3x3(), Linear())}


# -- who runs the ops ---------------------------------------------------------------------------


@dataclass
class Runner:
    """A backend or torch: ``name`` is the backend column, ``impl`` has asarray, to_numpy,
    compile and time; ``device`` is "gpu" or "host"."""

    name: str
    impl: object
    device: str

    @property
    def is_torch(self) -> bool:
        return isinstance(self.impl, peers.TorchCUDA)

    def variants(self, bench: Op) -> tuple[Variant, ...]:
        if self.is_torch:
            return (Variant(bench.torch_variant),)
        return tuple(v for v in bench.variants if not v.backends or self.name in v.backends)

    def call(self, bench: Op, variant: Variant):
        return bench.torch_call(self.impl) if self.is_torch else bench.call(self.impl, variant)

    def role(self, variant: Variant) -> str:
        if self.is_torch or (self.impl.baselines_are_peers and variant.xla_on_jax):
            return "peer"
        if self.impl.is_reference:
            return "reference"
        return "baseline" if variant.baseline else "ours"


@dataclass
class Setup:
    """The machine: runners, ceilings, the header's facts and notes (what was skipped and why)."""

    runners: list[Runner]
    ceilings: list[peers.Ceiling]
    header: dict
    notes: list[str]
    has_gpu: bool


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """The checkout's commit ("+dirty" with uncommitted changes), or BENCH_COMMIT where the tree
    is a copy without its git folder (e.g. sent to a GPU machine)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"] + " (BENCH_COMMIT)"

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"


def start_runners(backend_names, required: bool) -> tuple[list[Runner], dict, list[str]]:
    """Our backends (``get_backend(name)`` once each) and torch; a backend that cannot start is
    an error when ``required`` (named on the command line), else a note."""
    runners, devices, notes = [], {}, []
    for name in backend_names:
        try:
            backend = get_backend(name)
        except Exception as exc:  # noqa: BLE001  (OpenCLUnavailable, ImportError, a driver's error)
            if required:
                raise
            notes.append(f"backend {name}: not available ({type(exc).__name__}: {exc})")
            continue
        info = backend.device_info()
        kind = "gpu" if info["kind"] == "gpu" else "host"
        devices[name] = f"{info['name']}, {info['driver']}"
        runners.append(Runner(name, backend, kind))
    torch, why_not = peers.TorchCUDA.start()
    if torch is None:
        devices["torch"] = why_not
    else:
        info = torch.describe()
        devices["torch"] = f"{info['device']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}"
        runners.append(Runner("torch", torch, "gpu"))
    return runners, devices, notes


#: the ceilings' buffer bytes and host matmul size per run size: SD-sized on a GPU, smaller on a
#: CPU (still well beyond its last-level cache) to keep the run short
CEILING_SIZES = {"full": (peers.STREAM_BYTES, peers.HOST_MATMUL_SIZE), "reduced": (64 * 2**20, 1024),
                 "tiny": (16 * 2**20, 256)}


def measure_ceilings(runners: list[Runner], repeats: int, size: str) -> list[peers.Ceiling]:
    """The device's rates (``peers``), with the buffer sizes of ``CEILING_SIZES[size]``."""
    stream_bytes, matmul_size = CEILING_SIZES[size]
    ceilings = []
    for runner in runners:
        if runner.is_torch:
            ceilings += [runner.impl.copy_bandwidth(repeats), runner.impl.matmul_rate("float32", repeats),
                         runner.impl.matmul_rate("float16", repeats)]
        else:
            ceilings.append(peers.streaming_bandwidth(runner.impl, runner.name, runner.device, repeats, stream_bytes))
        device = None if runner.is_torch else runner.impl.device_info()["handle"]
        if peers.is_opencl_device(device):
            ceilings.append(peers.fma_probe(device, repeats))
    if any(runner.device == "host" for runner in runners):
        ceilings += [peers.host_copy_bandwidth(repeats, stream_bytes), peers.host_matmul_rate(repeats, matmul_size)]
    return ceilings


def ceiling_for(ceilings, device: str, bench: Op, dtype: str) -> peers.Ceiling | None:
    """The best rate of the row's kind measured on its device (see the module docstring)."""
    def best(kind):
        return max((c for c in ceilings if c.device == device and c.kind == kind), key=lambda c: c.value, default=None)

    if bench.memory_bound:
        return best("bandwidth")
    if dtype != "float32":
        return best("fp16 compute") or best("fp32 compute")
    return best("fp32 compute")


# -- one row --------------------------------------------------------------------------------------


def _shape_label(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def measure_row(runner: Runner, bench: Op, variant: Variant, shape, dtype: str, arrays, expected,
                traffic_in: int, repeats: int, warmup: int) -> dict:
    """Check one (runner, variant) on uploaded ``arrays`` against ``expected``, then time it."""
    row = {"op": bench.op, "shape": _shape_label(shape), "variant": variant.name, "backend": runner.name,
           "dtype": dtype, "role": runner.role(variant), "checked": bench.checked(shape)}
    fn = runner.impl.compile(runner.call(bench, variant))
    try:
        y = fn(*arrays)
        got = bench.compared(runner.impl.to_numpy(y))
        out_elements = math.prod(y.shape)
        del y
        timing = runner.impl.time(fn, repeats=repeats, warmup=warmup, args=arrays)
    except Exception as exc:  # noqa: BLE001  (a failing kernel is reported in its row, the run goes on)
        row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        tqdm.write(f"{bench.op} {row['shape']} {dtype} {runner.name} {variant.name}: {row['note']}", file=sys.stderr)
        return row
    error = relative_frobenius_error(got, expected)
    tolerance = variant.tolerance.get(dtype, TOLERANCE[dtype])
    seconds = timing.device_median if timing.device_median is not None else timing.wall_median
    flops = bench.flops(shape)
    row.update(rel_error=error, check="ok" if error <= tolerance else f"FAIL (> {tolerance:g})",
               device_ms=None if timing.device_median is None else 1e3 * timing.device_median,
               wall_ms=1e3 * timing.wall_median,
               **{"GB/s": (traffic_in + out_elements) * storage_dtype(dtype).itemsize / seconds / 1e9,
                  "TFLOP/s": None if flops is None else flops / seconds / 1e12},
               launches=timing.launches, temp_bytes=timing.temp_bytes, timer=timing.timer)
    return row


def set_peer_speeds(rows: list[dict]) -> None:
    """vs_best_peer of every timed row: the fastest peer's ms for its (op, shape, dtype) over its
    own ms; absent where no peer of that (op, shape, dtype) is among ``rows``."""
    best_peer: dict[tuple, float] = {}
    for row in rows:
        ms = _ms(row)
        if row["role"] == "peer" and ms is not None:
            key = (row["op"], row["shape"], row["dtype"])
            best_peer[key] = min(ms, best_peer.get(key, math.inf))
    for row in rows:
        row.pop("vs_best_peer", None)
        peer_ms, ms = best_peer.get((row["op"], row["shape"], row["dtype"])), _ms(row)
        if peer_ms is not None and ms is not None:
            row["vs_best_peer"] = peer_ms / ms


def finish_rows(rows: list[dict], ceilings, runners: list[Runner]) -> None:
    """Fill in of_ceiling, ceiling and vs_best_peer of ``rows`` (every row of one shape)."""
    device_of = {r.name: r.device for r in runners}
    set_peer_speeds(rows)
    for row in rows:
        ms = _ms(row)
        if ms is None:
            continue
        bench = next(b for b in BENCHMARKS.values() if b.op == row["op"])
        ceiling = ceiling_for(ceilings, device_of[row["backend"]], bench, row["dtype"])
        if ceiling is not None:
            rate = row["GB/s"] if bench.memory_bound else row["TFLOP/s"]
            row["of_ceiling"], row["ceiling"] = rate / ceiling.value, ceiling.name


def _ms(row) -> float | None:
    """The row's time for the derived columns: device ms, else (no device timer) wall ms."""
    if "note" in row:
        return None
    return row["device_ms"] if row.get("device_ms") is not None else row["wall_ms"]


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Result:
    rows: list[dict]
    summary: list[str]
    paths: list[Path]


def run(ops=OPS, backends=BACKENDS, dtypes=DTYPES, size: str | None = None, repeats: int = 10, warmup: int = 2,
        out: Path | str = REPO / "experiments" / "results", command: str = "",
        backends_required: bool = False) -> Result:
    """Benchmark ``ops`` on ``backends`` (+ torch where it runs) in ``dtypes``; ``size``: "full",
    "reduced", "tiny" (the tests' shapes) or None (full with a GPU, else reduced). Writes the CSV,
    Markdown and plots to ``out`` and returns the rows, one summary line per op and the paths."""
    if size not in (None, *SIZES):
        raise ValueError(f"size: expected None or one of {SIZES}, got {size!r}")
    if repeats < 10:
        raise ValueError(f"repeats: expected at least 10 timed calls, got {repeats}")
    started = time.perf_counter()
    runners, devices, notes = start_runners(backends, required=backends_required)
    has_gpu = any(r.device == "gpu" for r in runners if not r.is_torch)
    if size is None:
        size = "full" if has_gpu else "reduced"
        shapes_note = "full SD 1.4 shapes" if has_gpu else "no GPU: reduced shapes"
    else:
        shapes_note = f"{size} shapes (asked for)"
    ceilings = measure_ceilings(runners, repeats, size)
    supported = _supported_dtypes(runners, dtypes, notes)

    rows, summary = [], []
    shapes = {idea: BENCHMARKS[idea].shapes(size) for idea in ops}  # full conv/linear lists: traced once
    total = sum(len(shapes[idea]) * sum(len(r.variants(BENCHMARKS[idea])) for r in runners for d in dtypes
                                        if d in supported[r.name]) for idea in ops)
    header = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "command": command or "experiments.kernels.run(...)",
        "shapes": shapes_note,
        **{f"device {name}": text for name, text in devices.items()},
        "versions": ", ".join(f"{p} {_version(p)}" for p in ("numpy", "jax", "jaxlib", "pyopencl", "torch")),
        **{f"ceiling {i + 1}": str(c) for i, c in enumerate(ceilings)},
        "repeats": f"{repeats} timed calls after {warmup} warm-up calls (medians)",
        **{f"note {i + 1}": note for i, note in enumerate(notes)},
    }
    slug = _device_slug(runners, devices)

    def write(plots: bool) -> list[Path]:
        """The outputs so far (rewritten after every shape, so a run cut short keeps its rows)."""
        status = "complete" if len(rows) == total else f"partial, {len(rows)} of {total} rows"
        progress_header = {**header, "status": status, "elapsed": f"{time.perf_counter() - started:.0f} s"}
        return write_outputs(Path(out), rows, progress_header, summary, ops, dtypes, slug, plots)

    progress = tqdm(total=total, desc="kernels", unit="row", file=sys.stderr, mininterval=1.0)
    for idea in ops:
        bench, op_started, op_rows = BENCHMARKS[idea], time.perf_counter(), []
        for shape in shapes[idea]:
            shape_rows = []
            for dtype in dtypes:
                rng = np.random.default_rng([SEED, zlib.crc32(f"{idea} {shape}".encode())])
                inputs = tuple(x.astype(storage_dtype(dtype)) for x in bench.inputs(shape, rng))
                expected = bench.reference(*(x.astype(np.float64) for x in inputs))
                traffic_in = sum(x.size for x in inputs)
                for runner in runners:
                    if dtype not in supported[runner.name]:
                        continue
                    arrays = [runner.impl.asarray(x) for x in inputs]
                    for variant in runner.variants(bench):
                        progress.set_postfix_str(
                            f"{bench.op} {_shape_label(shape)} {dtype} {runner.name} {variant.name}")
                        shape_rows.append(measure_row(runner, bench, variant, shape, dtype, arrays, expected,
                                                      traffic_in, repeats, warmup))
                        progress.update()
                    del arrays
                    if not runner.is_torch:
                        runner.impl.clear_caches()  # OpenCL's Winograd weights of this shape
                    gc.collect()
            finish_rows(shape_rows, ceilings, runners)
            op_rows += shape_rows
            rows.extend(shape_rows)
            write(plots=False)
        summary.append(_summary_line(bench, op_rows, time.perf_counter() - op_started))
        tqdm.write(summary[-1])
    progress.close()
    return Result(rows, summary, write(plots=True))


def _supported_dtypes(runners, dtypes, notes) -> dict[str, list[str]]:
    """The requested dtypes each runner stores; the others are noted (e.g. bfloat16 on OpenCL)."""
    supported = {}
    for runner in runners:
        supported[runner.name] = []
        for dtype in dtypes:
            try:
                runner.impl.asarray(np.ones(4, storage_dtype(dtype)))
            except TypeError as exc:
                notes.append(f"{runner.name}: {dtype} skipped ({exc})")
                continue
            supported[runner.name].append(dtype)
    return supported


def _summary_line(bench: Op, rows: list[dict], seconds: float | None) -> str:
    failed = sum(1 for r in rows if "note" in r)
    bad = sum(1 for r in rows if r.get("check", "ok") != "ok")
    speedups: dict[str, list[float]] = {}
    for row in rows:
        if row["role"] == "ours" and "vs_best_peer" in row:
            speedups.setdefault(f"{row['backend']} {row['variant']}", []).append(row["vs_best_peer"])
    versus = ", ".join(f"{name} {statistics.median(v):.2f}x" for name, v in speedups.items()) or "no peer measured"
    fp32 = [r["rel_error"] for r in rows if r["dtype"] == "float32" and "rel_error" in r]
    worst = f"max fp32 rel_error {max(fp32):.1e}; " if fp32 else ""
    took = "" if seconds is None else f" in {seconds:.0f} s"
    return (f"{bench.idea}: {len(rows)} rows{took}, {bad} failed checks, {failed} errors; {worst}"
            f"ours vs best peer (median over shapes and dtypes): {versus}")


def _device_slug(runners, devices) -> str:
    gpu_names = [devices[r.name] for r in runners if r.device == "gpu"]
    if not gpu_names:
        return "cpu"
    name = gpu_names[0].split(",")[0].split("(")[0]
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# -- outputs --------------------------------------------------------------------------------------

COLUMNS = ["op", "shape", "variant", "backend", "dtype", "role", "rel_error", "check", "checked", "device_ms",
           "wall_ms", "GB/s", "TFLOP/s", "of_ceiling", "ceiling", "vs_best_peer", "launches", "temp_bytes", "timer",
           "note"]
MARKDOWN_COLUMNS = [("shape", "shape"), ("dtype", "dtype"), ("backend", "backend"), ("variant", "variant"),
                    ("role", "role"), ("rel_error", "rel. error"), ("check", "check"), ("device_ms", "device ms"),
                    ("wall_ms", "wall ms"), ("GB/s", "GB/s"), ("TFLOP/s", "TFLOP/s"), ("of_ceiling", "of ceiling"),
                    ("vs_best_peer", "vs best peer"), ("launches", "launches"), ("temp_bytes", "temp bytes"),
                    ("note", "note")]


def _format(key, value) -> str:
    if value is None:
        return ""
    if key == "rel_error":
        return f"{value:.2e}"
    if key == "of_ceiling":
        return f"{100 * value:.1f}%"
    if key == "vs_best_peer":
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_outputs(out: Path, rows, header: dict, summary, ops, dtypes, slug: str, plots: bool,
                  day: str | None = None) -> list[Path]:
    """The CSV and the Markdown (and, with ``plots``, one PNG per op) named by device and ``day``
    (YYYY-MM-DD, default today, UTC); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"kernels_{slug}_{day or datetime.now(timezone.utc).strftime('%Y-%m-%d')}"
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with open(csv_path, "w", newline="") as f:
        for key, value in header.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})

    lines = ["# Kernel benchmark (experiments/kernels.py)", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "Summary:", ""] + [f"- {line}" for line in summary]
    for idea in ops:
        bench = BENCHMARKS[idea]
        op_rows = [r for r in rows if r["op"] == bench.op]
        if not op_rows:
            continue
        shape_order = {s: i for i, s in enumerate(dict.fromkeys(r["shape"] for r in op_rows))}
        variant_order = {v.name: i for i, v in enumerate(bench.variants)}
        op_rows = sorted(op_rows, key=lambda r: (shape_order[r["shape"]], dtypes.index(r["dtype"]),
                                                 variant_order.get(r["variant"], len(variant_order)), r["backend"]))
        ceiling_names = sorted({r["ceiling"] for r in op_rows if r.get("ceiling")})
        lines += ["", f"## {bench.op} ({bench.idea})", "",
                  f"Checked against float64: {'; '.join(dict.fromkeys(r['checked'] for r in op_rows))}. "
                  f"Ceiling: {'; '.join(ceiling_names) or 'none measured'}. Timers: "
                  f"{'; '.join(sorted({r['timer'] for r in op_rows if r.get('timer')}))}.", "",
                  "| " + " | ".join(title for _, title in MARKDOWN_COLUMNS) + " |",
                  "|" + "---|" * len(MARKDOWN_COLUMNS)]
        lines += ["| " + " | ".join(_format(k, r.get(k)) for k, _ in MARKDOWN_COLUMNS) + " |" for r in op_rows]
    md_path.write_text("\n".join(lines) + "\n")

    paths = [csv_path, md_path]
    for idea in ops if plots else ():
        op_rows = [r for r in rows if r["op"] == BENCHMARKS[idea].op and _ms(r) is not None]
        if op_rows:
            paths.append(plot(op_rows, BENCHMARKS[idea], dtypes, Path(f"{stem}_{idea}.png"), header["shapes"]))
    return paths


def plot(rows, bench: Op, dtypes, path: Path, shapes_note: str) -> Path:
    """Time per call (log scale) against shape, one series per (backend, variant), a panel per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d in dtypes if any(r["dtype"] == d for r in rows)]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(1, len(shown), figsize=(max(6, 0.9 * len(shapes)) * len(shown), 5), squeeze=False,
                             sharey=True)
    styles = {"ours": "-", "baseline": ":", "peer": "--", "reference": "-."}
    for ax, dtype in zip(axes[0], shown):
        series = dict.fromkeys((r["backend"], r["variant"], r["role"]) for r in rows if r["dtype"] == dtype)
        for backend, variant, role in series:
            points = [(shapes.index(r["shape"]), _ms(r)) for r in rows
                      if (r["dtype"], r["backend"], r["variant"]) == (dtype, backend, variant)]
            xs, ys = zip(*points)
            ax.plot(xs, ys, styles[role], marker="o", label=f"{backend} {variant} ({role})")
        ax.set_yscale("log")
        ax.set_xticks(range(len(shapes)), shapes, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{bench.op}, {dtype}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("ms per call (device time)")
    fig.suptitle(f"{bench.op}: {shapes_note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- merging the parts of a run ------------------------------------------------------------------

#: CSV columns read back as numbers
NUMERIC = {"rel_error": float, "device_ms": float, "wall_ms": float, "GB/s": float, "TFLOP/s": float,
           "of_ceiling": float, "vs_best_peer": float, "launches": int, "temp_bytes": int}


def read_csv(path: Path) -> tuple[dict, list[dict]]:
    """(header, rows) of a CSV written by ``write_outputs``; empty cells become absent keys."""
    header, lines = {}, Path(path).read_text().splitlines()
    while lines and lines[0].startswith("# "):
        key, _, value = lines.pop(0)[2:].partition(": ")
        header[key] = value
    rows = []
    for raw in csv.DictReader(lines):
        row = {k: (NUMERIC[k](float(v)) if k in NUMERIC else v) for k, v in raw.items() if v != ""}
        rows.append(row)
    return header, rows


def merge(paths, out: Path, command: str = "") -> Result:
    """One table from several CSVs of one machine (a run split into calls, e.g. one per op to fit a
    time limit): the rows of every part, the first part listed winning where two measured the
    same (op, shape, variant, backend, dtype); ``vs_best_peer`` recomputed over the merged rows
    (each row keeps the ceiling its own part measured). The header lists every part."""
    named = re.match(r"kernels_(.+)_(\d{4}-\d{2}-\d{2})", Path(paths[0]).name)  # as write_outputs names it
    if named is None:
        raise ValueError(f"paths: expected the first CSV to keep its kernels_<device>_<YYYY-MM-DD> name, "
                         f"got {Path(paths[0]).name}")
    slug, day = named.groups()
    parts = [(Path(p), *read_csv(p)) for p in paths]
    merged: dict[tuple, dict] = {}
    for _, _, rows in parts:
        for row in rows:
            merged.setdefault((row["op"], row["shape"], row["variant"], row["backend"], row["dtype"]), row)
    rows = list(merged.values())
    set_peer_speeds(rows)
    first = parts[0][1]
    dates = sorted(part.get("date", "?") for _, part, _ in parts)
    header = {"date": dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"}
    header.update({k: v for k, v in first.items() if k.startswith(("device ", "versions", "shapes", "repeats", "commit"))})
    header["merged"] = f"{len(parts)} parts (the first listed wins where two measured the same row)"
    header["command"] = command or "experiments.kernels.merge(...)"
    for i, (path, part, part_rows) in enumerate(parts, start=1):
        header[f"part {i}"] = (f"{part.get('date')}: {part.get('command')} ({part.get('status')}, "
                               f"{part.get('elapsed')}, {len(part_rows)} rows; commit {part.get('commit')})")
        for key, value in part.items():
            if key.startswith("ceiling "):
                header[f"part {i} {key}"] = value
    ops = [idea for idea in OPS if any(r["op"] == BENCHMARKS[idea].op for r in rows)]
    dtypes = [d for d in ALL_DTYPES if any(r["dtype"] == d for r in rows)]
    summary = [_summary_line(BENCHMARKS[idea], [r for r in rows if r["op"] == BENCHMARKS[idea].op], None)
               for idea in ops]
    return Result(rows, summary, write_outputs(Path(out), rows, header, summary, ops, dtypes, slug, plots=True,
                                               day=day))


# -- command line ---------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    parser.add_argument("--backends", nargs="+", choices=("opencl", "jax", "numpy"), default=None,
                        help="default: opencl and jax, each where it starts")
    parser.add_argument("--dtypes", nargs="+", choices=ALL_DTYPES, default=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (>= 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before the timed ones")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--full", dest="size", action="store_const", const="full", help="SD 1.4's shapes")
    sizes.add_argument("--reduced", dest="size", action="store_const", const="reduced", help="scaled-down shapes")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                        help="measure nothing: merge these CSVs of one machine into one table in --out")
    args = parser.parse_args(argv)
    command = "python -m experiments.kernels " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.merge:
        result = merge(args.merge, args.out, command)
        for line in [*(f"wrote {p}" for p in result.paths), *result.summary]:
            print(line)
        return
    # JAX must not reserve most of the GPU: OpenCL and torch measure on the same device
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    result = run(ops=args.ops, backends=args.backends or BACKENDS, dtypes=args.dtypes, size=args.size,
                 repeats=args.repeats, warmup=args.warmup, out=args.out, command=command.strip(),
                 backends_required=args.backends is not None)
    for path in result.paths:
        print(f"wrote {path}")
    for line in result.summary:
        print(line)


if __name__ == "__main__":
    main()

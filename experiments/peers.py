"""What the kernels are measured against: the device's ceilings and torch's implementations.

Ceilings (each a ``Ceiling``, measured in the same run as the kernels, each only where its
library is installed):

    torch_copy            torch ``dst.copy_(src)`` of 1 GiB float32 on CUDA: bytes read + written / time
    streaming_bandwidth   each of our backends through the interface: ``mul_scalar(x, 0.5)`` of a
                          256 MiB float32 array, bytes read + written / its device time
    fma_probe             fp32 FMA rate of the OpenCL device: ``probes/fma.cl``, run with pyopencl
                          directly (8 independent dependent multiply-add chains per work-item;
                          FLOPs = 2 per multiply-add)
    torch matmul          cuBLAS 8192^3: float32 with TF32 off, and float16 (tensor cores)
    host_copy, host_matmul  on the host: a numpy copy of 256 MiB float32, a numpy float32 2048^3
                          matmul (the host BLAS); they are labelled "host" and serve the backends
                          that run on the CPU

(The sizes are the defaults; the benchmark's CPU runs pass smaller ones, named in each
ceiling's name.)

Peers (``TorchCUDA``, only with torch and a CUDA device; eager, as diffusers runs them): the same
op with the same arguments as our backends' ops, so the benchmark calls both alike:

    group_norm_silu   F.silu(F.group_norm(x, G, w, b, eps))        (diffusers' GroupNorm + SiLU)
    geglu             a, gate = x.chunk(2, -1); a * F.gelu(gate)   (diffusers' GEGLU)
    attention         F.scaled_dot_product_attention(q, k, v)      (torch picks flash / efficient / math)
    conv2d            F.conv2d(x, w, b, padding=1)                 (cuDNN, benchmark mode: best algorithm)
    linear            F.linear(x, w, b)                            (cuBLAS)

float32 runs with TF32 off everywhere (``allow_tf32 = False`` for matmul and cuDNN), so fp32 means
fp32 arithmetic, as in our backends. ``TorchCUDA.time`` returns a ``backends.Timing``: device
seconds per call from CUDA events recorded between back-to-back calls (while the host issues calls
faster than the GPU runs them, each interval is one call's GPU time, including the gaps between
its kernels; for calls shorter than their launch cost it is the launch cost, an upper bound), and
wall seconds per call with a synchronize, as the backends report them.

This module imports neither torch nor pyopencl at import time.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends import Timing

FMA_KERNEL = Path(__file__).parent / "probes" / "fma.cl"
#: multiply-adds per work-item per loop step of fma.cl (8 accumulators x 4 rounds)
FMAS_PER_STEP = 32
#: work-items launched per compute unit (enough resident threads on a GPU's multiprocessor)
FMA_WORK_ITEMS_PER_UNIT = 2048
#: the probe's launches are scaled to about this long
FMA_LAUNCH_SECONDS = 0.02

STREAM_BYTES = 256 * 2**20
TORCH_COPY_BYTES = 2**30
TORCH_MATMUL_SIZE = 8192
#: ``TorchCUDA.time``: calls per CUDA graph, enough for about this many seconds (at most 100)
GRAPH_SECONDS = 0.005
HOST_COPY_BYTES = 256 * 2**20
HOST_MATMUL_SIZE = 2048


@dataclass(frozen=True)
class Ceiling:
    """One measured rate: ``kind`` is "bandwidth" (GB/s), "fp32 compute" or "fp16 compute"
    (TFLOP/s); ``device`` is "gpu" or "host", the device it was measured on."""

    name: str
    kind: str
    device: str
    value: float

    @property
    def unit(self) -> str:
        return "GB/s" if self.kind == "bandwidth" else "TFLOP/s"

    def __str__(self):
        return f"{self.name}: {self.value:.4g} {self.unit} ({self.device})"


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# -- ceilings measured through our backends or on the host --------------------------------------


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:g} MiB"


def streaming_bandwidth(backend, label: str, device: str, repeats: int, nbytes: int = STREAM_BYTES) -> Ceiling:
    """``backend.mul_scalar(x, 0.5)`` on ``nbytes`` of float32: read + write bytes / device time
    (wall time where the backend has no device timer)."""
    x = backend.asarray(np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32))
    scale = backend.compile(lambda a: backend.mul_scalar(a, 0.5))
    timing = backend.time(lambda: scale(x), repeats=repeats, warmup=2)
    seconds = timing.device_median if timing.device_median is not None else timing.wall_median
    return Ceiling(f"{label} mul_scalar {_mib(nbytes)} float32", "bandwidth", device, 2 * nbytes / seconds / 1e9)


def host_copy_bandwidth(repeats: int, nbytes: int = HOST_COPY_BYTES) -> Ceiling:
    src = np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    seconds = _median_seconds(lambda: np.copyto(dst, src), repeats)
    return Ceiling(f"host numpy copy {_mib(nbytes)} float32", "bandwidth", "host", 2 * nbytes / seconds / 1e9)


def host_matmul_rate(repeats: int, n: int = HOST_MATMUL_SIZE) -> Ceiling:
    """The host BLAS: numpy float32 n x n x n matmul."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    seconds = _median_seconds(lambda: a @ b, repeats)
    return Ceiling(f"host numpy float32 matmul {n}^3", "fp32 compute", "host", 2 * n**3 / seconds / 1e12)


# -- the OpenCL device and its FMA probe ------------------------------------------------------


def is_opencl_device(device) -> bool:
    """Whether ``device`` (a backend's ``device_info()["handle"]``) is a pyopencl.Device, which
    the FMA probe can run on."""
    try:
        import pyopencl as cl
    except ImportError:
        return False
    return isinstance(device, cl.Device)


def opencl_device_kind(device) -> str:
    import pyopencl as cl

    return "gpu" if device.type & cl.device_type.GPU else "host"


def fma_probe(device, repeats: int) -> Ceiling:
    """fp32 FMA rate of ``device`` (a pyopencl.Device): fma.cl on compute units x 2048 work-items,
    iterations scaled so that a launch lasts about FMA_LAUNCH_SECONDS; median of ``repeats``
    launches by their profiling events."""
    import pyopencl as cl

    context = cl.Context([device])
    queue = cl.CommandQueue(context, properties=cl.command_queue_properties.PROFILING_ENABLE)
    kernel = cl.Program(context, FMA_KERNEL.read_text()).build().fma_chains
    work_items = device.max_compute_units * FMA_WORK_ITEMS_PER_UNIT
    out = cl.Buffer(context, cl.mem_flags.WRITE_ONLY, 4 * work_items)

    def launch_seconds(iterations: int) -> float:
        event = kernel(queue, (work_items,), None, out, np.int32(iterations), np.float32(0.9999), np.float32(1e-4))
        event.wait()
        return (event.profile.end - event.profile.start) * 1e-9

    iterations = 256
    launch_seconds(iterations)  # build and first-launch costs
    iterations = max(1, min(2**24, int(iterations * FMA_LAUNCH_SECONDS / launch_seconds(iterations))))
    seconds = statistics.median(launch_seconds(iterations) for _ in range(repeats))
    flops = 2 * FMAS_PER_STEP * iterations * work_items
    kind = opencl_device_kind(device)
    return Ceiling(f"OpenCL fp32 FMA probe ({device.name.strip()})", "fp32 compute", kind, flops / seconds / 1e12)


# -- torch on CUDA: peers and ceilings ----------------------------------------------------------


class TorchCUDA:
    """torch's implementations of the benchmarked ops on the first CUDA device, with the
    interface the benchmark uses for our backends: ``asarray``, ``to_numpy``, ``compile``,
    ``time``. ``TorchCUDA.start()`` returns (instance, None) or (None, why not)."""

    def __init__(self, torch):
        self.torch = torch
        self.F = torch.nn.functional
        self.device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        self.dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

    @classmethod
    def start(cls):
        try:
            import torch
        except ImportError:
            return None, "not installed"
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} installed, but no CUDA device"
        return cls(torch), None

    def describe(self) -> dict:
        return {"device": self.torch.cuda.get_device_name(self.device), "torch": self.torch.__version__,
                "cuda": self.torch.version.cuda, "cudnn": str(self.torch.backends.cudnn.version())}

    # -- the benchmark's runner interface -------------------------------------------------------

    def asarray(self, x: np.ndarray):
        """A host array (float32, float16 or bfloat16 values) as a CUDA tensor of its dtype (by
        way of float32, which holds every such value exactly)."""
        dtype = self.dtypes[np.dtype(x.dtype).name]
        return self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, dtype)

    def to_numpy(self, t) -> np.ndarray:
        return t.float().cpu().numpy()

    def compile(self, fn):
        """Eager execution, as diffusers runs by default: ``fn`` itself."""
        return fn

    def time(self, fn, repeats: int = 10, warmup: int = 2, args=None) -> Timing:
        """Device time per call from a CUDA graph of back-to-back calls of ``fn()`` (or
        ``fn(*args)``), replayed between CUDA events: torch's eager dispatch from Python stays out of
        the number, which matters for kernels of tens of microseconds
        (SDPA at (2, 8, 1024, 1024, 80) measured 0.024 and 0.054 ms in two runs with events
        between eager calls). The graph holds enough calls for about GRAPH_SECONDS. Where ``fn``
        cannot be captured, the timer is CUDA events between eager calls, and ``timer`` says so."""
        torch = self.torch
        if args is not None:
            fn = functools.partial(fn, *args)
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        timing = Timing(timer="CUDA graph of back-to-back calls, replays between CUDA events")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            timing.wall.append(time.perf_counter() - start)
        calls = max(1, min(100, round(GRAPH_SECONDS / max(statistics.median(timing.wall), 1e-6))))
        try:
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn()  # allocations on the capture stream's pool before capture
                with torch.cuda.graph(graph, stream=stream):
                    for _ in range(calls):
                        fn()
            torch.cuda.current_stream().wait_stream(stream)
            replay = graph.replay
        except Exception as exc:  # not capturable (e.g. a host synchronization inside fn)
            timing.timer = f"CUDA events between eager calls (no CUDA graph: {type(exc).__name__})"
            replay, calls = fn, 1
        replay()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(repeats + 1)]
        events[0].record()
        for event in events[1:]:
            replay()
            event.record()
        events[-1].synchronize()
        timing.device = [begin.elapsed_time(end) * 1e-3 / calls for begin, end in zip(events, events[1:])]
        return timing

    # -- peers: our ops' arguments, torch's implementations -------------------------------------

    def group_norm_silu(self, x, weight, bias, num_groups: int, eps: float):
        return self.F.silu(self.F.group_norm(x, num_groups, weight, bias, eps))

    def geglu(self, x):
        a, gate = x.chunk(2, dim=-1)
        return a * self.F.gelu(gate)

    def attention(self, q, k, v):
        return self.F.scaled_dot_product_attention(q, k, v)

    def conv2d(self, x, w, b, padding: int):
        return self.F.conv2d(x, w, b, padding=padding)

    def linear(self, x, w, b):
        return self.F.linear(x, w, b)

    # -- ceilings ---------------------------------------------------------------------------

    def copy_bandwidth(self, repeats: int) -> Ceiling:
        src = self.torch.randn(TORCH_COPY_BYTES // 4, device=self.device, dtype=self.torch.float32)
        dst = self.torch.empty_like(src)
        seconds = self.time(lambda: dst.copy_(src), repeats=repeats).device_median
        return Ceiling("torch copy_ 1 GiB float32", "bandwidth", "gpu", 2 * TORCH_COPY_BYTES / seconds / 1e9)

    def matmul_rate(self, dtype: str, repeats: int) -> Ceiling:
        n = TORCH_MATMUL_SIZE
        a, b = (self.torch.randn(n, n, device=self.device, dtype=self.dtypes[dtype]) for _ in range(2))
        seconds = self.time(lambda: a @ b, repeats=repeats).device_median
        name, kind = (("cuBLAS float32 matmul, TF32 off", "fp32 compute") if dtype == "float32" else
                      (f"cuBLAS {dtype} matmul (tensor cores)", "fp16 compute"))
        return Ceiling(f"{name} {n}^3", kind, "gpu", 2 * n**3 / seconds / 1e12)

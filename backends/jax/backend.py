"""``JaxBackend``: the op interface on ``jax.Array`` (pure functions, jit-able with static shapes).

The base class (backends/base.py) validates every call and resolves its variant; each
implementation here calls a pure function of the idea's module: ``group_norm`` (jnp and fused
Pallas GroupNorm, LayerNorm), ``gelu`` (jnp and fused Pallas GELU/GEGLU), ``attention`` (naive
jnp, partially fused softmax and flash in Pallas; the row softmax), ``winograd`` (Winograd with
Pallas transforms; XLA's direct convolution), ``upsample_conv`` (the upsamplers as four 2x2 output
phases), ``gemm`` (linear) and ``elementwise``. Under
``jax.jit`` the validation runs once, at trace time, on the static shapes.

``memory_stats`` reads the XLA allocator's counters of the default device (a process-wide peak
that JAX cannot reset; "unavailable" on the CPU), ``synchronize`` blocks on the array it is given,
``compile`` is ``jax.jit`` with the backend's ``compiler_options``. Beyond the interface:
``interpret``, ``device``, ``compiler_options`` (XLA options of ``compile``'s programs),
``group_norm_form`` (one of the fused GroupNorm's forms by name, for the benchmark),
``fused_group_norm_form`` (the form the fused switch takes; None: NETWORK_GROUP_NORM_FORM inside
a network program on a GPU, by size elsewhere), ``parameter_layouts`` (the weights' layouts in
``compile_network``'s programs; default "auto": XLA's, placed once), ``group_norm_view`` (the
unfused GroupNorm's view of x), ``group_norm_stats`` (the channels_last form's statistics
kernel), ``conv_bias`` (where the direct convolution adds its bias),
``upsample_conv`` (the upsamplers' form) and ``derived_weights`` (Winograd's transformed filters
and the phase kernels computed once with a network's weights, or in every call); ``clear_caches``
drops what the network programs derived.

The two network defaults are measurements (H100 80GB HBM3, fp16, SD 1.4 at batch 2;
experiments/results/issue13_h100_2026-12-07, calls 9 and 11): with the weights in XLA's layouts the
UNet's 53 filter transposes (1.26 ms of kernels per call) fall to 0.04 ms and its ``flash``
iteration from 12.9 to 12.1 ms (``none`` 17.9 -> 17.5); the fused GroupNorm in its "channels_last"
form reads the NHWC activations of cuDNN's convolutions in place, where the NCHW forms made XLA
transpose around every kernel: the decoder's kernels 7.18 -> 6.51 ms, the UNet's 13.52 -> 13.39.

Precision policy (the same semantics on CPU and GPU; the CPU runs the Pallas kernels in interpret
mode and has no tensor cores):

* float32 storage: everything in float32. Convolutions, linear layers, Winograd's GEMMs and both
  attention products at ``Precision.HIGHEST`` (no TF32, so no tensor cores on an NVIDIA GPU).
* float16 / bfloat16 storage: weights and activations are stored in the 16-bit dtype.
  - Convolutions (cuDNN), linear layers (cuBLASLt) and Winograd's GEMMs take 16-bit operands and
    return the storage dtype, accumulated in float32 on the tensor cores (``gemm.product_options``;
    why not a float32 result: gemm.py). The bias is added in float32; with ``conv_bias="epilogue"``
    the direct convolution keeps its float32 result until then (one rounding).
  - Attention: Q K^T on the tensor cores with float32 accumulation; the scores, the softmax and
    its statistics in float32; P rounded to the storage dtype for P V (tensor cores, float32
    accumulation), as FlashAttention 2 and SDPA do (attention.py).
  - GroupNorm, LayerNorm, GELU/GEGLU, SiLU and the elementwise ops load 16-bit values, compute in
    float32 and round the result once. The fused GELU/GEGLU kernels take a cheaper erfc there
    (``gelu.erfc_chebyshev``, within 4e-6 relative; every stored value one of the exact GELU's two
    16-bit neighbours); float32 storage keeps the float32-accurate one. Winograd's transforms
    compute in float32 and store V, U and M in the storage dtype (reference.winograd's emulation).
* Exponentials in the Pallas attention kernels (partially fused softmax and flash, every storage
  dtype): base 2 with the GPU's ``ex2.approx`` (relative error about 2^-22, within float32
  rounding; ``pallas_util.exp2``), ``jnp.exp2`` on the CPU. The jnp versions use XLA's exp.
* float64 is not a JAX storage dtype here (it needs jax_enable_x64); the NumPy reference covers it.

Compile time. XLA autotunes every convolution and GEMM of a program the first time it compiles it
(it times cuDNN's and its own candidates): SD 1.4's fp32 UNet took 114 s to its first call on an
H100, 92 s of them autotuning (experiments/results/issue13_h100_2026-12-07, calls 18-19).
``JaxBackend(compilation_cache=directory)`` (``use_compilation_cache``) keeps compiled programs,
and XLA's autotuning with them, on disk (JAX's persistent compilation cache): a later process loads
them instead (fp32 ``best``: UNet first call 6.4 s, all 38 programs loaded, against 67.7 s with
most of them compiled; calls 22-23). A process's first compile stays as slow.
``JaxBackend(autotune_results=...)`` goes after that first compile: XLA keeps one file per
convolution, GEMM or fusion it has timed (``xla_gpu_per_fusion_autotune_cache_dir``, keyed by the
instruction and the GPU's description) and times only what it finds no file for. The repository
can carry these files per GPU model (``autotune_results_dir``), read only by default; a directory
given instead is read and written, which is how such a directory is made. It carries the H100 80GB
HBM3's (backends/jax/autotune/, from every fp16 configuration and fp32 ``best``), and with them a
new process's first UNet call took 17.8 s for fp16 ``none`` (32.2 s without) and 20.4 s for fp32
``best`` (without, a step of 215 s ended before it; issue13_h100_2026-12-07, calls 24-25). Other GPU models compile cold
until their directory is committed.
"""

from __future__ import annotations

import pathlib
import re
import statistics
import time as _time
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from reference import _checks as checks

from ..base import Backend, Timing
from . import attention, elementwise, gelu, gemm, group_norm, layouts, upsample_conv, winograd
from .upsample_conv import FORMS as UPSAMPLE_CONV_FORMS  # (the name ``upsample_conv`` is also an option's)

#: the fused GroupNorm's form inside ``compile_network``'s programs on a GPU (module docstring)
NETWORK_GROUP_NORM_FORM = "channels_last"
#: Storage dtypes of this backend (float64 would need jax_enable_x64; the reference covers it).
STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(jnp.bfloat16))
#: ``time``: back-to-back calls per device sample, enough for about this many seconds.
SAMPLE_SECONDS = 0.02
#: ``time`` with ``args``: input copies per timed program, enough to hold this many bytes ...
COPY_BYTES = 256 << 20
#: ... and at most this many
MAX_COPIES = 64


def use_compilation_cache(directory) -> None:
    """Turn on JAX's persistent compilation cache in ``directory`` (created if missing) for this
    process: every program compiled from now on is stored there, whatever its compile time, and a
    later process compiling the same program (same HLO, options, device and jax version) loads it,
    with XLA's autotuning results (``jax_persistent_cache_enable_xla_caches``), instead of compiling
    it. A process-wide setting of JAX, like ``jax.config.update``."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


#: XLA's autotuning results of SD's programs, one directory per GPU model (``autotune_results_dir``):
#: the files XLA writes with ``xla_gpu_per_fusion_autotune_cache_dir``, one per convolution, GEMM
#: or Triton fusion it timed, named by a hash of the instruction and the GPU's description
AUTOTUNE_RESULTS = pathlib.Path(__file__).with_name("autotune")
#: the XLA options that ``autotune_results`` sets: the results' directory and how XLA uses it
AUTOTUNE_DIR_OPTION = "xla_gpu_per_fusion_autotune_cache_dir"
AUTOTUNE_MODE_OPTION = "xla_gpu_experimental_autotune_cache_mode"


def autotune_results_dir(device_kind: str) -> pathlib.Path:
    """The committed directory of a GPU model's autotuning results, e.g. "NVIDIA H200" ->
    backends/jax/autotune/NVIDIA_H200 (it may not exist)."""
    return AUTOTUNE_RESULTS / re.sub(r"[^A-Za-z0-9]+", "_", device_kind).strip("_")


def _autotune_options(autotune_results, device_kind: str, platform: str) -> tuple[dict, str]:
    """(XLA options, what was chosen) for ``JaxBackend``'s ``autotune_results``."""
    if autotune_results in (None, "off"):
        return {}, "off"
    if autotune_results == "committed":
        directory = autotune_results_dir(device_kind)
        if platform != "gpu" or not directory.is_dir():
            return {}, "none committed"
        return {AUTOTUNE_DIR_OPTION: str(directory), AUTOTUNE_MODE_OPTION: "AUTOTUNE_CACHE_MODE_READ"}, "committed"
    if not isinstance(autotune_results, (str, pathlib.Path)):
        raise TypeError(f"autotune_results: expected \"committed\", \"off\" or a directory, "
                        f"got {type(autotune_results).__name__}")
    pathlib.Path(autotune_results).mkdir(parents=True, exist_ok=True)
    return {AUTOTUNE_DIR_OPTION: str(autotune_results), AUTOTUNE_MODE_OPTION: "AUTOTUNE_CACHE_MODE_UPDATE"}, "directory"


def _one_of(name: str, value, choices):
    """``value``, or ValueError naming the option ``name`` and its ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


class JaxBackend(Backend):
    name = "jax"
    array_type = jax.Array
    baselines_are_peers = True  # the unfused variants are plain jnp: XLA's fusion and kernels

    def __init__(self, optimizations=None, interpret: bool | None = None, compiler_options: dict | None = None,
                 fused_group_norm_form: str | None = None, parameter_layouts: str = "auto",
                 group_norm_view: str = "grouped", group_norm_stats: str = "tiles", conv_bias: str = "separate",
                 flash_lowering: str = "auto",
                 partial_softmax_stats: str = "auto", upsample_conv: str = "upsample", derived_weights: str = "once",
                 compilation_cache=None, autotune_results="committed"):
        """``interpret``: run the Pallas kernels in the Pallas interpreter. None (default): True
        exactly when JAX's default backend is the CPU, where Pallas has no compiler; the choice is
        recorded in ``choices``. ``compiler_options``: XLA options of the programs ``compile``
        makes (``jax.jit``'s ``compiler_options``, e.g. ``{"xla_gpu_enable_triton_gemm": False}``).
        ``fused_group_norm_form``: the form of every fused GroupNorm (one of group_norm.FORMS).
        None (default): NETWORK_GROUP_NORM_FORM inside ``compile_network``'s programs on a GPU,
        where the activations are NHWC; elsewhere (an op on x stored NCHW, or the interpreter)
        ``group_norm.fused_form``'s choice by size. ``parameter_layouts``: "auto" (default:
        ``compile_network`` lets XLA choose the weights' layouts and places them once,
        ``layouts.NetworkProgram``) or "default" (row-major weights, which XLA relayouts inside
        every call where a kernel reads another layout, e.g. cuDNN's NHWC convolutions their
        OIHW filters). ``group_norm_view``: how the unfused (jnp)
        GroupNorm views x (group_norm.VIEWS), to measure the two in a network.
        ``group_norm_stats``: the statistics kernel of the fused GroupNorm's "channels_last" form
        (group_norm.CL_STATS: "tiles", the default, or "lanes", not yet measured on a GPU); each
        channels_last call's kernel is counted in ``choices``. ``conv_bias``:
        where the direct convolution adds its bias (winograd.CONV_BIAS: "separate", after the
        product's rounding to 16 bits, or "epilogue", to its float32 result before the one
        rounding, which XLA can fold into cuDNN's call for float16; ``winograd.conv2d_direct``).
        ``flash_lowering``: the flash switch's kernel (attention.FLASH_LOWERINGS: "auto", the
        default: the Mosaic GPU kernel for Hopper of attention_hopper.py where it can run the
        operands, the Triton kernel elsewhere (on the H200 it ran 1.6-2.4x faster than the Triton
        kernel at each SD shape it accepts, notes/attention.md v5); "triton", the Pallas Triton
        kernel everywhere; "mosaic", the Hopper kernel, an error where it cannot run); each flash
        call's kernel is counted in ``choices``. ``partial_softmax_stats``: where the partially
        fused softmax forms its N x 2 statistics (attention.PARTIAL_SOFTMAX_STATS: "reduction", the
        paper's, a kernel of its own that reads the stored scores; "scores", in the kernel that
        forms and stores them; "auto", the default: "scores" up to head dim 80, where it was
        measured faster, else "reduction", ``attention.partial_softmax_stats_for``); each
        partially fused softmax's form is counted in ``choices``. ``upsample_conv``: how
        ``upsample_conv2d`` (SD's upsamplers) runs (upsample_conv.FORMS): "upsample" (default), the
        upsampled image and then the convolution, or "phases", four 2x2 output phases in one
        convolution without the upsampled image, where they apply (a factor of 2, a 3x3 kernel,
        padding 1, the direct convolution; elsewhere "upsample"). Each call's form is counted in
        ``choices``. The phases are not the default yet: 1.26x and 1.76x at the decoder's first
        two upsamplers' shapes (batch 2) and 5% less decoder kernel time on the H100, but SD end to
        end within the processes' spread (notes/upsample_conv.md). ``derived_weights``: where
        what a kernel derives from a weight alone (Winograd's transformed filters, the phase
        kernels) is computed inside ``compile_network``'s programs (layouts.DERIVED_WEIGHTS):
        "once" (default), when the program places its weights, as engines do at load time; or
        "per_call", in every call. Each derivation's "once" or "per_call" is counted in
        ``choices`` (an op called alone, or with ``parameter_layouts="default"``, derives per
        call). ``compilation_cache``: a
        directory, to turn on
        JAX's persistent compilation cache there for the whole process (``use_compilation_cache``);
        None (default) leaves JAX's setting as it is. ``autotune_results``: where XLA finds the
        autotuning results of the convolutions and GEMMs it compiles, so that it times only the
        ones it finds no result for (module docstring, "Compile time"): "committed" (default) the
        repository's results for this GPU model (``autotune_results_dir``; read only, and nothing
        where there are none), a directory to read and write (created if missing; how a
        committed directory is made), or "off" (or None: XLA times every candidate). What was chosen is
        counted in ``choices``; an XLA option of the same name in ``compiler_options`` wins."""
        super().__init__(optimizations)
        if compilation_cache is not None:
            use_compilation_cache(compilation_cache)
        if fused_group_norm_form is not None and fused_group_norm_form not in group_norm.FORMS:
            raise ValueError(f"fused_group_norm_form: expected None or one of {group_norm.FORMS}, "
                             f"got {fused_group_norm_form!r}")
        self.fused_group_norm_form = fused_group_norm_form
        self._network_traces = 0  # > 0 while compile_network's fn is being traced
        self._network_programs = weakref.WeakSet()  # compile_network's NetworkPrograms (clear_caches)
        self.parameter_layouts = _one_of("parameter_layouts", parameter_layouts, layouts.PARAMETER_LAYOUTS)
        self.group_norm_view = _one_of("group_norm_view", group_norm_view, group_norm.VIEWS)
        self.group_norm_stats = _one_of("group_norm_stats", group_norm_stats, group_norm.CL_STATS)
        self.conv_bias = _one_of("conv_bias", conv_bias, winograd.CONV_BIAS)
        self.flash_lowering = _one_of("flash_lowering", flash_lowering, attention.FLASH_LOWERINGS)
        self.partial_softmax_stats = _one_of("partial_softmax_stats", partial_softmax_stats,
                                             ("auto", *attention.PARTIAL_SOFTMAX_STATS))
        self.upsample_conv = _one_of("upsample_conv", upsample_conv, UPSAMPLE_CONV_FORMS)
        self.derived_weights = _one_of("derived_weights", derived_weights, layouts.DERIVED_WEIGHTS)
        if compiler_options is not None and not isinstance(compiler_options, dict):
            raise TypeError(f"compiler_options: expected a dict of XLA options, got {type(compiler_options).__name__}")
        platform = jax.default_backend()
        #: the device whose memory ``memory_stats`` reports (JAX's default device)
        self.device = jax.devices()[0]
        self.vendor = self.device.device_kind if platform != "cpu" else "cpu"
        autotune_options, autotuning = _autotune_options(autotune_results, self.device.device_kind, platform)
        self.choices[("xla", "autotune results", autotuning)] += 1
        self.compiler_options = {**autotune_options, **(compiler_options or {})}
        self.interpret = (platform == "cpu") if interpret is None else bool(interpret)
        self.choices[("pallas", "interpret" if self.interpret else "compiled", platform)] += 1

    def __repr__(self):
        return f"JaxBackend({jax.default_backend()}, interpret={self.interpret}, optimizations={self.optimizations})"

    # -- arrays -------------------------------------------------------------------------------

    def asarray(self, x):
        if not isinstance(x, jax.Array):
            x = np.asarray(x)
        self._check_arrays(x=x)
        return jnp.asarray(x)

    def to_numpy(self, x):
        if not isinstance(x, jax.Array):
            raise TypeError(f"x: expected a jax.Array, got {type(x).__name__} (convert it with the backend's asarray)")
        return np.asarray(x)

    def _check_arrays(self, **arrays):
        for name, x in arrays.items():
            if x is not None and np.dtype(x.dtype) not in STORAGE_DTYPES:
                raise TypeError(f"{name}: the jax backend stores float32, float16 or bfloat16, got {x.dtype}")

    # -- device -------------------------------------------------------------------------------

    def memory_stats(self) -> dict:
        """``{"in_use_bytes", "peak_bytes", "peak_scope"}`` of the default device, from
        ``jax.Device.memory_stats()`` ("bytes_in_use", "peak_bytes_in_use": the XLA allocator's
        counters, for every array of the process on that device).

        ``peak_scope`` is ``"process"``: JAX cannot reset the allocator's peak, so it is the peak
        since the process started (``reset_peak_memory`` is a no-op). Where the device reports no
        statistics (the CPU: ``memory_stats()`` is None) or lacks either key, both numbers are
        None and the scope is ``"unavailable"``."""
        stats = self.device.memory_stats()
        if not stats or "bytes_in_use" not in stats or "peak_bytes_in_use" not in stats:
            return super().memory_stats()
        return {"in_use_bytes": int(stats["bytes_in_use"]), "peak_bytes": int(stats["peak_bytes_in_use"]),
                "peak_scope": "process"}

    def reset_peak_memory(self) -> None:
        """A no-op: JAX has no call that resets the allocator's peak, which therefore covers the
        whole process (``memory_stats()["peak_scope"] == "process"``). To measure the peak of one
        computation, run it in a fresh process."""

    def synchronize(self, x=None):
        """Wait until ``x`` (an array or a pytree of arrays) has been computed
        (``jax.block_until_ready``) and return it. JAX dispatches asynchronously per array and has
        no device-wide barrier, so ``synchronize()`` without ``x`` waits for nothing: to time a
        computation, pass its result."""
        return x if x is None else jax.block_until_ready(x)

    def device_info(self) -> dict:
        platform = self.device.platform
        return {"name": f"{self.device.device_kind} ({platform})", "kind": "cpu" if platform == "cpu" else "gpu",
                "driver": f"jax {jax.__version__}, {platform} platform {self.device.client.platform_version}",
                "handle": self.device}

    def compile(self, fn):
        """``jax.jit(fn)``: one XLA program per input shapes, its arguments traced (not constants),
        compiled with the backend's ``compiler_options``."""
        return jax.jit(fn, compiler_options=self.compiler_options or None)

    def compile_network(self, fn):
        """``compile(fn)``, or with ``parameter_layouts="auto"`` (the default) a
        ``layouts.NetworkProgram``: the weights (``fn``'s first argument) in the layouts XLA
        chooses, placed once, and with ``derived_weights="once"`` (the default) what the kernels
        derive from them computed with them. While fn is traced, a fused GroupNorm takes its
        network form (``fused_group_norm_form``)."""

        def network(*args):
            self._network_traces += 1
            try:
                return fn(*args)
            finally:
                self._network_traces -= 1

        if self.parameter_layouts == "default":
            return self.compile(network)
        program = layouts.NetworkProgram(network, self.compiler_options, self.choices)
        self._network_programs.add(program)
        return program

    def clear_caches(self) -> None:
        """Forget the derived weights (and the placed weights' dicts) that ``compile_network``'s
        programs hold (``NetworkProgram.forget_weights``), so their device memory can go; the
        compiled programs stay."""
        for program in list(self._network_programs):
            program.forget_weights()

    def _traced_group_norm_form(self) -> str | None:
        """The form a fused GroupNorm traced now takes (``fused_group_norm_form``; None:
        ``group_norm.fused_form``'s choice by size)."""
        if self.fused_group_norm_form is not None:
            return self.fused_group_norm_form
        if self._network_traces and not self.interpret:
            return NETWORK_GROUP_NORM_FORM
        return None

    def time(self, fn, repeats: int = 10, warmup: int = 2, args=None) -> Timing:
        """Wall time: one call until its result is ready. Device time, with ``args`` (the arrays
        ``fn`` takes): one jitted program calls ``fn`` on R distinct copies of ``args`` (R such
        that the copies hold at least COPY_BYTES, at most MAX_COPIES); back-to-back runs of it,
        divided by R. One dispatch per R kernels, so a kernel of a few microseconds is not hidden
        behind JAX's dispatch (about 20-40 us per call from Python), and distinct inputs, so XLA
        cannot merge the calls and an input smaller than L2 is not read from it every time. In
        interpret mode (no GPU) one copy: an interpreted kernel takes far longer than a dispatch,
        and 64 copies of each in one program made the tests' benchmark run compile for 90 s.
        Without ``args``: k back-to-back calls of ``fn()`` with one ``block_until_ready`` at the
        end, divided by k; where the host dispatches slower than the device runs (tiny ops) that
        is the dispatch time, an upper bound. k is chosen so that a sample lasts about
        SAMPLE_SECONDS; only the last result of a sample is waited for: the calls run in order
        on the device, so its completion ends the sample."""
        args = None if args is None else tuple(args)
        one_call = fn if args is None else (lambda: fn(*args))
        for _ in range(warmup):
            jax.block_until_ready(one_call())
        timing = Timing(timer="JAX: back-to-back calls, one block_until_ready per sample" if args is None else
                        "JAX: one program of R calls on distinct input copies, back-to-back programs")
        for _ in range(repeats):
            start = _time.perf_counter()
            jax.block_until_ready(one_call())
            timing.wall.append(_time.perf_counter() - start)
        sample, per_sample = one_call, 1
        if args is not None:
            nbytes = sum(x.size * x.dtype.itemsize for x in args)
            copies = 1 if self.interpret else max(1, min(MAX_COPIES, -(-COPY_BYTES // max(nbytes, 1))))
            inputs = [[jnp.array(x, copy=True) for x in args] for _ in range(copies)]
            program = jax.jit(lambda inputs: [fn(*one) for one in inputs])
            jax.block_until_ready(program(inputs))  # compiles
            sample, per_sample = (lambda: program(inputs)), copies
        start = _time.perf_counter()
        jax.block_until_ready(sample())
        calls = max(1, min(1000, round(SAMPLE_SECONDS / max(_time.perf_counter() - start, 1e-9))))
        for _ in range(repeats):
            start = _time.perf_counter()
            for _ in range(calls):
                result = sample()
            jax.block_until_ready(result)
            timing.device.append((_time.perf_counter() - start) / calls / per_sample)
        return timing

    # -- implementations ------------------------------------------------------------------------

    def _group_norm(self, x, num_groups, weight, bias, eps, *, fused, silu):
        if fused:
            form = self._traced_group_norm_form() or group_norm.fused_form(x.size)
            stats = "tiles"
            if form == "channels_last":
                stats = self.group_norm_stats
                self.choices[("group_norm", "channels_last statistics", stats)] += 1
            return group_norm.group_norm_fused(x, num_groups, weight, bias, eps, silu, self.interpret, form=form,
                                               stats=stats)
        return group_norm.group_norm(x, num_groups, weight, bias, eps, silu, view=self.group_norm_view)

    def group_norm_form(self, x, num_groups, weight=None, bias=None, eps=1e-5, silu=False, form="one_launch"):
        """The fused GroupNorm(+SiLU) in one named form ("one_launch" or "split", group_norm.py),
        whichever ``fused=True`` picks: the benchmark times both."""
        eps = checks.check_group_norm(x, num_groups, weight, bias, array_type=self.array_type, eps=eps)
        self._check_arrays(x=x, weight=weight, bias=bias)
        return group_norm.group_norm_fused(x, int(num_groups), weight, bias, eps, bool(silu), self.interpret, form=form)

    def _gelu(self, x, approximate, *, fused):
        return gelu.gelu_fused(x, approximate, self.interpret) if fused else gelu.gelu(x, approximate)

    def _geglu(self, x, approximate, *, fused):
        return gelu.geglu_fused(x, approximate, self.interpret) if fused else gelu.geglu(x, approximate)

    def _attention(self, q, k, v, scale, method, *, causal):
        lowering = "triton"
        # inside a network program the flash kernel reads the heads where the projections put
        # them, (B, N, H, d): the swaps cancel the network's head transposes; an op called alone
        # reads its (B, H, N, d) operands in place, where the swaps would be copies
        heads_axis = 2 if self._network_traces else 1
        if method == "flash":  # resolved here, where it can be counted, and passed on
            lowering = attention.flash_kernel_for(q, k, v, causal, self.flash_lowering, self.interpret)
            self.choices[("attention", "flash kernel", lowering)] += 1
            self.choices[("attention", "flash operands", attention.FLASH_LAYOUTS[heads_axis])] += 1
        stats = "reduction"
        if method == "partial_softmax":  # likewise its statistics' form
            stats = attention.partial_softmax_stats_for(q.shape[-1], self.partial_softmax_stats)
            self.choices[("attention", "partial softmax statistics", stats)] += 1
        return attention.attention(q, k, v, scale, method, self.interpret, causal, lowering, stats, heads_axis)

    def _conv2d_direct(self, x, w, b, stride, padding):
        return winograd.conv2d_direct(x, w, b, stride, padding, bias_form=self.conv_bias)

    def _derived(self, w, kind: str, fn):
        """fn(w), a function of the weight w alone: with ``derived_weights="once"`` inside a
        network program an input computed with its weights (``layouts.derived_weight``), else
        computed here; which of the two is counted in ``choices``."""
        if self.derived_weights == "once":
            value, when = layouts.derived_weight(w, kind, fn)
        else:
            value, when = fn(w), "per_call"
        self.choices[("derived weight", kind, when)] += 1
        return value

    def _conv2d_winograd(self, x, w, b, padding, tile):
        u = self._derived(w, f"winograd filter transform m={tile}", lambda w: winograd.filter_transform(w, tile))
        return winograd.conv2d_winograd(x, w, b, padding, tile, self.interpret, u=u)

    def _upsample_conv2d(self, x, w, b, scale_factor, padding, method, tile):
        form = self.upsample_conv
        if not upsample_conv.phases_apply(scale_factor, w.shape[2:], padding, method):
            form = "upsample"  # the only form there; counted as such
        self.choices[("upsample_conv2d", "form", form)] += 1
        if form == "phases":
            kernels = self._derived(w, "upsample phase kernels", upsample_conv.phase_kernels)
            return upsample_conv.upsample_conv2d_phases(x, w, b, bias_form=self.conv_bias, kernels=kernels)
        return super()._upsample_conv2d(x, w, b, scale_factor, padding, method, tile)

    # the ops whose jnp function has the implementation's signature
    _layer_norm = staticmethod(group_norm.layer_norm)
    _silu = staticmethod(elementwise.silu)
    _quick_gelu = staticmethod(elementwise.quick_gelu)
    _softmax = staticmethod(attention.softmax)
    _linear = staticmethod(gemm.linear)
    _upsample_nearest2d = staticmethod(elementwise.upsample_nearest2d)
    _add = staticmethod(elementwise.add)
    _add_broadcast = staticmethod(elementwise.add_broadcast)
    _mul_scalar = staticmethod(elementwise.mul_scalar)
    _concat = staticmethod(jnp.concatenate)
    _reshape = staticmethod(jnp.reshape)

    def _transpose(self, x, axes):
        """A jax.Array has no strides: the result is a new array in the default (row-major, i.e.
        C-contiguous) layout; under jit XLA may fuse the copy into the consumer."""
        return jnp.transpose(x, axes)

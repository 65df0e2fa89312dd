"""The op interface as code: ``Backend``, the abstract class every backend implements.

DESIGN.md's op interface, one method each. A public method (``group_norm``, ``attention``, ...)
is the same on every backend and does three things in order:

1. validates its arguments with the reference's validators (``reference/_checks.py``), so bad
   input raises the same error on every backend, plus the backend's own array checks
   (``_check_arrays``: its array type, storage dtypes, device);
2. resolves the variant (``fused=None``, ``method=None``, ``tile=None``) from the backend's
   ``Optimizations`` (with ``Optimizations.best()``: from the measured rule of this backend,
   device and the call's storage dtype), counting every default, "auto" or "best" decision in
   ``choices``;
3. calls the backend's implementation, a method of the same name with a leading underscore
   (``_group_norm(x, num_groups, weight, bias, eps, fused=..., silu=...)``), with arguments
   already checked and normalized (ints, floats, bools, a concrete variant).

A backend subclass supplies only step 3 (the ``@abstractmethod``s below), ``asarray`` and
``to_numpy``, and, where its device needs them, ``_check_arrays``, ``memory_stats``,
``synchronize``, ``time``, ``compile`` and ``clear_caches``. Images are NCHW, weights OIHW,
tokens (B, N, C), attention (B, H, N, d), linear weights (out, in), as in diffusers.
"""

from __future__ import annotations

import platform
import statistics
import time as _time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from reference import _checks as checks

from .optimizations import (ATTENTION_METHODS, WINOGRAD_TILES, MeasuredRule, Optimizations, auto_attention_method,
                            measured_rule)


@dataclass
class Timing:
    """Repeated timings of one call (``Backend.time``), in seconds.

    ``device``: what the device spent per call, by the backend's best timer (``timer`` names it),
    or empty where it has none; ``wall``: host wall time of one call including waiting for the
    device, so launch and Python overhead show as wall - device. ``launches`` and
    ``temp_bytes``: kernel launches and bytes of temporary buffers of one call, where the backend
    counts them (OpenCL), else None: the fusion claims in numbers."""

    device: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    timer: str = "wall clock"
    launches: int | None = None
    temp_bytes: int | None = None

    @property
    def device_median(self) -> float | None:
        return statistics.median(self.device) if self.device else None

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)


class Backend(ABC):
    """The op interface. Subclasses set ``name``, ``array_type`` and implement the ``_op`` methods."""

    #: the registry name ("numpy", "opencl", "jax")
    name = "base"
    #: the array class this backend's ops take and return
    array_type: type = np.ndarray
    #: vendor string used by the paper's "auto" attention rule
    vendor = "cpu"
    #: True for the backend whose ops are the reference semantics themselves (numpy)
    is_reference = False
    #: True where the unfused variants are another project's work (JAX: plain jnp, so XLA's own
    #: fusion and kernels): the benchmark counts them as peers, not as this project's baselines
    baselines_are_peers = False

    def __init__(self, optimizations: Optimizations | str | None = None):
        if optimizations is None:
            optimizations = Optimizations.none()
        elif isinstance(optimizations, str):
            optimizations = Optimizations.named(optimizations)
        elif not isinstance(optimizations, Optimizations):
            raise TypeError(f"optimizations: expected an Optimizations value or 'none'/'paper'/'best', "
                            f"got {optimizations!r}")
        self.optimizations = optimizations
        #: how often each "auto" or default choice resolved to each variant, e.g.
        #: {("attention", "auto", "partial_softmax"): 16, ("conv2d", "default", "winograd4"): 30}
        self.choices: Counter = Counter()

    def __repr__(self):
        return f"{type(self).__name__}(optimizations={self.optimizations})"

    # -- arrays -------------------------------------------------------------------------------

    @abstractmethod
    def asarray(self, x):
        """A host array (or one of this backend's) as this backend's array, on its device."""

    @abstractmethod
    def to_numpy(self, x) -> np.ndarray:
        """This backend's array as a NumPy array on the host (NCHW etc., the public layout)."""

    def _check_arrays(self, **arrays) -> None:
        """The backend's own checks of its array arguments (None entries are absent optionals):
        storage dtype, device, layout. The base class checks nothing beyond the validators."""

    # -- normalization (reference/group_norm.py) -------------------------------------------------

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5, fused=None, silu=False):
        """GroupNorm of x (N, C, *spatial) over ``num_groups`` groups, then SiLU if ``silu``;
        ``fused``: one kernel (the paper's first idea) or the unfused kernels."""
        eps = checks.check_group_norm(x, num_groups, weight, bias, array_type=self.array_type, eps=eps)
        self._check_arrays(x=x, weight=weight, bias=bias)
        return self._group_norm(x, int(num_groups), weight, bias, eps,
                                fused=self._fused("group_norm", fused, x.dtype), silu=bool(silu))

    def layer_norm(self, x, weight=None, bias=None, eps=1e-5):
        """LayerNorm over the last axis (torch.nn.LayerNorm(C))."""
        eps = checks.check_layer_norm(x, weight, bias, array_type=self.array_type, eps=eps)
        self._check_arrays(x=x, weight=weight, bias=bias)
        return self._layer_norm(x, weight, bias, eps)

    # -- activations (reference/gelu.py, reference/elementwise.py) ------------------------------

    def gelu(self, x, approximate=False, fused=None):
        """GELU (erf form, or the tanh form if ``approximate``); ``fused``: one kernel (the
        paper's second idea) or the op-by-op graph."""
        checks.check_array("x", x, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._gelu(x, bool(approximate), fused=self._fused("gelu", fused, x.dtype))

    def geglu(self, x, approximate=False, fused=None):
        """a * gelu(b) for the halves a, b of x's last axis (diffusers' GEGLU); ``fused`` as gelu."""
        checks.check_geglu(x, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._geglu(x, bool(approximate), fused=self._fused("gelu", fused, x.dtype))

    def silu(self, x):
        """x * sigmoid(x)."""
        checks.check_array("x", x, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._silu(x)

    def quick_gelu(self, x):
        """CLIP's x * sigmoid(1.702 x)."""
        checks.check_array("x", x, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._quick_gelu(x)

    # -- attention (reference/attention.py) -------------------------------------------------------

    def softmax(self, x, axis=-1):
        """softmax along ``axis``."""
        checks.check_softmax(x, axis, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._softmax(x, int(axis) % x.ndim)

    def attention(self, q, k, v, scale=None, method=None, causal=False):
        """softmax(scale q k^T) v for q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) (scale
        defaults to 1/sqrt(d); ``causal``: query n sees keys m <= n); ``method``: "naive",
        "partial_softmax", "flash" or "auto" (the paper's third idea and its device rule)."""
        scale = checks.check_qkv(q, k, v, scale, array_type=self.array_type, causal=causal)
        self._check_arrays(q=q, k=k, v=v)
        return self._attention(q, k, v, scale, self._attention_method(method, q.shape[-1], q.dtype),
                               causal=bool(causal))

    # -- convolution and matrix products (reference/winograd.py, reference/gemm.py) -------------

    def conv2d(self, x, w, b=None, stride=1, padding=0, method=None, tile=None):
        """2-D cross-correlation of x (N, C, H, W) with w (O, C, kh, kw) (+ b); ``method``:
        "direct" or "winograd" (F(tile x tile, 3 x 3), the paper's fourth idea, 3x3 stride 1)."""
        checks.check_array("w", w, ndim=4, array_type=self.array_type)
        method, tile = self._conv_method(method, tile, w.shape, stride, w.dtype)
        if method == "winograd":
            padding = checks.check_winograd(x, w, b, padding, tile, stride, array_type=self.array_type)
            self._check_arrays(x=x, w=w, b=b)
            return self._conv2d_winograd(x, w, b, padding, tile)
        sh, sw, ph, pw = checks.check_conv2d(x, w, b, stride, padding, array_type=self.array_type)
        self._check_arrays(x=x, w=w, b=b)
        return self._conv2d_direct(x, w, b, (sh, sw), (ph, pw))

    def upsample_conv2d(self, x, w, b=None, scale_factor=2, padding=1, method=None, tile=None):
        """conv2d(upsample_nearest2d(x, scale_factor), w, b, padding=padding, method=method,
        tile=tile): SD's ``Upsample2D`` as one op, so that a backend may compute it without the
        upsampled image (reference/upsample_conv.py: four 2x2 output phases; the JAX backend's
        ``upsample_conv="phases"``). The direct or Winograd choice is conv2d's, on the upsampled
        image's shape."""
        s = checks.check_upsample(x, scale_factor, array_type=self.array_type)
        checks.check_array("w", w, ndim=4, array_type=self.array_type)
        method, tile = self._conv_method(method, tile, w.shape, 1, w.dtype)
        if method == "winograd":
            padding = checks.check_winograd(x, w, b, padding, tile, 1, array_type=self.array_type, scale_factor=s)
        else:
            padding = checks.check_conv2d(x, w, b, 1, padding, array_type=self.array_type, scale_factor=s)[2:]
        self._check_arrays(x=x, w=w, b=b)
        return self._upsample_conv2d(x, w, b, s, padding, method, tile)

    def linear(self, x, weight, bias=None):
        """x W^T + b over the last axis, W (out, in)."""
        checks.check_linear(x, weight, bias, array_type=self.array_type)
        self._check_arrays(x=x, weight=weight, bias=bias)
        return self._linear(x, weight, bias)

    # -- elementwise and layout (reference/elementwise.py) --------------------------------------

    def upsample_nearest2d(self, x, scale_factor=2):
        """Nearest-neighbour upsampling of NCHW by a positive int factor."""
        scale_factor = checks.check_upsample(x, scale_factor, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._upsample_nearest2d(x, scale_factor)

    def add(self, a, b):
        """a + b, one shape (residual connections)."""
        checks.check_same_shape(a, b, array_type=self.array_type)
        self._check_arrays(a=a, b=b)
        return self._add(a, b)

    def add_broadcast(self, x, v):
        """x + v[:, :, None, None] for x (N, C, *spatial), v (N, C) (the timestep embedding)."""
        checks.check_add_broadcast(x, v, array_type=self.array_type)
        self._check_arrays(x=x, v=v)
        return self._add_broadcast(x, v)

    def mul_scalar(self, x, s):
        """s * x for a real number s, computed in float32."""
        checks.check_array("x", x, array_type=self.array_type)
        s = checks.check_scalar("s", s)
        self._check_arrays(x=x)
        return self._mul_scalar(x, s)

    def concat(self, arrays, axis=1):
        """Concatenation along ``axis`` (default: NCHW channels)."""
        axis = checks.check_concat(arrays, axis, array_type=self.array_type)
        self._check_arrays(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
        return self._concat(list(arrays), axis)

    def reshape(self, x, shape):
        """x's elements in C order with a new ``shape`` (a tuple of ints, no -1)."""
        shape = checks.check_reshape(x, shape, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._reshape(x, shape)

    def transpose(self, x, axes):
        """numpy.transpose(x, axes), materialized C-contiguous."""
        axes = checks.check_transpose(x, axes, array_type=self.array_type)
        self._check_arrays(x=x)
        return self._transpose(x, axes)

    # -- the implementations each backend supplies (arguments already validated) ----------------

    @abstractmethod
    def _group_norm(self, x, num_groups: int, weight, bias, eps: float, *, fused: bool, silu: bool): ...

    @abstractmethod
    def _layer_norm(self, x, weight, bias, eps: float): ...

    @abstractmethod
    def _gelu(self, x, approximate: bool, *, fused: bool): ...

    @abstractmethod
    def _geglu(self, x, approximate: bool, *, fused: bool): ...

    @abstractmethod
    def _silu(self, x): ...

    @abstractmethod
    def _quick_gelu(self, x): ...

    @abstractmethod
    def _softmax(self, x, axis: int): ...

    @abstractmethod
    def _attention(self, q, k, v, scale: float, method: str, *, causal: bool): ...

    @abstractmethod
    def _conv2d_direct(self, x, w, b, stride: tuple[int, int], padding: tuple[int, int]): ...

    @abstractmethod
    def _conv2d_winograd(self, x, w, b, padding: tuple[int, int], tile: int): ...

    def _upsample_conv2d(self, x, w, b, scale_factor: int, padding: tuple[int, int], method: str, tile: int | None):
        """The definition, two ops; a backend may override it with a form that skips the upsampled image."""
        up = self._upsample_nearest2d(x, scale_factor)
        if method == "winograd":
            return self._conv2d_winograd(up, w, b, padding, tile)
        return self._conv2d_direct(up, w, b, (1, 1), padding)

    @abstractmethod
    def _linear(self, x, weight, bias): ...

    @abstractmethod
    def _upsample_nearest2d(self, x, scale_factor: int): ...

    @abstractmethod
    def _add(self, a, b): ...

    @abstractmethod
    def _add_broadcast(self, x, v): ...

    @abstractmethod
    def _mul_scalar(self, x, s: float): ...

    @abstractmethod
    def _concat(self, arrays: list, axis: int): ...

    @abstractmethod
    def _reshape(self, x, shape: tuple[int, ...]): ...

    @abstractmethod
    def _transpose(self, x, axes: tuple[int, ...]): ...

    # -- device: memory, synchronization, timing, compilation, caches -------------------------

    def memory_stats(self) -> dict:
        """Device memory held by this backend's arrays: ``{"in_use_bytes", "peak_bytes",
        "peak_scope"}``. ``peak_scope`` says what the peak covers: ``"since reset"`` (since the
        last ``reset_peak_memory``), ``"process"`` (the whole process; the device cannot reset
        it) or ``"unavailable"`` (both numbers None). The base class (and the numpy backend)
        knows nothing."""
        return {"in_use_bytes": None, "peak_bytes": None, "peak_scope": "unavailable"}

    def reset_peak_memory(self) -> None:
        """Start a new peak window (where the backend can)."""

    def synchronize(self, x=None):
        """Wait until the device has finished the work queued so far (and ``x`` is ready); returns
        ``x``. Timings must call it before reading the clock. A no-op for synchronous backends."""
        return x

    def device_info(self) -> dict:
        """What runs this backend's ops: ``{"name", "kind": "gpu" | "cpu", "driver", "handle"}``,
        ``handle`` the native device object where there is one (a ``pyopencl.Device``, a
        ``jax.Device``), else None. The base class: the host CPU."""
        return {"name": platform.processor() or platform.machine() or "host CPU", "kind": "cpu",
                "driver": f"numpy {np.__version__}", "handle": None}

    def compile(self, fn):
        """``fn`` (a function of this backend's arrays and pytrees of them) prepared to run many
        times: ``jax.jit`` on JAX, ``fn`` itself where ops run one by one."""
        return fn

    def compile_network(self, fn):
        """``fn(params, *inputs)`` prepared to run many times with the same ``params`` (a dict of
        this backend's arrays, a network's weights): ``compile(fn)`` by default. A backend may
        place ``params`` once in the layouts its compiled program reads best, replacing the
        dict's arrays in place (JAX with ``parameter_layouts="auto"``)."""
        return self.compile(fn)

    def clear_caches(self) -> None:
        """Forget what the backend derived from arrays it has seen (e.g. OpenCL's transformed
        Winograd weights), so their device memory can go; needed after changing weights in
        place. Built kernels stay. Nothing to do by default."""

    def time(self, fn, repeats: int = 10, warmup: int = 2, args=None) -> Timing:
        """Time ``fn()`` (a call of this backend's ops), or ``fn(*args)`` where ``args`` are given
        (the arrays it takes: a backend may then time the call on copies of them, as JAX does):
        ``warmup`` untimed calls (builds, compilation), then ``repeats`` timed ones, each ended by
        ``synchronize``. The base class has only the wall clock; backends with device timers fill
        ``Timing.device``."""
        call = fn if args is None else (lambda: fn(*args))
        for _ in range(warmup):
            self.synchronize(call())
        timing = Timing()
        for _ in range(repeats):
            start = _time.perf_counter()
            self.synchronize(call())
            timing.wall.append(_time.perf_counter() - start)
        return timing

    # -- variant resolution ------------------------------------------------------------------

    def measured_rule(self, dtype) -> MeasuredRule:
        """``Optimizations.best()``'s rule for this backend and device with ``dtype`` storage (a
        ValueError where none was measured)."""
        return measured_rule(self.name, self.vendor, np.dtype(dtype).name)

    def _defaults(self, dtype) -> tuple[Optimizations | MeasuredRule, str]:
        """Where the defaults come from: (the switches, how the choice is counted in ``choices``)."""
        if self.optimizations.measured:
            return self.measured_rule(dtype), "best"
        return self.optimizations, "default"

    def _fused(self, op: str, fused: bool | None, dtype) -> bool:
        if fused is None:
            switches, how = self._defaults(dtype)
            chosen = switches.fused_group_norm if op == "group_norm" else switches.fused_gelu
            self.choices[(op, how, "fused" if chosen else "unfused")] += 1
            return chosen
        if not isinstance(fused, bool):
            raise TypeError(f"fused: expected True, False or None, got {fused!r}")
        return fused

    def _attention_method(self, method: str | None, head_dim: int, dtype) -> str:
        if method is None and self.optimizations.measured:
            chosen = self.measured_rule(dtype).attention_method(head_dim)
            self.choices[("attention", "best", chosen)] += 1
            return chosen
        requested = self.optimizations.attention if method is None else method
        if requested not in ATTENTION_METHODS:
            raise ValueError(f"method: expected one of {ATTENTION_METHODS}, got {method!r}")
        if requested == "auto":
            chosen = auto_attention_method(head_dim, self.vendor)
            self.choices[("attention", "auto", chosen)] += 1
            return chosen
        if method is None:
            self.choices[("attention", "default", requested)] += 1
        return requested

    def _conv_method(self, method: str | None, tile: int | None, w_shape, stride, dtype) -> tuple[str, int | None]:
        """(method, tile) for a convolution. ``method=None`` uses Winograd with the default tile
        for every eligible layer (3x3, stride 1) and direct convolution for the others."""
        if method is None:
            if tile is not None and tile not in WINOGRAD_TILES:  # wrong even where a layer is not eligible
                raise ValueError(f"tile: expected one of {WINOGRAD_TILES} (the Winograd output tile of "
                                 f"3x3 stride-1 layers), got {tile!r}")
            eligible = tuple(w_shape[2:]) == (3, 3) and checks.pair("stride", stride) == (1, 1)
            switches, how = self._defaults(dtype)
            tile = tile if tile is not None else switches.winograd_tile
            chosen = ("winograd", tile) if (eligible and tile is not None) else ("direct", None)
            self.choices[("conv2d", how, f"{chosen[0]}{chosen[1] or ''}")] += 1
            return chosen
        if method == "direct":
            if tile is not None:
                raise ValueError(f"tile: only meaningful with method='winograd', got tile={tile!r} with method='direct'")
            return "direct", None
        if method == "winograd":
            tile = tile if tile is not None else (self.optimizations.winograd_tile or 4)
            if tile not in WINOGRAD_TILES:
                raise ValueError(f"tile: expected one of {WINOGRAD_TILES}, got {tile!r}")
            return "winograd", tile
        raise ValueError(f"method: expected 'direct', 'winograd' or None, got {method!r}")

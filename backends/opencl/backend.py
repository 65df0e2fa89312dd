"""``OpenCLBackend``: the op interface on device arrays (``pyopencl.array.Array``).

Arrays stay on the device between ops; ``asarray`` uploads, ``to_numpy`` downloads. The base
class (backends/base.py) validates every call and resolves its variant; each implementation here
calls the host module of its idea (group_norm, gelu, attention, winograd, gemm, elementwise).

Device memory (``memory_stats``) is counted by the runtime, which is shared by every backend on
the same device: the bytes of the live arrays it allocated (op outputs, temporaries, uploads,
cached Winograd weights), and their peak since ``reset_peak_memory``. ``measure()`` counts the
launches, kernel names and temporary bytes of what runs inside it; ``time`` reads the device
time of a call from the profiling events of its launches. Beyond the interface: ``rt`` (the
runtime), ``measure`` and ``group_norm_form`` (one of the fused GroupNorm's two forms by name,
for the benchmark).
"""

from __future__ import annotations

import functools
import time as _time

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from reference import _checks as checks

from ..base import Backend, Timing
from . import attention, elementwise, gelu, gemm, group_norm, winograd
from .runtime import Runtime, is_c_contiguous


class OpenCLBackend(Backend):
    name = "opencl"
    array_type = cla.Array

    def __init__(self, optimizations=None, device=None, poison: bool = False, profiling: bool = True):
        """``device``: see ``runtime.select_device`` (None: PYOPENCL_CTX, else the first GPU).
        ``poison=True`` fills every output with NaN before the kernels write it (for tests).
        ``profiling=False`` runs on a queue without profiling events: less host time per launch,
        but ``time`` then reports wall times only and ``measure`` no device seconds."""
        super().__init__(optimizations)
        self.rt = Runtime.for_device(device, poison=poison, profiling=profiling)
        self.vendor = self.rt.vendor

    def __repr__(self):
        return f"OpenCLBackend({self.rt.device.name!r}, optimizations={self.optimizations})"

    def measure(self):
        """Context manager counting launches, kernel names, temporary bytes and the launches'
        profiling events (``runtime.Counters``)."""
        return self.rt.measure()

    # -- arrays -------------------------------------------------------------------------------

    def asarray(self, x):
        if isinstance(x, cla.Array):
            self._check_arrays(x=x)
            return x
        x = np.asarray(x)
        self.rt.check_storage_dtype("x", x.dtype)
        return self.rt.to_device(x)

    def to_numpy(self, x):
        self._check_arrays(x=x)
        return x.get()

    def _check_arrays(self, **arrays):
        context = self.rt.context
        for name, x in arrays.items():
            if x is None:
                continue
            self.rt.check_storage_dtype(name, x.dtype)
            if x.context is not context and x.context != context:
                raise ValueError(f"{name}: the array lives on another OpenCL context than this backend's device")
            if not is_c_contiguous(x) or x.offset:
                raise ValueError(f"{name}: expected a contiguous array with no offset; pass a copy")

    # -- device -------------------------------------------------------------------------------

    def memory_stats(self) -> dict:
        """``{"in_use_bytes", "peak_bytes", "peak_scope": "since reset"}`` of the device arrays the
        runtime allocated (shared by the backends on this device; see runtime.py)."""
        return {"in_use_bytes": self.rt.in_use_bytes, "peak_bytes": self.rt.peak_bytes, "peak_scope": "since reset"}

    def reset_peak_memory(self) -> None:
        self.rt.reset_peak_memory()

    def synchronize(self, x=None):
        """Wait for every command queued so far (the queue is in order, so x is ready); returns x."""
        self.rt.finish()
        return x

    def device_info(self) -> dict:
        device = self.rt.device
        return {"name": f"{device.name.strip()} ({device.platform.name.strip()})",
                "kind": "gpu" if device.type & cl.device_type.GPU else "cpu",
                "driver": f"OpenCL driver {device.driver_version}", "handle": device}

    def clear_caches(self) -> None:
        """Forget the transformed Winograd weights (and the weights they keep alive), and give
        the memory pool's unused buffers back to OpenCL."""
        winograd.clear_winograd_cache(self.rt)
        self.rt.free_pool()

    def time(self, fn, repeats: int = 10, warmup: int = 2, args=None) -> Timing:
        """Device time per call (of ``fn()``, or ``fn(*args)``) = the sum of (end - start) over
        the profiling events of every launch the call made (the gaps between kernels and the
        host's launch work excluded); wall time = the call until the queue is finished."""
        if args is not None:
            fn = functools.partial(fn, *args)
        for _ in range(warmup):
            fn()
            self.rt.finish()
        timing = Timing(timer="OpenCL profiling events, summed over the call's launches" if self.rt.profiling
                        else "wall clock (a queue without profiling)")
        for _ in range(repeats):
            start = _time.perf_counter()
            with self.rt.measure() as counted:
                fn()
            self.rt.finish()
            timing.wall.append(_time.perf_counter() - start)
            if self.rt.profiling:
                timing.device.append(counted.device_seconds())
        timing.launches, timing.temp_bytes = counted.launches, counted.temp_bytes
        return timing

    # -- implementations ------------------------------------------------------------------------

    def _group_norm(self, x, num_groups, weight, bias, eps, *, fused, silu):
        return group_norm.group_norm(self.rt, x, num_groups, weight, bias, eps, fused=fused, silu=silu)

    def group_norm_form(self, x, num_groups, weight=None, bias=None, eps=1e-5, silu=False, form="one_launch"):
        """The fused GroupNorm(+SiLU) in one named form ("one_launch" or "split", group_norm.py),
        whichever ``fused=True`` picks: the benchmark times both."""
        eps = checks.check_group_norm(x, num_groups, weight, bias, array_type=self.array_type, eps=eps)
        self._check_arrays(x=x, weight=weight, bias=bias)
        return group_norm.group_norm_fused(self.rt, x, int(num_groups), weight, bias, eps, bool(silu), form=form)

    def _layer_norm(self, x, weight, bias, eps):
        return group_norm.layer_norm(self.rt, x, weight, bias, eps)

    def _gelu(self, x, approximate, *, fused):
        return gelu.gelu(self.rt, x, approximate, fused=fused)

    def _geglu(self, x, approximate, *, fused):
        return gelu.geglu(self.rt, x, approximate, fused=fused)

    def _silu(self, x):
        return elementwise.silu(self.rt, x)

    def _quick_gelu(self, x):
        return elementwise.quick_gelu(self.rt, x)

    def _softmax(self, x, axis):
        if axis != x.ndim - 1:
            raise ValueError(f"axis: the opencl softmax runs over the last axis only, got axis={axis}; transpose first")
        return attention.softmax(self.rt, x)

    def _attention(self, q, k, v, scale, method, *, causal):
        return attention.attention(self.rt, q, k, v, scale, method, causal=causal)

    def _conv2d_direct(self, x, w, b, stride, padding):
        return winograd.conv2d_direct(self.rt, x, w, b, stride, padding)

    def _conv2d_winograd(self, x, w, b, padding, tile):
        return winograd.conv2d_winograd(self.rt, x, w, b, padding, tile)

    def _linear(self, x, weight, bias):
        return gemm.linear(self.rt, x, weight, bias)

    def _upsample_nearest2d(self, x, scale_factor):
        return elementwise.upsample_nearest2d(self.rt, x, scale_factor)

    def _add(self, a, b):
        return elementwise.add(self.rt, a, b)

    def _add_broadcast(self, x, v):
        return elementwise.add_broadcast(self.rt, x, v)

    def _mul_scalar(self, x, s):
        return elementwise.mul_scalar(self.rt, x, s)

    def _concat(self, arrays, axis):
        return elementwise.concat(self.rt, arrays, axis)

    def _reshape(self, x, shape):
        return elementwise.reshape(self.rt, x, shape)

    def _transpose(self, x, axes):
        return elementwise.transpose(self.rt, x, axes)

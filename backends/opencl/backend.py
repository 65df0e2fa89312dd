"""``OpenCLBackend``: the op interface on device arrays (``pyopencl.array.Array``).

Arrays stay on the device between ops; ``asarray`` uploads, ``to_numpy`` downloads. Every op
validates its arguments with the reference's validators (same errors as the reference), resolves
its variant from the backend's ``Optimizations`` and calls one host module per idea.

Device memory (``memory_stats``) is counted by the runtime, which is shared by every backend on
the same device: the bytes of the live arrays it allocated (op outputs, temporaries, uploads),
and their peak since ``reset_peak_memory``.
"""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from reference import _checks as checks

from ..base import Backend
from . import activations, attention, conv, layout, normalization
from .gemm import gemm_batched
from .runtime import Runtime

A = cla.Array


class OpenCLBackend(Backend):
    name = "opencl"

    def __init__(self, optimizations=None, device=None, poison: bool = False):
        """``device``: see ``runtime.select_device`` (None: PYOPENCL_CTX, else the first GPU).
        ``poison=True`` fills every output with NaN before the kernels write it (for tests)."""
        super().__init__(optimizations)
        self.rt = Runtime.for_device(device, poison=poison)
        self.vendor = self.rt.vendor

    def __repr__(self):
        return f"OpenCLBackend({self.rt.device.name!r}, optimizations={self.optimizations})"

    def measure(self):
        """Context manager counting launches, kernel names and temporary bytes (``Counters``)."""
        return self.rt.measure()

    # -- arrays -------------------------------------------------------------------------------

    def asarray(self, x):
        if isinstance(x, A):
            self._check("x", x)
            return x
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float16):
            raise TypeError(f"x: the opencl backend stores float32 or float16, got {x.dtype}; convert with astype first")
        return self.rt.to_device(x)

    def to_numpy(self, x):
        self._check("x", x)
        return x.get()

    def reshape(self, x, shape):
        """x with another shape (same elements, C order): a view of x's buffer, no copy, no launch."""
        shape = checks.check_reshape(x, shape, array_type=A)
        self._check("x", x)
        return layout.reshape(self.rt, x, shape)

    def transpose(self, x, axes):
        """numpy.transpose(x, axes), materialized C-contiguous: one launch."""
        axes = checks.check_transpose(x, axes, array_type=A)
        self._check("x", x)
        return layout.transpose(self.rt, x, axes)

    # -- device memory ------------------------------------------------------------------------

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

    def _check(self, name, x):
        checks.check_array(name, x, array_type=A)
        self.rt.check_storage_dtype(name, x.dtype)
        if x.context != self.rt.context:
            raise ValueError(f"{name}: the array lives on another OpenCL context than this backend's device")
        if not x.flags.c_contiguous or x.offset:
            raise ValueError(f"{name}: expected a contiguous array with no offset; pass a copy")

    def _check_all(self, **arrays):
        for name, x in arrays.items():
            if x is not None:
                self._check(name, x)

    # -- normalization ----------------------------------------------------------------------

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5, fused=None, silu=False):
        checks.check_group_norm(x, num_groups, weight, bias, array_type=A)
        self._check_all(x=x, weight=weight, bias=bias)
        return normalization.group_norm(self.rt, x, int(num_groups), weight, bias, float(eps),
                                        fused=self._fused("group_norm", fused), silu=bool(silu))

    def layer_norm(self, x, weight=None, bias=None, eps=1e-5):
        checks.check_layer_norm(x, weight, bias, array_type=A)
        self._check_all(x=x, weight=weight, bias=bias)
        return normalization.layer_norm(self.rt, x, weight, bias, float(eps))

    def softmax(self, x, axis=-1):
        checks.check_softmax(x, axis, array_type=A)
        self._check("x", x)
        if axis not in (-1, x.ndim - 1):
            raise ValueError(f"axis: the opencl softmax runs over the last axis only, got axis={axis}; transpose first")
        return normalization.softmax(self.rt, x)

    # -- activations ------------------------------------------------------------------------

    def gelu(self, x, approximate=False, fused=None):
        checks.check_array("x", x, array_type=A)
        self._check("x", x)
        return activations.gelu(self.rt, x, bool(approximate), fused=self._fused("gelu", fused))

    def geglu(self, x, approximate=False, fused=None):
        checks.check_geglu(x, array_type=A)
        self._check("x", x)
        return activations.geglu(self.rt, x, bool(approximate), fused=self._fused("gelu", fused))

    def silu(self, x):
        self._check("x", x)
        return activations.silu(self.rt, x)

    def quick_gelu(self, x):
        self._check("x", x)
        return activations.quick_gelu(self.rt, x)

    def upsample_nearest2d(self, x, scale_factor=2):
        checks.check_array("x", x, ndim=4, array_type=A)
        self._check("x", x)
        if not isinstance(scale_factor, (int, np.integer)) or scale_factor < 1:
            raise ValueError(f"scale_factor: expected a positive int, got {scale_factor!r}")
        return activations.upsample_nearest2d(self.rt, x, int(scale_factor))

    def add(self, a, b):
        """a + b, same shape (residual connections)."""
        self._check_all(a=a, b=b)
        return activations.add(self.rt, a, b)

    def add_broadcast(self, x, v):
        """x + v[:, :, None, None] for x (N, C, *spatial) and v (N, C) (the timestep embedding)."""
        self._check_all(x=x, v=v)
        return activations.add_broadcast(self.rt, x, v)

    def mul_scalar(self, x, s):
        self._check("x", x)
        return activations.mul_scalar(self.rt, x, float(s))

    def concat(self, arrays, axis=1):
        """Concatenate along ``axis`` (default: NCHW channels): one copy launch per input."""
        axis = checks.check_concat(arrays, axis, array_type=A)
        self._check_all(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
        return activations.concat(self.rt, list(arrays), axis)

    # -- matrix products --------------------------------------------------------------------

    def linear(self, x, weight, bias=None):
        """y = x W^T + b over the last axis: one GEMM launch with W read transposed by strides."""
        checks.check_linear(x, weight, bias, array_type=A)
        self._check_all(x=x, weight=weight, bias=bias)
        k = x.shape[-1]
        rows = math.prod(x.shape[:-1])
        n = weight.shape[0]
        y = self.rt.empty(x.shape[:-1] + (n,), x.dtype)
        gemm_batched(self.rt, x, weight, y, m=rows, n=n, k=k, batch=1,
                     a_strides=(0, k, 1), b_strides=(0, 1, k), c_strides=(0, n, 1), bias=bias)
        return y

    def attention(self, q, k, v, scale=None, method=None, causal=False):
        scale = checks.check_qkv(q, k, v, scale, array_type=A, causal=causal)
        self._check_all(q=q, k=k, v=v)
        method = self._attention_method(method, q.shape[-1])
        return attention.attention(self.rt, q, k, v, scale, method, causal=bool(causal))

    def conv2d(self, x, w, b=None, stride=1, padding=0, method=None, tile=None):
        checks.check_array("w", w, ndim=4, array_type=A)
        method, tile = self._conv_method(method, tile, w.shape, stride)
        if method == "winograd":
            ph, pw = checks.check_winograd(x, w, b, padding, tile, stride, array_type=A)
            self._check_all(x=x, w=w, b=b)
            return conv.conv2d_winograd(self.rt, x, w, b, (ph, pw), tile)
        sh, sw, ph, pw = checks.check_conv2d(x, w, b, stride, padding, array_type=A)
        self._check_all(x=x, w=w, b=b)
        return conv.conv2d_direct(self.rt, x, w, b, (sh, sw), (ph, pw))

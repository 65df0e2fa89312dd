"""``JaxBackend``: the op interface on ``jax.Array`` (pure functions, jit-able with static shapes).

Every method validates its arguments with the reference's validators (so bad input gets the same
errors as everywhere), resolves its variant from the backend's ``Optimizations`` and calls a pure
function of ``ops`` (jnp), ``pallas_norm``, ``attention`` or ``winograd``. Under ``jax.jit`` the
validation runs once, at trace time, on the static shapes.

``reshape``/``transpose`` are ``jnp.reshape``/``jnp.transpose`` after the shared validators.
``memory_stats`` reads the XLA allocator's counters of the default device (a process-wide peak
that JAX cannot reset; "unavailable" on the CPU), ``synchronize`` blocks on the array it is given.

Precision: fp32 matrix products and convolutions run with ``Precision.HIGHEST`` (no TF32);
float16 and bfloat16 are storage dtypes with float32 accumulation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from reference import _checks as checks

from ..base import Backend
from . import attention, ops, pallas_norm, winograd

#: Storage dtypes of this backend (float64 would need jax_enable_x64; the reference covers it).
STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(jnp.bfloat16))
A = jax.Array


class JaxBackend(Backend):
    name = "jax"

    def __init__(self, optimizations=None, interpret: bool | None = None):
        """``interpret``: run the Pallas kernels in the Pallas interpreter. None (default): True
        exactly when JAX's default backend is the CPU, where Pallas has no compiler; the choice is
        recorded in ``choices``."""
        super().__init__(optimizations)
        platform = jax.default_backend()
        #: the device whose memory ``memory_stats`` reports (JAX's default device)
        self.device = jax.devices()[0]
        self.vendor = self.device.device_kind if platform != "cpu" else "cpu"
        self.interpret = (platform == "cpu") if interpret is None else bool(interpret)
        self.choices[("pallas", "interpret" if self.interpret else "compiled", platform)] += 1

    def __repr__(self):
        return f"JaxBackend({jax.default_backend()}, interpret={self.interpret}, optimizations={self.optimizations})"

    # -- arrays -------------------------------------------------------------------------------

    def asarray(self, x):
        if not isinstance(x, A):
            x = np.asarray(x)
        self._check_dtype("x", x)
        return jnp.asarray(x)

    def to_numpy(self, x):
        checks.check_array("x", x, array_type=A)
        return np.asarray(x)

    # -- device memory and synchronization -------------------------------------------------------

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

    def _check_dtype(self, name, x):
        if np.dtype(x.dtype) not in STORAGE_DTYPES:
            raise TypeError(f"{name}: the jax backend stores float32, float16 or bfloat16, got {x.dtype}")

    def _check_all(self, **arrays):
        for name, x in arrays.items():
            if x is not None:
                self._check_dtype(name, x)

    # -- normalization ----------------------------------------------------------------------

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5, fused=None, silu=False):
        checks.check_group_norm(x, num_groups, weight, bias, array_type=A)
        self._check_all(x=x)
        if self._fused("group_norm", fused):
            return pallas_norm.group_norm(x, int(num_groups), weight, bias, float(eps), bool(silu), self.interpret)
        return ops.group_norm(x, int(num_groups), weight, bias, float(eps), bool(silu))

    def layer_norm(self, x, weight=None, bias=None, eps=1e-5):
        checks.check_layer_norm(x, weight, bias, array_type=A)
        self._check_all(x=x)
        return ops.layer_norm(x, weight, bias, float(eps))

    def softmax(self, x, axis=-1):
        checks.check_softmax(x, axis, array_type=A)
        self._check_all(x=x)
        return ops.softmax(x, int(axis))

    # -- activations ------------------------------------------------------------------------

    def gelu(self, x, approximate=False, fused=None):
        checks.check_array("x", x, array_type=A)
        self._check_all(x=x)
        if self._fused("gelu", fused):
            return pallas_norm.gelu(x, bool(approximate), self.interpret)
        return ops.gelu(x, bool(approximate))

    def geglu(self, x, approximate=False, fused=None):
        checks.check_geglu(x, array_type=A)
        self._check_all(x=x)
        if self._fused("gelu", fused):
            return pallas_norm.geglu(x, bool(approximate), self.interpret)
        return ops.geglu(x, bool(approximate))

    def silu(self, x):
        checks.check_array("x", x, array_type=A)
        return ops.silu(x)

    def quick_gelu(self, x):
        checks.check_array("x", x, array_type=A)
        return ops.quick_gelu(x)

    def upsample_nearest2d(self, x, scale_factor=2):
        checks.check_array("x", x, ndim=4, array_type=A)
        if not isinstance(scale_factor, (int, np.integer)) or scale_factor < 1:
            raise ValueError(f"scale_factor: expected a positive int, got {scale_factor!r}")
        return ops.upsample_nearest2d(x, int(scale_factor))

    def add(self, a, b):
        checks.check_array("a", a, array_type=A)
        checks.check_array("b", b, array_type=A)
        if a.shape != b.shape:
            raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
        return a + b

    def add_broadcast(self, x, v):
        checks.check_array("x", x, array_type=A)
        checks.check_array("v", v, ndim=2, array_type=A)
        if tuple(v.shape) != tuple(x.shape[:2]):
            raise ValueError(f"v: expected shape {tuple(x.shape[:2])} (N, C) to match x {tuple(x.shape)}, got {v.shape}")
        return x + v.reshape(v.shape + (1,) * (x.ndim - 2))

    def mul_scalar(self, x, s):
        checks.check_array("x", x, array_type=A)
        return (x * jnp.asarray(s, dtype=jnp.float32)).astype(x.dtype)

    def concat(self, arrays, axis=1):
        axis = checks.check_concat(arrays, axis, array_type=A)
        return jnp.concatenate(arrays, axis=axis)

    # -- layout -------------------------------------------------------------------------------

    def reshape(self, x, shape):
        """x with the same elements in C order and a new ``shape`` (a tuple of ints, no -1)."""
        return jnp.reshape(x, checks.check_reshape(x, shape, array_type=A))

    def transpose(self, x, axes):
        """numpy.transpose(x, axes). A jax.Array has no strides: the result is a new array in the
        default (row-major, i.e. C-contiguous) layout; under jit XLA may fuse the copy into the
        consumer."""
        return jnp.transpose(x, checks.check_transpose(x, axes, array_type=A))

    # -- matrix products --------------------------------------------------------------------

    def linear(self, x, weight, bias=None):
        checks.check_linear(x, weight, bias, array_type=A)
        self._check_all(x=x)
        return ops.linear(x, weight, bias)

    def attention(self, q, k, v, scale=None, method=None, causal=False):
        scale = checks.check_qkv(q, k, v, scale, array_type=A, causal=causal)
        self._check_all(q=q)
        method = self._attention_method(method, q.shape[-1])
        return attention.attention(q, k, v, scale, method, self.interpret, bool(causal))

    def conv2d(self, x, w, b=None, stride=1, padding=0, method=None, tile=None):
        checks.check_array("w", w, ndim=4, array_type=A)
        method, tile = self._conv_method(method, tile, w.shape, stride)
        if method == "winograd":
            ph, pw = checks.check_winograd(x, w, b, padding, tile, stride, array_type=A)
            self._check_all(x=x)
            return winograd.conv2d_winograd(x, w, b, (ph, pw), tile, self.interpret)
        sh, sw, ph, pw = checks.check_conv2d(x, w, b, stride, padding, array_type=A)
        self._check_all(x=x)
        return ops.conv2d(x, w, b, (sh, sw), (ph, pw))

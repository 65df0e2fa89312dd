"""The numpy backend: the reference semantics behind the op interface (arrays are ndarrays)."""

from __future__ import annotations

import numpy as np

from reference import attention as ref_attention
from reference import ops as ref
from reference import winograd as ref_winograd
from reference._checks import check_array, check_concat, check_reshape, check_transpose

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def asarray(self, x):
        return check_array("x", np.asarray(x))

    def to_numpy(self, x):
        return np.asarray(x)

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5, fused=None, silu=False):
        self._fused("group_norm", fused)
        y = ref.group_norm(x, num_groups, weight, bias, eps)
        return ref.silu(y) if silu else y

    def gelu(self, x, approximate=False, fused=None):
        self._fused("gelu", fused)
        return ref.gelu(x, approximate)

    def geglu(self, x, approximate=False, fused=None):
        self._fused("gelu", fused)
        return ref.geglu(x, approximate)

    def silu(self, x):
        return ref.silu(x)

    def quick_gelu(self, x):
        return ref.quick_gelu(x)

    def softmax(self, x, axis=-1):
        return ref.softmax(x, axis)

    def layer_norm(self, x, weight=None, bias=None, eps=1e-5):
        return ref.layer_norm(x, weight, bias, eps)

    def linear(self, x, weight, bias=None):
        return ref.linear(x, weight, bias)

    def attention(self, q, k, v, scale=None, method=None, causal=False):
        method = self._attention_method(method, q.shape[-1] if getattr(q, "ndim", 0) == 4 else 0)
        fn = {"naive": ref_attention.attention, "partial_softmax": ref_attention.attention_partial_softmax,
              "flash": ref_attention.attention_flash}[method]
        return fn(q, k, v, scale, causal=causal)

    def conv2d(self, x, w, b=None, stride=1, padding=0, method=None, tile=None):
        method, tile = self._conv_method(method, tile, w.shape, stride)
        if method == "winograd":
            return ref_winograd.conv2d_winograd(x, w, b, padding=padding, m=tile, stride=stride)
        return ref.conv2d(x, w, b, stride=stride, padding=padding)

    def upsample_nearest2d(self, x, scale_factor=2):
        return ref.upsample_nearest2d(x, scale_factor)

    def add(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
        return a + b

    def add_broadcast(self, x, v):
        if v.shape != x.shape[:2]:
            raise ValueError(f"v: expected shape {x.shape[:2]} (N, C) to match x {x.shape}, got {v.shape}")
        return x + v.reshape(v.shape + (1,) * (x.ndim - 2))

    def mul_scalar(self, x, s):
        return (x * np.asarray(s, dtype=x.dtype)).astype(x.dtype)

    def concat(self, arrays, axis=1):
        return np.concatenate(arrays, axis=check_concat(arrays, axis))

    def reshape(self, x, shape):
        return x.reshape(check_reshape(x, shape))

    def transpose(self, x, axes):
        """numpy.transpose, materialized (C-contiguous) as every backend returns it."""
        return np.ascontiguousarray(np.transpose(x, check_transpose(x, axes)))

"""The numpy backend: the reference semantics behind the op interface (arrays are ndarrays).

Every variant is the reference function of the same idea (a fused and an unfused GroupNorm
compute the same numbers here; the variants differ on a GPU, not in NumPy), except attention and
convolution, whose reference keeps one function per variant.
"""

from __future__ import annotations

import numpy as np

from reference import attention, elementwise, gelu, gemm, group_norm, winograd
from reference._checks import check_array

from .base import Backend

ATTENTION = {"naive": attention.attention, "partial_softmax": attention.attention_partial_softmax,
             "flash": attention.attention_flash}


class NumpyBackend(Backend):
    name = "numpy"
    array_type = np.ndarray

    def asarray(self, x):
        return check_array("x", np.asarray(x))

    def to_numpy(self, x):
        return np.asarray(x)

    def _group_norm(self, x, num_groups, weight, bias, eps, *, fused, silu):
        y = group_norm.group_norm(x, num_groups, weight, bias, eps)
        return elementwise.silu(y) if silu else y

    def _layer_norm(self, x, weight, bias, eps):
        return group_norm.layer_norm(x, weight, bias, eps)

    def _gelu(self, x, approximate, *, fused):
        return gelu.gelu(x, approximate)

    def _geglu(self, x, approximate, *, fused):
        return gelu.geglu(x, approximate)

    def _silu(self, x):
        return elementwise.silu(x)

    def _quick_gelu(self, x):
        return elementwise.quick_gelu(x)

    def _softmax(self, x, axis):
        return attention.softmax(x, axis)

    def _attention(self, q, k, v, scale, method, *, causal):
        return ATTENTION[method](q, k, v, scale, causal=causal)

    def _conv2d_direct(self, x, w, b, stride, padding):
        return winograd.conv2d(x, w, b, stride=stride, padding=padding)

    def _conv2d_winograd(self, x, w, b, padding, tile):
        return winograd.conv2d_winograd(x, w, b, padding=padding, m=tile)

    def _linear(self, x, weight, bias):
        return gemm.linear(x, weight, bias)

    def _upsample_nearest2d(self, x, scale_factor):
        return elementwise.upsample_nearest2d(x, scale_factor)

    def _add(self, a, b):
        return elementwise.add(a, b)

    def _add_broadcast(self, x, v):
        return elementwise.add_broadcast(x, v)

    def _mul_scalar(self, x, s):
        return elementwise.mul_scalar(x, s)

    def _concat(self, arrays, axis):
        return elementwise.concat(arrays, axis)

    def _reshape(self, x, shape):
        return elementwise.reshape(x, shape)

    def _transpose(self, x, axes):
        return elementwise.transpose(x, axes)

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
    is_reference = True

    def asarray(self, x):
        return check_array("x", np.asarray(x))

    def to_numpy(self, x):
        return np.asarray(x)

    def _group_norm(self, x, num_groups, weight, bias, eps, *, fused, silu):
        y = group_norm.group_norm(x, num_groups, weight, bias, eps)
        return elementwise.silu(y) if silu else y

    def _gelu(self, x, approximate, *, fused):
        return gelu.gelu(x, approximate)

    def _geglu(self, x, approximate, *, fused):
        return gelu.geglu(x, approximate)

    def _attention(self, q, k, v, scale, method, *, causal):
        return ATTENTION[method](q, k, v, scale, causal=causal)

    def _conv2d_direct(self, x, w, b, stride, padding):
        return winograd.conv2d(x, w, b, stride=stride, padding=padding)

    def _conv2d_winograd(self, x, w, b, padding, tile):
        return winograd.conv2d_winograd(x, w, b, padding=padding, m=tile)

    # the ops whose reference function has the implementation's signature
    _layer_norm = staticmethod(group_norm.layer_norm)
    _silu = staticmethod(elementwise.silu)
    _quick_gelu = staticmethod(elementwise.quick_gelu)
    _softmax = staticmethod(attention.softmax)
    _linear = staticmethod(gemm.linear)
    _upsample_nearest2d = staticmethod(elementwise.upsample_nearest2d)
    _add = staticmethod(elementwise.add)
    _add_broadcast = staticmethod(elementwise.add_broadcast)
    _mul_scalar = staticmethod(elementwise.mul_scalar)
    _concat = staticmethod(elementwise.concat)
    _reshape = staticmethod(elementwise.reshape)
    _transpose = staticmethod(elementwise.transpose)

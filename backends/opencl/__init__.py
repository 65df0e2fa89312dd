"""The OpenCL backend: the paper's GPU kernels in pyopencl, on PoCL (any CPU) and GPU drivers.

Kernel sources are real .cl files in ``kernels/``; each idea has one host module here:
``normalization.py`` (GroupNorm fused and unfused, LayerNorm, softmax), ``activations.py``
(GELU/GEGLU fused and unfused, SiLU, elementwise), ``attention.py`` (naive, partially fused
softmax, flash), ``conv.py`` (direct and Winograd F(m x m, 3 x 3)), ``gemm.py`` (batched GEMM),
``layout.py`` (reshape as a view, transpose in one launch).
"""

from .backend import OpenCLBackend
from .runtime import KernelBuildError, OpenCLUnavailable, Runtime

__all__ = ["OpenCLBackend", "Runtime", "KernelBuildError", "OpenCLUnavailable"]

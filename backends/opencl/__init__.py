"""The OpenCL backend: the paper's GPU kernels in pyopencl, on PoCL (any CPU) and GPU drivers.

One host module per idea, with its kernels in the .cl file of the same name under ``kernels/``
(``common.h``, prepended to every file, holds the storage macros, sigmoid and the work-group
sum): ``group_norm`` (fused and unfused GroupNorm, LayerNorm), ``gelu`` (fused and unfused
GELU/GEGLU), ``attention`` (naive, partially fused softmax, flash; the row softmax),
``winograd`` (Winograd F(m x m, 3 x 3) and the direct convolution), ``gemm`` (the batched GEMM,
linear) and ``elementwise`` (SiLU, quick GELU, arithmetic, upsampling, concat, reshape,
transpose). ``runtime`` holds the device, the program cache and the launch counters;
``backend`` the op interface.
"""

from .backend import OpenCLBackend
from .runtime import KernelBuildError, OpenCLUnavailable, Runtime

__all__ = ["OpenCLBackend", "Runtime", "KernelBuildError", "OpenCLUnavailable"]

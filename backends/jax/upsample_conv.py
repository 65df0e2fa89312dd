"""SD's ``Upsample2D`` (nearest 2x upsampling, then a 3x3 convolution, padding 1) as its four output
phases in one XLA convolution (cuDNN on an NVIDIA GPU); the math is reference/upsample_conv.py's:

    k = stack_{a, b} R_a w R_b^T                      (4 O, C, 2, 2), float32 sums rounded once
    z = conv2d(x, k, padding=1)                       (N, 4 O, H + 1, W + 1)
    y[n, o, 2i + a, 2j + b] = z[n, (a, b, o), i + a, j + b] + bias[o]

Output row p of the padded 2x2 convolution reads rows p - 1 and p of x: phase 0 of output row 2i
needs rows i - 1 and i (p = i), phase 1 rows i and i + 1 (p = i + 1), hence the offset a. The
four phases share one convolution of 4x the output channels over (H + 1)(W + 1) pixels, 16/36 of
the upsampled form's multiply-adds (plus the extra row and column), and XLA fuses the slices, the
interleave and the bias into one pass over the output. Precision and bias as
``winograd.conv2d_direct`` (``bias_form``); the phase kernels carry one more 16-bit rounding than w.
The kernels depend on w alone: inside a network ``JaxBackend`` forms them once, with the weights
(``derived_weights``, layouts.py); called alone, this module forms them in every call.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from reference.upsample_conv import PHASE_ROWS

from .gemm import F32
from .winograd import conv_options

__all__ = ["FORMS", "phases_apply", "phase_kernels", "upsample_conv2d_phases"]

#: JaxBackend's ``upsample_conv``: "upsample" the two ops (the upsampled image, then the 3x3
#: convolution), "phases" where they apply (x2, 3x3, padding 1, direct convolution)
FORMS = ("upsample", "phases")


def phases_apply(scale_factor: int, kernel_size: tuple[int, int], padding: tuple[int, int], method: str) -> bool:
    """Whether ``upsample_conv2d_phases`` computes this upsample-then-convolve: the upsamplers' case."""
    return scale_factor == 2 and tuple(kernel_size) == (3, 3) and tuple(padding) == (1, 1) and method == "direct"


def _fold(t, axis: int):
    """The 3 taps of ``t`` along ``axis`` folded onto each phase's 2 (R_a = PHASE_ROWS[a]), stacked on
    a new leading axis a: elementwise adds, which XLA fuses into one pass over w (an einsum would be
    a GEMM)."""
    taps = [lax.index_in_dim(t, h, axis, keepdims=False) for h in range(3)]
    folded = [[sum(taps[h] for h in range(3) if PHASE_ROWS[a, r, h]) for r in (0, 1)] for a in (0, 1)]
    return jnp.stack([jnp.stack(phase, axis) for phase in folded])


def phase_kernels(w):
    """(4 O, C, 2, 2) in w's dtype: the phase kernels R_a w R_b^T, ordered (a, b, o), of w (O, C, 3, 3),
    summed in float32."""
    rows = _fold(w.astype(F32), 2)               # (2, O, C, 2, 3): [a, o, c, r, kernel column]
    k = jnp.stack([_fold(rows[a], 3) for a in (0, 1)])  # (2, 2, O, C, 2, 2): [a, b, o, c, r, s]
    return k.reshape(4 * w.shape[0], w.shape[1], 2, 2).astype(w.dtype)


def upsample_conv2d_phases(x, w, b=None, bias_form: str = "separate", kernels=None):
    """conv2d(upsample_nearest2d(x, 2), w, b, padding=1) of x (N, C, H, W), w (O, C, 3, 3), without
    the upsampled image (module docstring). ``kernels``: w's ``phase_kernels`` where the caller has
    them (computed once with the weights, layouts.derived_weight), else None: formed here."""
    options = conv_options(x.dtype, bias_form, b is not None)
    n, _, h, wd = x.shape
    o = w.shape[0]
    kernels = phase_kernels(w) if kernels is None else kernels
    z = lax.conv_general_dilated(x, kernels, window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"), **options)
    z = z.reshape(n, 2, 2, o, h + 1, wd + 1)
    rows = [jnp.stack([z[:, a, c, :, a:a + h, c:c + wd] for c in (0, 1)], axis=-1) for a in (0, 1)]
    y = jnp.stack(rows, axis=3).reshape(n, o, 2 * h, 2 * wd).astype(F32)  # [n, o, i, a, j, c]
    if b is not None:
        y = y + b.astype(F32)[None, :, None, None]
    return y.astype(x.dtype)

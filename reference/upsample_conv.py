"""Nearest-neighbour 2x upsampling followed by a 3x3 convolution (SD's ``Upsample2D``), and the same
map as four 2x2 convolutions of the small image, one per output phase.

Not one of the paper's four ideas: a lowering the JAX backend offers (``upsample_conv="phases"``),
because the VAE decoder's three upsampler convolutions hold about 28% of its products (the UNet's
three: about 8%). The definition is the composition

    y = conv2d(upsample_nearest2d(x, 2), w, b, padding=1),   up[n, c, i, j] = x[n, c, i // 2, j // 2].

Since the upsampled image repeats every pixel of x in a 2 x 2 block, the 3 x 3 window of an output
pixel (2i + a, 2j + b) (a, b in {0, 1}: its phase) covers only 2 x 2 distinct pixels of x: rows
i + a - 1 and i + a, columns j + b - 1 and j + b. Summing the kernel rows that fall on the same row of
x (and the columns likewise),

    y[n, o, 2i + a, 2j + b] = b[o] + sum_{c, r, s in {0, 1}} W_ab[o, c, r, s] x[n, c, i + a - 1 + r, j + b - 1 + s],
    W_ab[o, c] = R_a w[o, c] R_b^T,   R_0 = [[1, 0, 0], [0, 1, 1]],   R_1 = [[1, 1, 0], [0, 0, 1]]

with x zero outside its H x W pixels, as the upsampled image is zero outside its 2H x 2W (row 2i - 1
of the padded upsampled image is row i - 1 of x; R_0 gives kernel row 0 to x's row i - 1 and rows 1
and 2 to row i). Four taps per output pixel instead of nine: 4/9 of the multiply-adds, and the 4x
larger upsampled image is never formed. The phase kernels W_ab are sums of up to four weights, so in
16-bit storage they carry one more rounding than w (the backends sum them in float32 and round once).

The phase form is written for a factor of 2, a 3x3 kernel and padding 1, the upsamplers' one case;
``upsample_conv2d`` is defined for any factor, kernel and padding.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_conv2d, check_upsample, in_compute_dtype
from .elementwise import upsample_nearest2d
from .winograd import conv2d

__all__ = ["upsample_conv2d", "upsample_conv2d_phases", "phase_kernels", "PHASE_ROWS"]

#: PHASE_ROWS[a][r]: which of the 3 kernel rows (or columns) fall on row i + a - 1 + r of x, for the
#: output rows 2i + a: R_0 and R_1 of the module docstring
PHASE_ROWS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])


def upsample_conv2d(x, w, b=None, scale_factor: int = 2, padding=1):
    """conv2d(upsample_nearest2d(x, scale_factor), w, b, stride 1, padding): the definition."""
    s = check_upsample(x, scale_factor)
    check_conv2d(x, w, b, 1, padding, scale_factor=s)
    return conv2d(upsample_nearest2d(x, s), w, b, padding=padding)


def phase_kernels(w):
    """W_ab = R_a w R_b^T of w (O, C, 3, 3), as (2, 2, O, C, 2, 2) indexed [a, b, o, c, r, s], in the
    compute dtype of w."""
    wc = in_compute_dtype(w)
    rows = PHASE_ROWS.astype(wc.dtype)
    return np.einsum("arh,ochq,bsq->abocrs", rows, wc, rows)


def upsample_conv2d_phases(x, w, b=None):
    """``upsample_conv2d(x, w, b, 2, padding=1)`` of a 3x3 kernel computed as its four output phases
    (module docstring): each phase a 2x2 convolution of x zero-padded by one pixel on its top/left
    (phase 0) or bottom/right (phase 1), interleaved into the 2H x 2W output."""
    check_conv2d(x, w, b, 1, 1, scale_factor=2)
    if tuple(w.shape[2:]) != (3, 3):
        raise ValueError(f"w: the phase form needs a 3x3 kernel, got kernel size {tuple(w.shape[2:])}")
    n, _, h, wd = x.shape
    k = phase_kernels(w)
    xp = np.pad(in_compute_dtype(x), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.empty((n, w.shape[0], 2 * h, 2 * wd), xp.dtype)
    for a in (0, 1):
        for bb in (0, 1):
            # rows i + a - 1 + r of x are rows i + a + r of xp
            window = xp[:, :, a:a + h + 1, bb:bb + wd + 1]
            windows = np.lib.stride_tricks.sliding_window_view(window, (2, 2), axis=(2, 3))
            y[:, :, a::2, bb::2] = np.einsum("ncijrs,ocrs->noij", windows, k[a, bb], optimize=True)
    if b is not None:
        y = y + in_compute_dtype(b)[None, :, None, None]
    return y.astype(x.dtype)

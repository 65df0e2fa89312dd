"""Winograd convolution F(m x m, r x r): the whole story in one module.

1. Theory: ``winograd_matrices`` builds (A^T, G, B^T) by Toom-Cook from any interpolation
   points, in exact rational arithmetic or in float64.
2. The convolution: ``conv2d_winograd`` runs a 3x3, stride-1 convolution the way the GPU
   kernels do (input transform, alpha^2 GEMMs over channels, output transform); ``conv2d`` is
   the direct convolution, the baseline and the ground truth.
3. Cost: ``winograd_cost`` counts multiplications and transformed-tensor sizes per layer.
4. Numerics: ``relative_frobenius_error``, ``componentwise_error`` and ``winograd_error``
   measure the error against a float64 direct convolution of the same rounded inputs.

The 1-D algorithm. F(m, r) computes m outputs of an r-tap correlation,
y_i = sum_k g_k d_{i+k} (i < m), from alpha = m + r - 1 inputs with alpha multiplications:

    y = A^T [ (G g) * (B^T d) ]          (* is the elementwise product)

Toom-Cook construction. Polynomial multiplication s(x) = g(x) h(x) (deg g = r-1, deg h = m-1,
alpha coefficients in s) is evaluated at alpha-1 finite points p_i plus the point at infinity
(which evaluates a polynomial to its leading coefficient), multiplied pointwise, and
interpolated back. With E_k the alpha x k evaluation matrix (rows (1, p, ..., p^(k-1)), and
(0, ..., 0, 1) for infinity):

    s = E_alpha^{-1} [ (E_r g) * (E_m h) ]

Correlation is the transpose of that convolution in h, which gives

    A^T = E_m^T,    G = E_r,    B^T = E_alpha^{-T}

Finally each finite row i is rescaled, B^T's by prod_{j != i}(p_i - p_j) and G's by its inverse,
so that integer points give an integer B^T and keep the fractions in G (Lavin & Gray's form).

2-D. Nesting the 1-D algorithm gives Y = A^T [ (G g G^T) * (B^T d B) ] A for an alpha x alpha
input tile d and an r x r filter g; over C channels the elementwise products become alpha^2
independent GEMMs, M[xi, nu] = U[xi, nu] V[xi, nu] with U: (O, C) and V: (C, tiles).

Costs. Per m x m output tile and channel pair: alpha^2 multiplications instead of m^2 r^2, i.e.
a reduction of m^2 r^2 / alpha^2 (2.25x for F(2,3), 4x for F(4,3), 5.06x for F(6,3)); the
transformed input takes alpha^2 / m^2 of the output map and the transformed filter
alpha^2 / r^2 of the filter. Error grows with m because the transforms' entries grow (the
points spread out); the choice of points matters as much as the tile size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from einops import rearrange

from ._checks import check_conv2d, check_winograd, compute_dtype, in_compute_dtype
from .numerics import relative_frobenius_error

__all__ = [
    "POINT_SETS",
    "WinogradMatrices",
    "winograd_points",
    "winograd_matrices",
    "conv2d",
    "conv2d_winograd",
    "WinogradCost",
    "winograd_cost",
    "relative_frobenius_error",
    "componentwise_error",
    "WinogradError",
    "winograd_error",
]

_half = Fraction(1, 2)
_SQRT2 = math.sqrt(2.0)

#: Named interpolation point sets (finite points; infinity is always added), by output tile m.
POINT_SETS: dict[str, dict[int, tuple]] = {
    # Lavin & Gray (2016), and the improved F(6,3) points Lavin published for NNPACK
    # (github.com/Maratyszcza/NNPACK/issues/8): 0, +-1, +-2, +-1/2.
    "lavin": {
        2: (0, 1, -1),
        4: (0, 1, -1, 2, -2),
        6: (0, 1, -1, 2, -2, _half, -_half),
    },
    # Small integers 0, +-1, +-2, +-3, ...: the naive choice; for F(6,3) about 50x less
    # accurate in fp32 than "lavin" (../shared/paper.md).
    "integer": {
        2: (0, 1, -1),
        4: (0, 1, -1, 2, -2),
        6: (0, 1, -1, 2, -2, 3, -3),
    },
    # A non-symmetric F(4,3) set of the kind Barabasz, Anderson, Soodhalter & Gregg (2020,
    # "Error analysis and improving the accuracy of Winograd convolution for DNNs") found more
    # accurate than Lavin's: 0, +-1, 1/2, -2. We quote it from memory of that paper, not from its
    # text; what we do claim is measured: experiments/winograd_error.py shows it below "lavin".
    "barabasz": {
        4: (0, 1, -1, _half, -2),
    },
    # The TFLite GPU delegate's F(4x4, 3x3) points (../shared/paper.md, optimization 4):
    # 0, +-sqrt(2)/2, +-sqrt(2). Irrational: float64 only.
    "tflite": {
        4: (0.0, _SQRT2 / 2, -_SQRT2 / 2, _SQRT2, -_SQRT2),
    },
}


class WinogradMatrices(NamedTuple):
    """The three transforms of F(m, r): output A^T (m x alpha), filter G (alpha x r),
    input B^T (alpha x alpha)."""

    AT: np.ndarray
    G: np.ndarray
    BT: np.ndarray


def winograd_points(m: int, r: int = 3, points=None) -> tuple:
    """Resolve ``points`` (None, a name of POINT_SETS, or a sequence) to alpha - 1 finite points."""
    alpha = m + r - 1
    if points is None:
        points = "lavin"
    if isinstance(points, str):
        if points not in POINT_SETS:
            raise ValueError(f"points: unknown point set {points!r}; expected one of {sorted(POINT_SETS)}")
        table = POINT_SETS[points]
        if m not in table:
            raise ValueError(
                f"points: the set {points!r} has no F({m},{r}) entry (it has m = {sorted(table)}); "
                "pass the points explicitly"
            )
        points = table[m]
    points = tuple(points)
    if len(points) != alpha - 1:
        raise ValueError(
            f"points: F({m},{r}) needs alpha - 1 = {alpha - 1} finite points (infinity is added), "
            f"got {len(points)}: {points}"
        )
    if len(set(float(p) for p in points)) != len(points):
        raise ValueError(f"points: interpolation points must be distinct, got {points}")
    return points


def _exact(p) -> Fraction:
    if isinstance(p, (int, np.integer, Fraction)):
        return Fraction(p)
    f = Fraction(float(p)).limit_denominator(1 << 20)
    if float(f) != float(p):
        raise ValueError(
            f"points: {p!r} is not a simple rational number, so exact=True cannot represent it; "
            "use exact=False"
        )
    return f


def _invert(matrix: list[list]) -> list[list]:
    """Gauss-Jordan inverse with partial pivoting; works on Fractions (exactly) and floats."""
    n = len(matrix)
    zero = matrix[0][0] * 0
    one = zero + 1
    aug = [list(row) + [one if i == j else zero for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda i: abs(aug[i][col]))
        if aug[pivot][col] == 0:
            raise ValueError("points: the evaluation matrix is singular (repeated points?)")
        aug[col], aug[pivot] = aug[pivot], aug[col]
        inv_p = one / aug[col][col]
        aug[col] = [v * inv_p for v in aug[col]]
        for i in range(n):
            if i != col and aug[i][col] != 0:
                factor = aug[i][col]
                aug[i] = [vi - factor * vc for vi, vc in zip(aug[i], aug[col])]
    return [row[n:] for row in aug]


def _evaluation_matrix(points, cols: int, one) -> list[list]:
    """alpha x cols: rows (1, p, ..., p^(cols-1)) for each finite point, then (0, ..., 0, 1)."""
    zero = one * 0
    rows = [[one * p**j for j in range(cols)] for p in points]
    rows.append([zero] * (cols - 1) + [one])
    return rows


@functools.lru_cache(maxsize=64)
def _matrices(m: int, r: int, points: tuple, exact: bool):
    one = Fraction(1) if exact else 1.0
    pts = [_exact(p) for p in points] if exact else [float(p) for p in points]
    alpha = m + r - 1
    e_m = _evaluation_matrix(pts, m, one)
    e_r = _evaluation_matrix(pts, r, one)
    e_alpha_inv = _invert(_evaluation_matrix(pts, alpha, one))
    at = [[e_m[i][j] for i in range(alpha)] for j in range(m)]  # E_m^T
    g = [list(row) for row in e_r]  # E_r
    bt = [[e_alpha_inv[j][i] for j in range(alpha)] for i in range(alpha)]  # E_alpha^{-T}
    for i, p in enumerate(pts):  # finite rows: fractions out of B^T, into G
        s = one
        for j, q in enumerate(pts):
            if j != i:
                s *= p - q
        first = next(v for v in g[i] if v != 0)
        if first / s < 0:  # keep G's leading entry positive, as in Lavin & Gray's tables
            s = -s
        bt[i] = [v * s for v in bt[i]]
        g[i] = [v / s for v in g[i]]
    return at, g, bt


def winograd_matrices(m: int, r: int = 3, points=None, exact: bool = False) -> WinogradMatrices:
    """The transforms (A^T, G, B^T) of F(m, r) from ``points`` (see the module docstring).

    ``points``: None (the "lavin" set), a name of POINT_SETS, or a sequence of alpha - 1 = m + r - 2
    distinct finite points (infinity is always the last point). ``exact=True`` returns object
    arrays of ``fractions.Fraction`` (points must be rational); otherwise float64 arrays.
    """
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m: expected a positive int output tile size, got {m!r}")
    if not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"r: expected a positive int filter size, got {r!r}")
    pts = winograd_points(int(m), int(r), points)
    at, g, bt = _matrices(int(m), int(r), pts, bool(exact))
    dtype = object if exact else np.float64
    return WinogradMatrices(np.array(at, dtype=dtype), np.array(g, dtype=dtype), np.array(bt, dtype=dtype))


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (groups=1, dilation=1).

        y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, i*s + u, j*s + v]

    with xp the input zero-padded by ``padding`` on each side. x is (N, C, H, W), w is
    (O, C, kh, kw), the output (N, O, (H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1).
    This direct form is the ground truth for Winograd (``conv2d_winograd`` below).
    """
    sh, sw, ph, pw = check_conv2d(x, w, b, stride, padding)
    kh, kw = w.shape[2:]
    xp = np.pad(in_compute_dtype(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # windows[n, c, i, j, u, v] = xp[n, c, i*sh + u, j*sw + v]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.einsum("ncijuv,ocuv->noij", windows, in_compute_dtype(w), optimize=True)
    if b is not None:
        y = y + in_compute_dtype(b)[None, :, None, None]
    return y.astype(x.dtype)


def conv2d_winograd(x, w, b=None, padding=0, m: int = 4, points=None, stride=1):
    """3x3, stride-1 convolution by Winograd F(m x m, 3 x 3); same result as ``conv2d``.

    x (N, C, H, W), w (O, C, 3, 3), b (O,) or None; any H, W (edge tiles are ragged: the input is
    zero-padded to whole tiles and the output cropped). The steps are the GPU kernels' steps:

    1. input transform   V[xi, nu, c, t] = (B^T d_t B)[xi, nu]  for every alpha x alpha input
       tile d_t (tiles overlap by 2 pixels, stride m), stored as alpha^2 planes;
    2. filter transform  U[xi, nu, o, c] = (G g_oc G^T)[xi, nu] (done once per weight on a GPU);
    3. alpha^2 GEMMs     M[xi, nu] = U[xi, nu] @ V[xi, nu]        ((O, C) x (C, tiles));
    4. output transform  Y_t = A^T M_t A + b, cropped to the output size.

    Precision: float64 in, float64 throughout. float32 in: float32 arithmetic and storage.
    float16 in: fp16 *storage* with fp32 arithmetic: V, U and M are rounded to float16 where a
    GPU would store them, the GEMMs accumulate in float32, and the output is float16.
    ``stride`` exists only to reject anything but 1 with a clear error.
    """
    ph, pw = check_winograd(x, w, b, padding, m, stride)
    storage = x.dtype
    ct = compute_dtype(storage)
    at, g, bt = (t.astype(ct) for t in winograd_matrices(m, 3, points))
    alpha = m + 2

    def store(t):  # round to the storage dtype where a GPU kernel writes memory
        return t.astype(storage).astype(ct)

    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    th, tw = -(-ho // m), -(-wo // m)
    if n == 0 or o == 0 or c == 0:  # no tiles or no products: an empty output, or (C = 0) the bias
        y = np.zeros((n, o, ho, wo), ct)
        return (y if b is None else y + b.astype(ct)[None, :, None, None]).astype(storage)
    # zero padding: `padding` on all sides, plus enough at the bottom/right for whole tiles
    xp = np.pad(
        x.astype(ct),
        ((0, 0), (0, 0), (ph, th * m + 2 - h - ph), (pw, tw * m + 2 - wd - pw)),
    )
    tiles = np.lib.stride_tricks.sliding_window_view(xp, (alpha, alpha), axis=(2, 3))[:, :, ::m, ::m]
    # tiles: (N, C, th, tw, alpha, alpha) -> V: (alpha, alpha, C, N*th*tw), tile t = (n, i, j) in C order
    v = np.einsum("xu,ncijuv,yv->xycnij", bt, tiles, bt, optimize=True)
    v = store(rearrange(v, "x y c n i j -> x y c (n i j)"))
    u = store(np.einsum("xu,ocuv,yv->xyoc", g, w.astype(ct), g, optimize=True))
    mm = store(np.matmul(u, v))  # (alpha, alpha, O, tiles): alpha^2 GEMMs
    y = np.einsum("ix,xyot,jy->otij", at, mm, at, optimize=True)  # (O, tiles, m, m)
    # the m x m output tile of tile t = (n, ti, tj) lands at rows ti*m.., columns tj*m.. of image n
    y = rearrange(y, "o (n ti tj) i j -> n o (ti i) (tj j)", n=n, ti=th)
    y = y[:, :, :ho, :wo]
    if b is not None:
        y = y + b.astype(ct)[None, :, None, None]
    return y.astype(storage)


@dataclass(frozen=True)
class WinogradCost:
    """Multiplications and memory of one 3x3 stride-1 convolution layer, direct vs F(m, 3).

    Multiplication counts are those of the GEMM stage (the transforms use additions and a few
    constant multiplications, and are counted separately as dense-matrix upper bounds)."""

    m: int
    tiles: int
    direct_mults: int
    winograd_mults: int
    input_transform_mults: int
    output_transform_mults: int
    output_elements: int
    transformed_input_elements: int
    weight_elements: int
    transformed_weight_elements: int

    @property
    def mult_reduction(self) -> float:
        """direct / Winograd GEMM multiplications (m^2 r^2 / alpha^2 when tiles fit exactly)."""
        return self.direct_mults / self.winograd_mults

    @property
    def input_ratio(self) -> float:
        """Transformed input V per input channel vs the output map (alpha^2 / m^2 without ragged tiles)."""
        return self.transformed_input_elements / self.output_elements

    @property
    def weight_ratio(self) -> float:
        """Transformed weights U vs the 3x3 weights: alpha^2 / 9."""
        return self.transformed_weight_elements / self.weight_elements


def winograd_cost(in_channels: int, out_channels: int, height: int, width: int, m: int = 4,
                  padding: int = 1, batch: int = 1) -> WinogradCost:
    """Cost model of a 3x3 stride-1 convolution (input ``height`` x ``width``) under F(m, 3).

    ``input_ratio`` compares V (per input channel) with the output map (per output channel), the
    "transformed input vs output map" column of ../shared/paper.md.
    """
    for name, val in (("in_channels", in_channels), ("out_channels", out_channels), ("height", height),
                      ("width", width), ("m", m), ("batch", batch)):
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name}: expected a positive int, got {val!r}")
    ho, wo = height + 2 * padding - 2, width + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"height, width: the padded input is smaller than the 3x3 kernel ({height}x{width}, padding {padding})")
    alpha = m + 2
    tiles = batch * (-(-ho // m)) * (-(-wo // m))
    return WinogradCost(
        m=m,
        tiles=tiles,
        direct_mults=batch * out_channels * in_channels * ho * wo * 9,
        winograd_mults=out_channels * in_channels * tiles * alpha**2,
        input_transform_mults=in_channels * tiles * 2 * alpha**3,
        output_transform_mults=out_channels * tiles * (m * alpha * alpha + m * alpha * m),
        output_elements=batch * ho * wo,
        transformed_input_elements=tiles * alpha**2,
        weight_elements=out_channels * in_channels * 9,
        transformed_weight_elements=out_channels * in_channels * alpha**2,
    )


def componentwise_error(y_hat, y, x, w, padding=0) -> float:
    """max_i |y_hat_i - y_i| / (|W| * |X|)_i: the error of each output relative to the sum of
    absolute products that formed it (the convolution of |x| with |w|), in float64.

    This is the quantity that rounding-error bounds for Winograd are stated in; unlike the
    relative Frobenius error it cannot hide a few bad elements among many good ones."""
    y_hat = np.asarray(y_hat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scale = conv2d(np.abs(np.asarray(x, dtype=np.float64)), np.abs(np.asarray(w, dtype=np.float64)), padding=padding)
    if scale.shape != y.shape or y_hat.shape != y.shape:
        raise ValueError(f"y_hat, y: expected the convolution's shape {scale.shape}, got {y_hat.shape} and {y.shape}")
    err = np.abs(y_hat - y)
    nonzero = scale > 0
    if np.any(err[~nonzero] > 0):
        return math.inf
    return float(np.max(err[nonzero] / scale[nonzero])) if nonzero.any() else 0.0


class WinogradError(NamedTuple):
    relative: float
    componentwise: float


def winograd_error(x, w, m: int = 4, points=None, padding: int = 1, dtype=np.float32) -> WinogradError:
    """Error of ``conv2d_winograd`` in ``dtype`` against float64 direct convolution.

    x and w are first rounded to ``dtype``; the float64 reference convolves *the same rounded
    values*, so only the algorithm's arithmetic error is measured, not the input rounding.
    """
    dtype = np.dtype(dtype)
    xr, wr = np.asarray(x).astype(dtype), np.asarray(w).astype(dtype)
    y_hat = conv2d_winograd(xr, wr, padding=padding, m=m, points=points)
    x64, w64 = xr.astype(np.float64), wr.astype(np.float64)
    y = conv2d(x64, w64, padding=padding)
    return WinogradError(relative_frobenius_error(y_hat, y), componentwise_error(y_hat, y, x64, w64, padding))

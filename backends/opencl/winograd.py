"""Convolution, the paper's fourth idea, on OpenCL: Winograd F(m x m, 3 x 3) and the direct
convolution it is measured against. Host side of kernels/winograd.cl (the GEMMs: gemm.py).

Both compute the 2-D cross-correlation of ``reference.ops.conv2d`` (NCHW input, OIHW weights):

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, c, i*sh + u - ph, j*sw + v - pw]

Direct (``conv2d_direct``): one launch, no temporaries (two and the partial sums with a split-K
tile, see gemm.py): the implicit GEMM of the matrix core
(gemm.cl, ``gemm.conv2d_implicit_gemm``), M = O, N = N * Ho * Wo pixels, K = C * kh * kw, whose B
loader reads the im2col matrix straight from x (no im2col buffer). Kernel size and stride are
compile-time constants (one build per kernel size, stride and tile).

Winograd (``conv2d_winograd``), the TFLite GPU delegate's plan, alpha = m + 2:

    Y = A^T [ (G g G^T) * (B^T d B) ] A   per alpha x alpha input tile d (tiles step by m)

    1. filter transform   U[p, o, c] = (G g_oc G^T)[p]      (alpha^2, O, C)   once per weight tensor
    2. input transform    V[p, c, t] = (B^T d_ct B)[p]      (alpha^2, C, T)   temporary
    3. alpha^2 GEMMs      M[p] = U[p] (O x C) @ V[p] (C x T)  (alpha^2, O, T)   temporary, gemm_batched
    4. output transform   y = A^T M A + b, cropped to Ho x Wo, written in NCHW

with T = N * tiles_h * tiles_w, tiles_h = ceil(Ho / m), tiles_w = ceil(Wo / m). Launches: 3 per
call (steps 2-4), plus 1 the first time a weight tensor is seen with a given m (step 1). U is
cached on the runtime (see ``transformed_weights``), allocated with ``rt.cache`` (counted in
device memory and ``Counters.cache_bytes``); V and M are ``rt.temp`` buffers. U, V and M are
stored in the input's dtype (fp16 storage, fp32 arithmetic for float16), exactly as
``reference.winograd.conv2d_winograd`` emulates it, except where the tile table splits the
products' K (few tiles, e.g. the 8x8 layers): then M is the float32 partial sums
(splits, alpha^2, O, T), which the output transform adds (still 3 launches; with fp16 storage a
little more accurate than the emulation, which rounds M to fp16).

The transform matrices come from ``reference.winograd.winograd_matrices(m)`` (Lavin's points),
rounded to float32 and baked into the kernels as compile-time constants (one build per m and
dtype): the compiler then sees every entry and drops the zero terms, as TFLite's generated
shaders do, and no extra buffer argument or upload is needed.
"""

from __future__ import annotations

import functools

import numpy as np
import pyopencl as cl

from reference.winograd import winograd_matrices

from .gemm import choose_tile, conv2d_implicit_gemm, gemm_batched
from .runtime import Runtime, check_int32_tensors

FILE = "winograd.cl"
#: Winograd transform kernels: work-group size along the tile (or input-channel) axis.
WG = 64


# ----------------------------------------------------------------------------------- direct


def conv2d_direct(rt: Runtime, x, w, b, stride, padding):
    """Direct convolution, any kernel size and stride: one launch of the implicit GEMM
    (``gemm.conv2d_implicit_gemm``) and no temporaries, or where the tile table splits K the
    float32 partial sums and their reduction."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    check_int32_tensors(("x", x.shape), ("w", w.shape), ("x", (n, o, ho, wo), "the output (N, O, Ho, Wo)"))
    y = rt.empty((n, o, ho, wo), x.dtype)
    if y.size == 0:  # N = 0 or O = 0: nothing to launch (C = 0 launches: the kernel writes the bias)
        return y
    conv2d_implicit_gemm(rt, x, w, b, y, stride, padding)
    return y


# --------------------------------------------------------------------------------- Winograd


def _float_literals(matrix) -> str:
    """Row-major float32 C literals, comma-separated with no spaces (one -D build option)."""
    values = np.asarray(matrix, dtype=np.float64).astype(np.float32).ravel()
    return ",".join(np.format_float_scientific(v, unique=True) + "f" for v in values)


@functools.lru_cache(maxsize=None)
def _winograd_defines(m: int) -> tuple:
    """The compile-time constants of winograd.cl for F(m x m, 3 x 3), as (name, value) pairs."""
    at, g, bt = winograd_matrices(m, 3)
    return (("WINO_M", m), ("WG", WG), ("WINO_AT", _float_literals(at)),
            ("WINO_G", _float_literals(g)), ("WINO_BT", _float_literals(bt)))


@functools.lru_cache(maxsize=None)
def _winograd_kernel(rt: Runtime, name: str, dtype, m: int, splits: int = 1):
    return rt.kernel(FILE, name, dtype, {**dict(_winograd_defines(m)), "SPLITS": splits})


def winograd_cache(rt: Runtime) -> dict:
    """The runtime's cache of transformed weights: (w.data.int_ptr, w.shape, dtype, m) -> (w, U).

    The entry keeps ``w`` alive, so its buffer (and address) cannot be reused by another array
    while U is cached. Weights changed *in place* are not detected: call ``clear_winograd_cache``
    (``OpenCLBackend.clear_caches``).
    """
    cache = getattr(rt, "_winograd_cache", None)
    if cache is None:
        cache = {}
        setattr(rt, "_winograd_cache", cache)
    return cache


def clear_winograd_cache(rt: Runtime) -> None:
    """Forget every transformed weight tensor (e.g. after loading new weights in place)."""
    winograd_cache(rt).clear()


def transformed_weights(rt: Runtime, w, m: int):
    """U = G g G^T of the weights w (O, C, 3, 3) as (alpha^2, O, C), computed on the device
    by one launch of ``winograd_filter_transform`` the first time, then taken from the cache."""
    key = (w.data.int_ptr, tuple(w.shape), w.dtype.str, m)
    cache = winograd_cache(rt)
    if key not in cache:
        o, c = w.shape[:2]
        alpha = m + 2
        u = rt.cache((alpha * alpha, o, c), w.dtype)  # persistent: a cache, not a temp
        kernel = _winograd_kernel(rt, "winograd_filter_transform", w.dtype, m)
        rt.launch(kernel, (c, o), (WG, 1), w, u, o, c)
        cache[key] = (w, u)
    return cache[key][1]


def conv2d_winograd(rt: Runtime, x, w, b, padding, m: int):
    """3x3 stride-1 convolution by Winograd F(m x m, 3 x 3): 3 launches (4 with new weights),
    temporaries V (alpha^2, C, T) and M (alpha^2, O, T) in x's dtype.

    Empty dimensions: N = 0 or O = 0 give an empty output and launch nothing; C = 0 (no input
    channels) is the empty sum, M = 0, so the output transform alone writes y = b (zeros without
    a bias), as the direct convolution and torch do: no filter or input transform, no GEMM."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    ph, pw = padding
    alpha = m + 2
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    tiles_h, tiles_w = -(-ho // m), -(-wo // m)
    t = n * tiles_h * tiles_w
    check_int32_tensors(("x", x.shape), ("w", w.shape),
                        ("w", (alpha * alpha, o, c), "its Winograd transform U (alpha^2, O, C)"),
                        ("x", (alpha * alpha, c, t), "its Winograd transform V (alpha^2, C, tiles)"),
                        ("x", (alpha * alpha, o, t), "the Winograd products M (alpha^2, O, tiles)"),
                        ("x", (n, o, ho, wo), "the output (N, O, Ho, Wo)"))
    if n == 0 or o == 0:
        return rt.empty((n, o, ho, wo), x.dtype)

    splits = 1
    if c == 0:
        mt = rt.temp((alpha * alpha, o, t), x.dtype)
        cl.enqueue_fill_buffer(rt.queue, mt.data, np.zeros(1, mt.dtype), 0, mt.nbytes)
    else:
        u = transformed_weights(rt, w, m)
        v = rt.temp((alpha * alpha, c, t), x.dtype)
        rt.launch(_winograd_kernel(rt, "winograd_input_transform", x.dtype, m), (t, c), (WG, 1),
                  x, v, c, h, wd, ph, pw, tiles_h, tiles_w, t)
        tile = choose_tile(rt, "gemm", x.dtype, o, t, c, alpha * alpha)
        products = dict(m=o, n=t, k=c, batch=alpha * alpha, a_strides=(o * c, c, 1), b_strides=(c * t, t, 1),
                        c_strides=(o * t, t, 1), tile=tile)
        if tile.splits == 1:
            mt = rt.temp((alpha * alpha, o, t), x.dtype)
            gemm_batched(rt, u, v, mt, **products)
        else:  # split K: M stays the float32 partial sums, which the output transform adds
            mt = gemm_batched(rt, u, v, rt.dummy(x.dtype), **products, reduce=False)
            splits = tile.splits

    y = rt.empty((n, o, ho, wo), x.dtype)
    rt.launch(_winograd_kernel(rt, "winograd_output_transform", x.dtype, m, splits), (t, o), (WG, 1),
              mt, b if b is not None else rt.dummy(x.dtype), b is not None, y,
              o, ho, wo, tiles_h, tiles_w, t)
    return y

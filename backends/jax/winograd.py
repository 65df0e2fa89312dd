"""Convolution, the paper's fourth idea, in JAX: Winograd F(m x m, 3 x 3) as Pallas input and
output transforms around alpha^2 batched GEMMs (XLA), m = 2, 4 or 6, alpha = m + 2; and the
direct convolution (``conv2d_direct``, XLA's), the baseline.

The math (reference/winograd.py tells the whole story). For every alpha x alpha input tile d
(tiles step by m, so neighbours overlap by 2 pixels) and every 3 x 3 filter g,

    Y = A^T [ (G g G^T) * (B^T d B) ] A                 (* elementwise; Y is the m x m output tile)

and summing over the C input channels turns the elementwise products into alpha^2 GEMMs:

    1. filter transform   U[p, o, c] = (G g_oc G^T)[p]       (alpha^2, O, C)   plain jnp
    2. input transform    V[p, c, t] = (B^T d_ct B)[p]       (alpha^2, C, T)   Pallas kernel
    3. alpha^2 GEMMs      M[p] = U[p] @ V[p]                 (alpha^2, O, T)   lax.dot_general
    4. output transform   y = A^T M_t A + b, cropped          (N, O, Ho, Wo)    Pallas kernel

with p = (xi, nu) the position in the transformed tile, T = N * tiles_h * tiles_w tiles,
t = (n * tiles_h + i) * tiles_w + j, tiles_h = ceil(Ho / m), tiles_w = ceil(Wo / m). A^T, G
and B^T are ``reference.winograd.winograd_matrices(m)`` (Lavin's points) rounded to float32:
trace-time constants in the kernels' unrolled sums, a small padded input array for their
broadcast products.

Kernel plans. Each transform is one ``pl.pallas_call`` with one program per (channel, block of
TB tiles); the TB tiles are the lanes of every vector (TB a power of two, 16..64, as Triton
wants). Both transforms are separable, X = L T R^T, and each is done in two passes:

    input transform   grid (C, T_pad / TB). The padded input is passed whole, flattened, so a
                      tile's pixel (u, v) sits at corner_t + u * Wp + v, corner_t the flat index
                      of its top-left pixel (n, c, i*m, j*m). For each column v the program
                      gathers the (A, TB) tensor of pixels (u, v) of its tiles (A = alpha rounded
                      up to a power of two; rows u >= alpha repeat row alpha - 1).
                      Column pass (B on the right) as unrolled sums with the constant
                      coefficients (zeros skipped, +-1 as additions): e_nu = sum_v BT[nu, v] d_v.
                      Row pass (B^T on the left) as a broadcast product with B^T padded to A x A,
                      reduced over u: V[:, nu] = sum_u BT[:, u] e_nu[u] -> (A, TB), stored to rows
                      xi * alpha + nu of V[:, c, block].
    output transform  grid (O, T_pad / TB). The program loads the (A, TB) tensors M[xi, nu] of its
                      tiles for each nu (xi padded as above), applies A on the right by unrolled
                      sums, f_b = sum_nu AT[b, nu] M[:, nu], then A^T on the left by the broadcast
                      product with A^T padded to (A_m, A), adds b[o] and scatters the column b of
                      every m x m tile into the flattened output at corner_t + a * Wy + b.

The unrolled sums are how a GPU shader with the matrices baked in looks (TFLite's Winograd
kernels); the row pass reduces over a tensor axis, because Triton cannot index a row of a
tensor and its ``dot`` needs dimensions >= 16 (alpha is 4, 6 or 8). Padded rows of the constant
matrices repeat their last real row, so padded outputs equal the last real one and are stored
to the same address with the same value (a benign duplicate store, no mask needed).

Padding, all inside ``conv2d_winograd``: the input is zero-padded by ``padding`` and up to whole
tiles at the bottom/right (Hp = tiles_h*m + 2, Wp = tiles_w*m + 2); the tile count T is padded to
a multiple of TB; padded tiles re-read the last real tile (valid memory), their V and M columns
are garbage that the GEMM carries along, and the output transform sends them to a scratch block
row below the image. The output plane has tiles_h*m (+ m scratch) rows and tiles_w*m columns
and is cropped to Ho x Wo. Flat indices are int32: an input or output of 2^31 elements or more
is rejected. The only arithmetic outside the kernels is the filter transform and the GEMMs.

Storage emulation, exactly as ``reference.winograd.conv2d_winograd``: V, U and M are stored in
x's dtype (float16 / bfloat16 storage rounds them where a GPU writes memory), all arithmetic is
float32, the GEMMs accumulate in float32 (``gemm.product_options``, as the linear layers: HIGHEST
for float32, the tensor cores for 16-bit storage), and the output is rounded once. So the
reference's error bounds per tile size transfer to this implementation.

The filter transform U = G g G^T depends on the weights alone. Under ``jax.jit`` the weights are
traced arguments, so XLA neither caches U between calls nor constant-folds it (it would only fold
weights closed over as constants): called alone, this function transforms w in every call. Its
cost, O C alpha (3 + alpha) 3 multiplications and U's alpha^2 O C stores, is small next to the
GEMMs' O C alpha^2 T when T >> 1, but not at the UNet's 8x8 latents (T = 4 per image at m = 4).
Inside a network, ``JaxBackend`` passes U computed once with the weights (``derived_weights``,
layouts.py), as the OpenCL backend caches U per weight tensor and the paper's engines transform
the weights at load time: at the price of U's memory, (m + 2)^2 / 9 times the weights'.

``transforms="jnp"`` computes steps 2 and 4 with plain jnp (strided slices, einsum) instead of
the kernels: the same V and M layouts and the same storage roundings, for comparison.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from reference.winograd import winograd_matrices

from .gemm import product_options
from .pallas_util import compiler_params, next_power_of_2

__all__ = ["conv2d_direct", "conv_options", "CONV_BIAS", "TRANSFORMS", "matrices", "filter_transform", "input_transform", "output_transform",
           "conv2d_winograd", "tile_block"]

F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST
TRANSFORMS = ("pallas", "jnp")
#: where ``conv2d_direct`` adds the bias (JaxBackend's ``conv_bias``): after the product's rounding
#: to the storage dtype, or to its float32 result before the one rounding ("epilogue")
CONV_BIAS = ("separate", "epilogue")
#: Tiles per program (the lanes of a kernel): a power of two in [MIN_TILE_BLOCK, MAX_TILE_BLOCK].
MIN_TILE_BLOCK, MAX_TILE_BLOCK = 16, 64
NUM_WARPS = 4


@functools.lru_cache(maxsize=None)
def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, 3), Lavin's points, rounded to float32 (the constants every path uses)."""
    return tuple(t.astype(np.float32) for t in winograd_matrices(m, 3))


def tile_block(tiles: int) -> int:
    """TB, the tiles per program: the next power of two of ``tiles``, clamped to
    [MIN_TILE_BLOCK, MAX_TILE_BLOCK]."""
    return min(MAX_TILE_BLOCK, max(MIN_TILE_BLOCK, next_power_of_2(tiles)))


def _linear_combination(coefficients, terms):
    """sum_k coefficients[k] * terms[k] with float32 constants, unrolled at trace time: zero
    coefficients are skipped and +-1 become additions, as a GPU shader with the matrices baked in."""
    total = None
    for c, t in zip(coefficients, terms):
        c = float(c)
        if c == 0.0:
            continue
        term = t if c == 1.0 else (-t if c == -1.0 else c * t)
        total = term if total is None else total + term
    return total if total is not None else jnp.zeros_like(terms[0])


def _tile_coordinates(k, block: int, tiles: int, tiles_h: int, tiles_w: int):
    """For the lanes of tile block k: the tile ids t (clamped to the last real tile), their sample n,
    tile row i and tile column j, and whether the lane is a real tile."""
    t = k * block + jnp.arange(block, dtype=jnp.int32)
    real = t < tiles
    t = jnp.minimum(t, tiles - 1)
    n = lax.div(t, tiles_h * tiles_w)
    rest = t - n * (tiles_h * tiles_w)
    i = lax.div(rest, tiles_w)
    return n, i, rest - i * tiles_w, real


def _clamped_iota(size: int, limit: int):
    """[0, 1, ..., limit - 1, limit - 1, ...] of length ``size``: padded positions repeat the last real one."""
    return jnp.minimum(jnp.arange(size, dtype=jnp.int32), limit - 1)


def _padded_left(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``matrix`` (r x c, float32) padded to rows x cols for a kernel's broadcast product: extra
    columns are zero (they meet padded, repeated inputs), extra rows repeat the last row (so the
    padded outputs equal the last real one and may be stored to the same place)."""
    r, c = matrix.shape
    out = np.zeros((rows, cols), np.float32)
    out[:, :c] = matrix[np.minimum(np.arange(rows), r - 1)]
    return out


# ----------------------------------------------------------------------------------- direct convolution


def conv_options(dtype, bias_form: str, has_bias: bool) -> dict:
    """``gemm.product_options`` of a convolution whose bias is added in ``bias_form`` (CONV_BIAS):
    with "epilogue" and a bias, the product's float32 result, so that the bias is added before the
    one rounding (``conv2d_direct``)."""
    if bias_form not in CONV_BIAS:
        raise ValueError(f"bias_form: expected one of {CONV_BIAS}, got {bias_form!r}")
    options = product_options(dtype)
    return dict(options, preferred_element_type=F32) if bias_form == "epilogue" and has_bias else options


@functools.partial(jax.jit, static_argnums=(3, 4), static_argnames=("bias_form",))
def conv2d_direct(x, w, b=None, stride=(1, 1), padding=(0, 0), bias_form: str = "separate"):
    """2-D cross-correlation (torch.nn.functional.conv2d, groups 1, dilation 1), NCHW / OIHW:

        y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * xp[n, c, i*sh + u, j*sw + v]

    with xp the input zero-padded by (ph, pw) on each side: XLA's convolution (cuDNN on an NVIDIA
    GPU), the baseline the Winograd path is measured against. Precision as the linear layers'
    (``gemm.product_options``: float32 HIGHEST; 16-bit storage accumulated in float32 by cuDNN,
    its result in the storage dtype); the bias is added in float32. ``bias_form`` (one of CONV_BIAS),
    for 16-bit storage: "separate" rounds the product to the storage dtype and adds the bias in a
    second pass; "epilogue" asks for the product's float32 result and rounds once, after the bias:
    y = round(sum + b). That is the form XLA's cuDNN rewriter can fold into one cuDNN call for
    float16 (convolution + bias: FuseBiasOrSideInput, then FuseConvertToF16, which needs every
    operand to convert losslessly to float16); bfloat16 has no such rewrite, and its float32
    result makes XLA run a float32 convolution (gemm.py). float32 storage: the two are the same."""
    (ph, pw) = padding
    y = lax.conv_general_dilated(x, w, window_strides=tuple(stride), padding=((ph, ph), (pw, pw)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                 **conv_options(x.dtype, bias_form, b is not None)).astype(F32)
    if b is not None:
        y = y + b.astype(F32)[None, :, None, None]
    return y.astype(x.dtype)


# ----------------------------------------------------------------------------------- filter transform


@functools.partial(jax.jit, static_argnums=(1,))
def filter_transform(w, m: int):
    """U[p, o, c] = (G g_oc G^T)[p] of w (O, C, 3, 3) as (alpha^2, O, C) in w's dtype (float32
    arithmetic, one rounding to the storage dtype)."""
    _, g, _ = matrices(m)
    o, c = w.shape[:2]
    u = jnp.einsum("xu,ocuv,yv->xyoc", g, w.astype(F32), g, precision=HIGHEST)
    return u.reshape((m + 2) ** 2, o, c).astype(w.dtype)


# ----------------------------------------------------------------------------------- input transform


def _input_transform_kernel(x_ref, bt_ref, v_ref, *, m, block, tiles, tiles_h, tiles_w, plane):
    """x_ref: the whole padded input, flattened; bt_ref: B^T padded to (A, A) (_padded_left);
    v_ref (alpha^2, 1, TB): this program's block of V[:, c, :]."""
    _, _, bt = matrices(m)
    alpha, big = m + 2, next_power_of_2(m + 2)
    hp, wp = plane
    n, i, j, _ = _tile_coordinates(pl.program_id(1), block, tiles, tiles_h, tiles_w)
    channels = pl.num_programs(0)
    corner = ((n * channels + pl.program_id(0)) * hp + i * m) * wp + j * m  # (TB,) flat index of d[0][0]
    rows = _clamped_iota(big, alpha)[:, None]                               # (A, 1): u (padded rows repeat)
    # column pass, B on the right: e[nu][u, t] = sum_v BT[nu, v] d_t[u][v]; d[v] is the gathered
    # column v of every tile, an (A, TB) tensor
    d = [x_ref[corner[None, :] + rows * wp + v].astype(F32) for v in range(alpha)]
    e = [_linear_combination(bt[nu], d) for nu in range(alpha)]
    # row pass, B^T on the left, as a broadcast product reduced over u: (A_xi, A_u, TB) -> (A_xi, TB)
    left = bt_ref[...][:, :, None]
    lanes = jnp.arange(block, dtype=jnp.int32)[None, :]
    for nu in range(alpha):
        column = jnp.sum(left * e[nu][None, :, :], axis=1)   # V[xi, nu] for every xi (padded xi repeat)
        v_ref[rows * alpha + nu, 0, lanes] = column.astype(v_ref.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def input_transform(xp, m: int, tiles_h: int, tiles_w: int, interpret: bool):
    """V (alpha^2, C, T_pad) of the zero-padded input xp (N, C, tiles_h*m + 2, tiles_w*m + 2), in
    xp's dtype; columns t >= T = N * tiles_h * tiles_w are padding. One ``pallas_call``."""
    n, c, hp, wp = xp.shape
    alpha = m + 2
    tiles = n * tiles_h * tiles_w
    block = tile_block(tiles)
    blocks = pl.cdiv(tiles, block)
    flat = xp.reshape(-1)
    left = jnp.asarray(_padded_left(matrices(m)[2], next_power_of_2(alpha), next_power_of_2(alpha)))
    kernel = functools.partial(_input_transform_kernel, m=m, block=block, tiles=tiles, tiles_h=tiles_h,
                               tiles_w=tiles_w, plane=(hp, wp))
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((alpha * alpha, c, blocks * block), xp.dtype),
        grid=(c, blocks),
        in_specs=[pl.BlockSpec(flat.shape, lambda ch, k: (0,)),
                  pl.BlockSpec(left.shape, lambda ch, k: (0, 0))],
        out_specs=pl.BlockSpec((alpha * alpha, 1, block), lambda ch, k: (0, ch, k)),
        compiler_params=compiler_params(NUM_WARPS, interpret),
        interpret=interpret,
        name=f"winograd{m}_input_transform",
    )(flat, left)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def input_transform_jnp(xp, m: int, tiles_h: int, tiles_w: int):
    """The same V (alpha^2, C, T) in plain jnp: alpha^2 strided slices (the tiles' pixels), then
    B^T d B by einsum."""
    _, _, bt = matrices(m)
    n, c = xp.shape[:2]
    alpha = m + 2
    pixels = jnp.stack([jnp.stack([xp[:, :, u:u + tiles_h * m:m, v:v + tiles_w * m:m] for v in range(alpha)])
                        for u in range(alpha)]).astype(F32)  # (alpha, alpha, N, C, tiles_h, tiles_w)
    v = jnp.einsum("xu,uvncij,yv->xycnij", bt, pixels, bt, precision=HIGHEST)
    return v.reshape(alpha * alpha, c, n * tiles_h * tiles_w).astype(xp.dtype)


# ----------------------------------------------------------------------------------- output transform


def _output_transform_kernel(*refs, m, block, tiles, tiles_h, tiles_w, plane, has_bias):
    """refs: M block (alpha^2, 1, TB), A^T padded to (A_m, A) (_padded_left), [bias (O,)], and y_ref:
    the whole padded output (N, O, Hy, Wy), flattened."""
    m_ref, at_ref, y_ref = refs[0], refs[1], refs[-1]
    at, _, _ = matrices(m)
    alpha, big, small = m + 2, next_power_of_2(m + 2), next_power_of_2(m)
    hy, wy = plane
    o = pl.program_id(0)
    n, i, j, real = _tile_coordinates(pl.program_id(1), block, tiles, tiles_h, tiles_w)
    if block * pl.cdiv(tiles, block) > tiles:  # padded lanes write the scratch block row
        i = jnp.where(real, i, tiles_h)
    lanes = jnp.arange(block, dtype=jnp.int32)[None, :]
    xi = _clamped_iota(big, alpha)[:, None]                              # (A, 1)
    # column pass, A on the right: f[b][xi, t] = sum_nu AT[b, nu] M_t[xi, nu]; mcol[nu] is the
    # column nu of every tile's M, an (A, TB) tensor
    mcol = [m_ref[xi * alpha + nu, 0, lanes].astype(F32) for nu in range(alpha)]
    f = [_linear_combination(at[b], mcol) for b in range(m)]
    # row pass, A^T on the left: (A_m, A, TB) reduced over xi -> Y[a, b] for every a (padded a repeat)
    left = at_ref[...][:, :, None]
    rows = _clamped_iota(small, m)[:, None]                              # (A_m, 1): a
    corner = ((n * pl.num_programs(0) + o) * hy + i * m) * wy + j * m    # (TB,) flat index of Y[0][0]
    bias = refs[2][o].astype(F32) if has_bias else None
    for b in range(m):
        column = jnp.sum(left * f[b][None, :, :], axis=1)
        if bias is not None:
            column = column + bias
        y_ref[corner[None, :] + rows * wy + b] = column.astype(y_ref.dtype)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def output_transform(mt, b, n: int, m: int, tiles_h: int, tiles_w: int, interpret: bool):
    """y (N, O, Hy, Wy) = A^T M A + b of M (alpha^2, O, T_pad), in M's dtype, Hy = tiles_h * m
    (+ m scratch rows when T_pad > T), Wy = tiles_w * m: crop it. One ``pallas_call``."""
    p, o, padded_tiles = mt.shape
    alpha = m + 2
    tiles = n * tiles_h * tiles_w
    block = tile_block(tiles)
    hy, wy = (tiles_h + (padded_tiles > tiles)) * m, tiles_w * m
    left = jnp.asarray(_padded_left(matrices(m)[0], next_power_of_2(m), next_power_of_2(alpha)))
    operands = [mt, left]
    in_specs = [pl.BlockSpec((p, 1, block), lambda oc, k: (0, oc, k)),
                pl.BlockSpec(left.shape, lambda oc, k: (0, 0))]
    if b is not None:
        operands.append(b)
        in_specs.append(pl.BlockSpec(b.shape, lambda oc, k: (0,)))
    size = n * o * hy * wy
    kernel = functools.partial(_output_transform_kernel, m=m, block=block, tiles=tiles, tiles_h=tiles_h,
                               tiles_w=tiles_w, plane=(hy, wy), has_bias=b is not None)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((size,), mt.dtype),
        grid=(o, padded_tiles // block),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((size,), lambda oc, k: (0,)),
        compiler_params=compiler_params(NUM_WARPS, interpret),
        interpret=interpret,
        name=f"winograd{m}_output_transform",
    )(*operands)
    return y.reshape(n, o, hy, wy)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def output_transform_jnp(mt, b, n: int, m: int, tiles_h: int, tiles_w: int):
    """The same y (N, O, tiles_h*m, tiles_w*m) in plain jnp: A^T M A by einsum, then the tiles
    laid out as NCHW."""
    at, _, _ = matrices(m)
    alpha, o = m + 2, mt.shape[1]
    planes = mt.astype(F32).reshape(alpha, alpha, o, n, tiles_h, tiles_w)
    y = jnp.einsum("ax,xyonij,by->noiajb", at, planes, at, precision=HIGHEST)
    y = y.reshape(n, o, tiles_h * m, tiles_w * m)
    if b is not None:
        y = y + b.astype(F32)[None, :, None, None]
    return y.astype(mt.dtype)


# ----------------------------------------------------------------------------------- the convolution


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def conv2d_winograd(x, w, b, padding: tuple[int, int], m: int, interpret: bool, transforms: str = "pallas",
                    u=None):
    """3x3, stride-1 convolution of x (N, C, H, W) with w (O, C, 3, 3) and b (O,) or None by
    Winograd F(m x m, 3 x 3), m in (2, 4, 6): the same result as ``ops.conv2d`` up to the
    algorithm's rounding error. ``padding`` = (ph, pw); ``interpret`` runs the Pallas kernels in
    the interpreter; ``transforms`` = "pallas" (kernels) or "jnp" (the plain-jnp transforms);
    ``u``: w's ``filter_transform`` where the caller has it (computed once with the weights,
    layouts.derived_weight), else None: computed here. Arguments are validated by the backend
    (reference._checks.check_winograd)."""
    if transforms not in TRANSFORMS:
        raise ValueError(f"transforms: expected one of {TRANSFORMS}, got {transforms!r}")
    n, c, h, wd = x.shape
    o = w.shape[0]
    ph, pw = padding
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    tiles_h, tiles_w = -(-ho // m), -(-wo // m)
    if n == 0 or o == 0 or c == 0:
        # nothing to transform; with C = 0 the sum over channels is empty: y = b (as the direct
        # convolution, the reference and torch give)
        y = jnp.zeros((n, o, ho, wo), F32)
        if b is not None:
            y = y + b.astype(F32)[None, :, None, None]
        return y.astype(x.dtype)
    if transforms == "pallas" and max(n * c, n * o) * (tiles_h * m + 2 + m) * (tiles_w * m + 2) >= 2**31:
        raise ValueError(f"x: the Winograd kernels index with int32 and this layer ({x.shape} -> {o} channels) "
                         "has 2^31 elements or more; split the batch or use method='direct'")
    # zero padding: `padding` on every side, plus the ragged bottom/right edge up to whole tiles
    xp = jnp.pad(x, ((0, 0), (0, 0), (ph, tiles_h * m + 2 - h - ph), (pw, tiles_w * m + 2 - wd - pw)))

    u = filter_transform(w, m) if u is None else u                # (alpha^2, O, C)
    if transforms == "pallas":
        v = input_transform(xp, m, tiles_h, tiles_w, interpret)   # (alpha^2, C, T_pad)
    else:
        v = input_transform_jnp(xp, m, tiles_h, tiles_w)          # (alpha^2, C, T)
    # alpha^2 GEMMs (O x C) @ (C x T), float32 accumulation, M stored in the storage dtype
    mt = lax.dot_general(u, v, (((2,), (1,)), ((0,), (0,))), **product_options(x.dtype)).astype(x.dtype)
    if transforms == "pallas":
        y = output_transform(mt, b, n, m, tiles_h, tiles_w, interpret)
    else:
        y = output_transform_jnp(mt, b, n, m, tiles_h, tiles_w)
    return y[:, :, :ho, :wo]

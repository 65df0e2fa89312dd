"""Attention, the paper's third idea, in JAX: naive (jnp), the paper's partially fused softmax
(jnp scores + two Pallas kernels) and FlashAttention (one Pallas kernel); and the row softmax
(jnp) as an op of its own.

With q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) and s = scale (reference/attention.py):

    A = s Q K^T   (N x M per batch*head),   P = softmax(A) along M,   O = P V   (B, H, N, dv)

The variants compute the same O and differ in what they store, which is the paper's point
(Chen et al. 2023, "Attention"):

=================  ==========================================  ==================================
method             steps                                       N x M arrays in memory
=================  ==========================================  ==================================
"naive"            jnp: A = s Q K^T, P = softmax(A), O = P V   A and P (float32)
"partial_softmax"  jnp: A = s Q K^T (stored);                  A only (float32)
                   Pallas ``softmax_stats``: (L, S) per row;
                   Pallas ``attention_pv_softmax``:
                   O = exp(A - L) V / S, tile by tile
"flash"            one Pallas kernel ``flash_attention``       none
=================  ==========================================  ==================================

Partially fused softmax. The statistics kernel gives each program ``block_n`` rows of A; it walks
their M columns in blocks of ``block_m``, reduces each block to (L_b, S_b) = (row max, row sum of
exp(A - L_b)) and merges it into the running pair with the associative step of
reference.attention.merge_stats:

    L = max(L_a, L_b),    S = S_a exp(L_a - L) + S_b exp(L_b - L).

The product kernel gives each program ``block_n`` rows of A and walks the same column blocks,
applying the normalization as it loads each tile: O = sum_m exp(A[n, m] - L[n]) V[m, :] / S[n].
The normalized P is never written. With ``stats="scores"`` (``PARTIAL_SOFTMAX_STATS``) one Pallas
kernel, ``attention_scores_stats``, forms A tile by tile, stores each tile and merges it into the
rows' (L, S) by the same step while it is in registers: A is then read once (by the product
kernel), not twice, and no N x M product runs outside the kernels. "reduction" is the paper's
separate reduction; the backend's default, "auto" (``partial_softmax_stats_for``), takes "scores"
up to head dim 80, where it was measured faster, and "reduction" above.

Flash (FA2 style, after jax/experimental/pallas/ops/gpu/attention.py): grid (B*H, N / block_q).
A program keeps its (block_q, d_pad) Q tile, loops over K/V blocks of ``block_k`` keys with
``lax.fori_loop`` and carries the running row max m, row sum l and a float32 (block_q, dv_pad)
accumulator:

    m' = max(m, rowmax(S_j)),   l = l e^(m - m') + rowsum(e^(S_j - m')),
    acc = acc e^(m - m') + e^(S_j - m') V_j,   m = m',      finally O = acc / l.

Every exponential in the kernels is a base-2 one (``pallas_util.exp2``: the hardware's
ex2.approx on a GPU, instead of the accurate libdevice expf the Triton lowering gives jnp.exp):
the scores are multiplied by scale log2(e) instead of scale, and e^x = 2^(x log2(e)).

Padding (callers never pad). The Triton lowering wants power-of-two tiles and dots with every
dimension >= 16, so the head dims d and dv count as ``padded_dim`` (max(16, next power of two):
40 -> 64, 80 -> 128, 160 -> 256, 512 stays) and N and M as multiples of the blocks. Zero columns
in q and k add nothing to Q K^T; padded keys get the score -inf inside the kernels (masked by
column index < M). The partially fused softmax zero-pads copies in its wrappers and crops the
output. Flash (v4) makes no copy: its blocks reach past the arrays' ends, its loads put 0 there
(masks on rows and columns) and its store skips those positions, so it reads q, k and v where
they are, in (B, H, N, d) or, inside the network, in the projections' (B, N, H, d) layout, whose
transposes the backend's swap of axes cancels (``attention_flash``'s ``heads_axis``). JaxBackend
takes the second inside a network program and the first for an op called alone
(``attention``'s ``flash_heads_axis``).

Block sizes (``block_sizes``): powers of two in [16, 64], at most the next power of two of N (rows)
or M (keys), and small enough that every tile carrying a head dimension (Q, K, V, the
accumulator) holds at most ``TILE_ELEMENTS`` = 8192 float32 values (32 KiB), i.e.
block <= 8192 / max(d_pad, dv_pad): 64 for d <= 128, 32 for d = 160 (d_pad 256), 16 for the VAE's
d = 512. The same rule gives block_n, block_m of the partially fused kernels and block_q, block_k
of flash in float32. On a GPU the kernels run with 4 warps up to d_pad = 64 and 8 above (as jax's
own kernel does). Flash with 16-bit storage (the tensor-core path) cuts the head dims into
``head_dim_pieces`` (40 -> 32 + 16 columns, not 64) and takes its blocks and warps from
``flash_blocks``, measured on an H200 (backends/jax/notes/attention.md).

Causal attention (``causal=True``, CLIP's text encoder): query row i sees keys j <= i only,
A[i, j] = -inf for j > i before the softmax (top-left aligned, any N and M; reference/attention.py).
Column 0 is visible to every row, so every row max L is finite and exp(-inf - L) = 0 removes the
masked keys. Per method:

* naive: ``jnp.where`` on A before the softmax.
* partial_softmax: A is masked by jnp when it is formed (the select fuses with the scaling), so
  the stored A holds -inf above the diagonal. A column block of the statistics kernel can then be
  fully masked for a row (L_b = -inf), where exp(A - L_b) and the merge's exp(L_b - L) would be
  exp(-inf + inf) = NaN; both use ``_exp_shifted``, which gives 0 there (as
  reference.attention.merge_stats does). The product kernel divides by finite L only.
* flash: the kernel extends its padded-key mask with column > row, from the true row and column
  indices (padding is at the end, so they are the unpadded ones). The first key block holds
  column 0, so the running max is finite from the first step on; later fully masked tiles add
  exp(-inf - m) = 0 with correction 1. Key blocks entirely above the diagonal of a Q tile (first
  column > last row) are skipped: the loop runs to ceil((r + 1) block_q / block_k) for Q tile r.

None of this adds a kernel launch or a stored array: the mask is computed from indices (iota),
inside the kernel for flash and, for naive and partial_softmax, in the elementwise pass that
scales A (XLA fuses iota, compare and select into it).

Precision, the same for the three methods: float32 softmax arithmetic whatever the storage
dtype; the scores A, the statistics and the accumulators are float32; the output has q's dtype.
float32 storage: both products at ``Precision.HIGHEST`` (no TF32). float16/bfloat16 storage: both
products on the tensor cores with float32 accumulation: Q K^T on the stored operands (their
products are exact in float32), and P V with P rounded to the storage dtype (``_times_v``; as
FlashAttention 2 and SDPA). Rounding P adds at most half an ulp of the storage dtype per weight,
below the output's own rounding. The naive baseline takes the same policy, so that the three
methods differ only in what they store.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from . import attention_hopper
from .pallas_util import cdiv, compiler_params, exp2, pad_to, round_up

__all__ = ["METHODS", "FLASH_LOWERINGS", "PARTIAL_SOFTMAX_STATS", "partial_softmax_stats_for", "softmax", "attention", "flash_kernel_for", "attention_flash_heads_last", "attention_naive", "attention_partial_softmax", "attention_flash",
           "softmax_stats", "block_sizes", "flash_blocks", "padded_dim"]

METHODS = ("naive", "partial_softmax", "flash")
F32 = jnp.float32
HIGHEST = lax.Precision.HIGHEST
#: log2(e): the kernels exponentiate in base 2, exp(x) = 2^(x log2(e)) (pallas_util.exp2)
LOG2_E = math.log2(math.e)
#: Smallest block and padded head dim: a dot in a Triton kernel needs every dimension >= 16.
MIN_BLOCK = 16
#: Largest block (rows or keys per tile).
MAX_BLOCK = 64
#: Most float32 elements of a tile that carries a head dimension (block x d_pad): 32 KiB.
TILE_ELEMENTS = 8192
#: Triton software-pipelining stages of the flash kernel's key loop
FLASH_STAGES = 2


# -- public entry points --------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(1,))
def softmax(x, axis: int = -1):
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``."""
    xc = x.astype(F32)
    e = jnp.exp(xc - jnp.max(xc, axis=axis, keepdims=True))
    return (e / jnp.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("scale", "method", "interpret", "causal", "flash_lowering",
                                             "partial_softmax_stats", "flash_heads_axis"))
def attention(q, k, v, scale: float, method: str, interpret: bool, causal: bool = False,
              flash_lowering: str = "auto", partial_softmax_stats: str = "reduction", flash_heads_axis: int = 2):
    """O = softmax(scale q k^T) v by ``method`` ("naive" | "partial_softmax" | "flash"), of q's
    dtype; with ``causal`` query i attends to keys j <= i only. ``flash_lowering``: which flash
    kernel (FLASH_LOWERINGS, ``flash_kernel_for``); ``partial_softmax_stats``: where the partially
    fused softmax forms its statistics (PARTIAL_SOFTMAX_STATS, ``attention_partial_softmax``);
    ``flash_heads_axis``: the layout the flash kernel reads (FLASH_LAYOUTS). 2 (default): the heads
    where the projections put them, (B, N, H, d), through swaps of axes that cancel the network's
    head transposes inside a jitted network; 1: q, k, v as given, (B, H, N, d), in place, for an op
    called alone, where those swaps would be copies."""
    if method == "naive":
        return attention_naive(q, k, v, scale, causal)
    if method == "partial_softmax":
        return attention_partial_softmax(q, k, v, scale, interpret, causal, partial_softmax_stats)
    if method == "flash":
        # the kernels read the heads where the projections put them, (B, N, H, d): inside a
        # jitted network these swaps cancel the model's head transposes (XLA folds the pair)
        if flash_heads_axis not in FLASH_LAYOUTS:
            raise ValueError(f"flash_heads_axis: expected one of {tuple(FLASH_LAYOUTS)}, got {flash_heads_axis!r}")
        kernel = flash_kernel_for(q, k, v, causal, flash_lowering, interpret)
        if flash_heads_axis == 1:
            return attention_flash_in_layout(q, k, v, scale, interpret, causal, kernel, heads_axis=1)
        heads_last = [x.swapaxes(1, 2) for x in (q, k, v)]
        return attention_flash_heads_last(*heads_last, scale, interpret, causal, kernel).swapaxes(1, 2)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def attention_flash_heads_last(q, k, v, scale: float, interpret: bool, causal: bool, kernel: str):
    """The flash switch on (B, N, H, d) operands, the layout the network's projections give
    (``attention_flash_in_layout`` with heads_axis 2); the output likewise."""
    return attention_flash_in_layout(q, k, v, scale, interpret, causal, kernel, heads_axis=2)


def attention_flash_in_layout(q, k, v, scale: float, interpret: bool, causal: bool, kernel: str, heads_axis: int):
    """The flash switch by ``kernel`` ("triton" or "mosaic", as ``flash_kernel_for`` chose it) on
    operands with their heads on ``heads_axis`` (FLASH_LAYOUTS), read in place; the output likewise."""
    if kernel == "mosaic":
        return attention_hopper.attention_flash_hopper(q, k, v, scale, heads_axis=heads_axis)
    if kernel == "triton":
        return attention_flash(q, k, v, scale, interpret, causal=causal, heads_axis=heads_axis)
    raise ValueError(f"kernel: expected \"triton\" or \"mosaic\", got {kernel!r}")


#: the flash switch's kernels: "triton" (``attention_flash``, every shape and dtype, CPU and GPU),
#: "mosaic" (attention_hopper.py: Hopper GPUs, 16-bit storage, the shapes it accepts) and "auto"
#: (the Mosaic GPU kernel where it runs these operands with whole key blocks, the Triton kernel
#: elsewhere: ``flash_kernel_for``)
FLASH_LOWERINGS = ("triton", "mosaic", "auto")


def flash_kernel_for(q, k, v, causal: bool, lowering: str, interpret: bool) -> str:
    """"triton" or "mosaic": the kernel that ``lowering`` (FLASH_LOWERINGS) gives q, k, v in
    (B, H, N, d). "mosaic" raises ValueError where the Hopper kernel cannot run them (in the
    interpreter, off a Hopper GPU, or ``attention_hopper.why_not``'s reason) instead of falling
    back; "auto" takes it where it can and M fills whole key blocks. Where the Hopper kernel masks
    a padded key block, "auto" keeps the Triton kernel: SD's 77-key cross-attention, (2, 8, 4096,
    77, 40) fp16 on the H100, took 0.031 ms with the Hopper kernel's one masked block (call 18)
    against torch SDPA's 0.014 and the Triton kernel's 0.016 (call 5; both in
    experiments/results/issue13_h100_2026-12-07): one key block per program leaves its pipeline
    nothing to overlap."""
    if lowering not in FLASH_LOWERINGS:
        raise ValueError(f"flash_lowering: expected one of {FLASH_LOWERINGS}, got {lowering!r}")
    if lowering == "triton":
        return "triton"
    reason = ("the interpreter runs no Mosaic GPU kernel" if interpret else
              None if attention_hopper.on_hopper() else "it runs on a Hopper GPU (compute capability 9.x) only")
    reason = reason or attention_hopper.why_not(q.shape, k.shape, v.shape, q.dtype, causal, heads_axis=1)
    if reason is None and (lowering == "mosaic" or not attention_hopper.masks_keys(q.shape, k.shape, q.dtype, 1)):
        return "mosaic"
    if lowering == "mosaic":
        raise ValueError(f"flash_lowering='mosaic': {reason}")
    return "triton"


# -- sizes and padding ----------------------------------------------------------------------------


def padded_dim(d: int) -> int:
    """A head dim padded for the kernels: the next power of two, at least MIN_BLOCK (40 -> 64)."""
    return max(MIN_BLOCK, pl.next_power_of_2(int(d)))


def block_sizes(n: int, m: int, head_dim_padded: int) -> tuple[int, int]:
    """(rows per block, keys per block) for N query rows, M keys and the larger padded head dim.

    Powers of two in [MIN_BLOCK, MAX_BLOCK], no larger than needed for N (or M), and at most
    TILE_ELEMENTS / head_dim_padded so that a (block, d_pad) tile stays within 32 KiB of float32.
    """
    cap = max(MIN_BLOCK, min(MAX_BLOCK, TILE_ELEMENTS // int(head_dim_padded)))
    return min(cap, padded_dim(n)), min(cap, padded_dim(m))


def flash_blocks(n: int, m: int, head_dim_padded: int, tensor_cores: bool) -> tuple[int, int, int]:
    """(block_q, block_k, warps) of the flash kernel. float32 storage: ``block_sizes`` and
    ``_compiler_params``' warps. 16-bit storage (the tensor-core products), from the H200 sweep
    of ``experiments/probes/jax_flash_blocks.py`` (the fastest candidate in both float16 and
    bfloat16): d_pad = 128, keys in blocks of 32 on 4 warps (d = 80: 0.080 / 0.064 ms against
    0.087 / 0.085 with the general rule's 64 keys); d_pad = 256, 128-row Q tiles and 32 keys on 8
    warps (d = 160: 0.056 / 0.062 ms, the best of ten candidates). At d_pad = 64 the candidates
    were within 1% of each other on the long self-attention, and d_pad = 512 was not swept: the
    general rule stays there."""
    block_q, block_k = block_sizes(n, m, head_dim_padded)
    warps = 4 if head_dim_padded <= 64 else 8
    if tensor_cores and head_dim_padded == 128:
        block_k, warps = min(block_k, 32), 4
    elif tensor_cores and head_dim_padded == 256:
        block_q, block_k, warps = min(128, padded_dim(n)), min(block_k, 32), 8
    return block_q, block_k, warps


def _compiler_params(head_dim_padded: int, interpret: bool):
    """The kernels' Triton parameters for a widest tile of ``head_dim_padded`` columns: 4 warps up
    to 64 columns, 8 above, two pipeline stages."""
    return compiler_params(4 if head_dim_padded <= 64 else 8, interpret, num_stages=2)


def _scores(q, k, scale: float, causal: bool = False):
    """A = scale q k^T in float32 (jnp; operands in their storage dtype, float32 accumulation);
    with ``causal`` -inf where the key index exceeds the query index."""
    dots = jnp.einsum("bhnd,bhmd->bhnm", q, k, precision=HIGHEST, preferred_element_type=F32)
    a = scale * dots
    if causal:
        n, m = a.shape[-2:]
        visible = lax.broadcasted_iota(jnp.int32, (n, m), 1) <= lax.broadcasted_iota(jnp.int32, (n, m), 0)
        a = jnp.where(visible, a, -jnp.inf)
    return a


# -- kernel helpers (traced inside the Pallas kernels) --------------------------------------------


def _mask_keys(tile, start, num_keys: int, padded_keys: int, first_row=None):
    """-inf in the columns of a (rows, block) score tile whose key index start + c is >= num_keys
    (padding) and, if ``first_row`` (the query index of the tile's row 0) is given, whose key
    index exceeds the row's query index first_row + r (causal).

    Statically a no-op when M needs no padding and the attention is not causal."""
    padded = num_keys != padded_keys
    if not padded and first_row is None:
        return tile
    column = start + lax.broadcasted_iota(jnp.int32, tile.shape, 1)
    keep = column < num_keys if padded else None
    if first_row is not None:
        row = first_row + lax.broadcasted_iota(jnp.int32, tile.shape, 0)
        keep = column <= row if keep is None else (column <= row) & (column < num_keys)
    return jnp.where(keep, tile, -jnp.inf)


def _exp_shifted(x, shift, interpret: bool):
    """exp(x - shift) for shift >= x, and 0 where shift = -inf (then x = -inf too: a block whose
    entries are all masked), where the plain formula gives exp(-inf + inf) = NaN. Computed as
    2^((x - shift) log2(e)) (``pallas_util.exp2``: one hardware instruction on a GPU); the
    difference first, so that scores of 1e4 lose nothing to the rounding of x log2(e)."""
    return exp2((x - jnp.where(shift == -jnp.inf, 0.0, shift)) * LOG2_E, interpret)


def _key_block(j, block: int):
    """The slice of key block j (start hinted as a multiple of the block for the compiler)."""
    return pl.ds(pl.multiple_of(j * block, block), block)


# -- naive ----------------------------------------------------------------------------------------


def attention_naive(q, k, v, scale: float, causal: bool = False):
    """The unfused baseline in plain jnp: A (masked if ``causal``), then P = softmax(A), then
    O = P V. Column 0 is never masked, so every row max is finite."""
    a = _scores(q, k, scale, causal)
    e = jnp.exp(a - jnp.max(a, axis=-1, keepdims=True))
    p = e / jnp.sum(e, axis=-1, keepdims=True)
    return _times_v(p, v, "bhnm,bhmd->bhnd").astype(q.dtype)


def _tensor_cores(dtype) -> bool:
    """Whether products with operands of this storage dtype take the tensor-core path
    (float16/bfloat16 operands, float32 accumulation) rather than float32 at HIGHEST."""
    return jnp.dtype(dtype) in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _times_v(p, v, subscripts: str | None = None):
    """P V with float32 accumulation: for 16-bit V, P rounded to V's dtype and both operands on
    the tensor cores (FlashAttention 2's and SDPA's choice); for float32 V, float32 P at HIGHEST.
    ``subscripts``: an einsum over whole arrays (jnp), None: a ``jnp.dot`` of tiles (a kernel)."""
    if _tensor_cores(v.dtype):
        p, precision = p.astype(v.dtype), None
    else:
        p, v, precision = p, v.astype(F32), HIGHEST
    if subscripts is None:
        return jnp.dot(p, v, precision=precision, preferred_element_type=F32)
    return jnp.einsum(subscripts, p, v, precision=precision, preferred_element_type=F32)


# -- partially fused softmax ----------------------------------------------------------------------


def _merge_tile_stats(stats, tile, interpret: bool):
    """The running (L, S) of some rows merged with those of a (rows, block) score tile, by
    reference.attention.merge_stats. Every block holds a real key, but with causal masking (or
    -inf scores) all of a row's entries in it can be -inf: then L_b = -inf and S_b = 0."""
    row_max, row_sum = stats
    block_max = jnp.max(tile, axis=1)
    block_sum = jnp.sum(_exp_shifted(tile, block_max[:, None], interpret), axis=1)
    # L = max(L_a, L_b), S = S_a e^(L_a - L) + S_b e^(L_b - L); a pair with L = -inf, S = 0
    # merges as the identity (_exp_shifted gives 0, not NaN, if L is -inf too)
    new_max = jnp.maximum(row_max, block_max)
    new_sum = (row_sum * _exp_shifted(row_max, new_max, interpret)
               + block_sum * _exp_shifted(block_max, new_max, interpret))
    return new_max, new_sum


def _no_stats(rows: int):
    """(L, S) of no scores yet: (-inf, 0), which e^(-inf - L) = 0 makes the first merge's identity."""
    return jnp.full((rows,), -jnp.inf, F32), jnp.zeros((rows,), F32)


def _stats_kernel(a_ref, max_ref, sum_ref, *, num_keys: int, block_m: int, interpret: bool):
    """(L, S) of block_n rows of A: walk the column blocks, merging (max, sum) pairs online."""
    rows, padded_keys = a_ref.shape

    def merge_block(j, stats):
        tile = _mask_keys(a_ref[:, _key_block(j, block_m)], j * block_m, num_keys, padded_keys)
        return _merge_tile_stats(stats, tile, interpret)

    row_max, row_sum = lax.fori_loop(0, padded_keys // block_m, merge_block, _no_stats(rows))
    max_ref[...] = row_max
    sum_ref[...] = row_sum


def _stats_call(a, num_keys: int, block_n: int, block_m: int, interpret: bool):
    """Row max L and row sum S (two float32 (R,) arrays) of a float32 score matrix a (R, M_pad)
    whose R is a multiple of block_n, M_pad one of block_m; columns >= num_keys are ignored."""
    rows, padded_keys = a.shape
    kernel = functools.partial(_stats_kernel, num_keys=num_keys, block_m=block_m, interpret=interpret)
    row_spec = pl.BlockSpec((block_n,), lambda i: (i,))
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((rows,), F32),) * 2,
        grid=(rows // block_n,),
        in_specs=[pl.BlockSpec((block_n, padded_keys), lambda i: (i, 0))],
        out_specs=(row_spec, row_spec),
        interpret=interpret,
        compiler_params=_compiler_params(block_m, interpret),  # (block_n, block_m) tiles: 4 warps
        name="softmax_stats",
    )(a)


@functools.partial(jax.jit, static_argnames=("interpret",))
def softmax_stats(a, interpret: bool):
    """The paper's N x 2 statistics of a score tensor a (..., N, M): float32 (..., N, 2) holding
    the row max L and the row sum S of exp(a - L) (reference.attention.softmax_stats), from the
    Pallas statistics kernel. Float32 whatever a's storage: L and S feed exponents and divisions.
    Entries of -inf (masked scores) are allowed; a row of only -inf gets L = -inf, S = 0."""
    *lead, n, m = a.shape
    rows = math.prod(lead) * n
    block_n, block_m = block_sizes(rows, m, MIN_BLOCK)
    padded = pad_to(a.astype(F32).reshape(rows, m), (round_up(rows, block_n), round_up(m, block_m)))
    row_max, row_sum = _stats_call(padded, m, block_n, block_m, interpret)
    return jnp.stack([row_max[:rows], row_sum[:rows]], axis=-1).reshape(*lead, n, 2)


def _scores_stats_kernel(q_ref, k_ref, a_ref, max_ref, sum_ref, *, scale: float, num_keys: int, block_m: int,
                         causal: bool, interpret: bool):
    """block_n rows of A = scale Q K^T, formed and stored tile by tile, and their (L, S): each
    tile is merged into the rows' running pair while it is in registers, so that A is written
    once and never read back for its statistics. The refs: this program's Q rows (block_n,
    d_pad), its head's K (m_pad, d_pad), its rows of A (block_n, m_pad) and of L and S.
    Products as ``_scores``: 16-bit operands on the tensor cores, float32 at HIGHEST; float32
    accumulation. Padded keys (and, with ``causal``, keys after the row's query) are stored as
    -inf, the value the statistics and the product kernel give them."""
    rows, padded_keys = a_ref.shape
    precision = None if _tensor_cores(q_ref.dtype) else HIGHEST
    q = q_ref[...]
    first_row = pl.program_id(1) * rows if causal else None  # the query index of the tile's row 0

    def form_tile(j, stats):
        keys = _key_block(j, block_m)
        dots = lax.dot_general(q, k_ref[keys, :], (((1,), (1,)), ((), ())), precision=precision,
                               preferred_element_type=F32)
        tile = _mask_keys(scale * dots, j * block_m, num_keys, padded_keys, first_row)
        a_ref[:, keys] = tile
        return _merge_tile_stats(stats, tile, interpret)

    row_max, row_sum = lax.fori_loop(0, padded_keys // block_m, form_tile, _no_stats(rows))
    max_ref[...] = row_max
    sum_ref[...] = row_sum


def _scores_stats_call(q, k, scale: float, num_keys: int, block_n: int, block_m: int, causal: bool,
                       interpret: bool):
    """A (BH, N_pad, M_pad) float32 and its row max L and row sum S (BH, N_pad) from the padded
    q (BH, N_pad, d_pad) and k (BH, M_pad, d_pad), in one kernel (``_scores_stats_kernel``)."""
    bh, n_pad, d_pad = q.shape
    m_pad = k.shape[1]
    kernel = functools.partial(_scores_stats_kernel, scale=float(scale), num_keys=num_keys, block_m=block_m,
                               causal=bool(causal), interpret=interpret)
    row_spec = pl.BlockSpec((None, block_n), lambda i, r: (i, r))
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((bh, n_pad, m_pad), F32),) + (jax.ShapeDtypeStruct((bh, n_pad), F32),) * 2,
        grid=(bh, n_pad // block_n),
        in_specs=[pl.BlockSpec((None, block_n, d_pad), lambda i, r: (i, r, 0)),  # this program's Q rows
                  pl.BlockSpec((None, m_pad, d_pad), lambda i, r: (i, 0, 0))],   # all of K of head i
        out_specs=(pl.BlockSpec((None, block_n, m_pad), lambda i, r: (i, r, 0)), row_spec, row_spec),
        interpret=interpret,
        compiler_params=_compiler_params(d_pad, interpret),
        name="attention_scores_stats",
    )(q, k)


def _pv_softmax_kernel(a_ref, max_ref, sum_ref, v_ref, o_ref, *, num_keys: int, block_m: int, interpret: bool):
    """O rows = sum over column blocks of exp(A - L) V, divided by S at the end; P never stored.
    exp(A - L) = 2^((A - L) log2(e)): the difference first (exact for scores of 1e4, where
    A log2(e) would round), then one multiply and one ``exp2`` per score."""
    rows, padded_keys = a_ref.shape
    row_max = max_ref[...][:, None]

    def accumulate(j, acc):
        start = j * block_m
        scores = _mask_keys(a_ref[:, _key_block(j, block_m)], start, num_keys, padded_keys)
        p_unnormalized = exp2((scores - row_max) * LOG2_E, interpret)  # 0 in padded and masked key columns
        return acc + _times_v(p_unnormalized, v_ref[_key_block(j, block_m), :])

    acc = lax.fori_loop(0, padded_keys // block_m, accumulate, jnp.zeros((rows, v_ref.shape[1]), F32))
    o_ref[...] = (acc / sum_ref[...][:, None]).astype(o_ref.dtype)


#: where the partially fused softmax computes its N x 2 statistics (L, S) (``attention_partial_softmax``)
PARTIAL_SOFTMAX_STATS = ("reduction", "scores")
#: the largest head dim at which "auto" forms the statistics in the scores kernel. Measured on an
#: H100 in fp16 (experiments/results/issue13_h100_2026-12-07/call24_390b172/sweep_attention_float16.log),
#: "scores" against "reduction": (2, 8, 4096, 4096, 40) 0.895 against 1.165 ms, (2, 8, 1024, 1024, 80)
#: 0.099 against 0.123 ms, the 77-key rows within 4%; (2, 8, 256, 256, 160) 0.032 against 0.025 ms and
#: (1, 1, 4096, 4096, 512) 0.824 against 0.415 ms. ``block_sizes`` keeps a (block, d_pad) tile
#: within 32 KiB, so the scores kernel forms A in 32 x 32 tiles at d = 160 and 16 x 16 at d = 512,
#: where the reduction form gets A from one XLA product.
SCORES_STATS_MAX_HEAD_DIM = 80


def partial_softmax_stats_for(head_dim: int, choice: str) -> str:
    """The form of ``attention_partial_softmax``'s statistics for ``choice``: "reduction" or
    "scores" as given, or "auto": "scores" up to SCORES_STATS_MAX_HEAD_DIM, else "reduction"."""
    if choice == "auto":
        return "scores" if head_dim <= SCORES_STATS_MAX_HEAD_DIM else "reduction"
    if choice not in PARTIAL_SOFTMAX_STATS:
        raise ValueError(f"partial_softmax_stats: expected \"auto\" or one of {PARTIAL_SOFTMAX_STATS}, got {choice!r}")
    return choice


def attention_partial_softmax(q, k, v, scale: float, interpret: bool, causal: bool = False,
                              stats: str = "reduction"):
    """The stored scores A = scale q k^T (float32), their N x 2 statistics (L, S), then the fused
    O = exp(A - L) V / S kernel. The only N x M array is A. ``stats`` (PARTIAL_SOFTMAX_STATS):

    * "reduction" (the paper's three steps): jnp forms A, the statistics kernel reduces it (one
      more read of A), the product kernel reads it again: A is written once and read twice.
    * "scores": one kernel forms A and merges each tile into (L, S) before it stores it
      (``_scores_stats_kernel``), then the product kernel: A is written once and read once.

    Both give the same L, S and O up to the order of float32 sums. With ``causal`` the stored A
    holds -inf above the diagonal (masked as it is formed); the statistics merge fully masked
    blocks NaN-free and the product kernel needs nothing more, since every row max L is finite
    (column 0 is visible to every row, padded rows too)."""
    b, h, n, d = q.shape
    m, dv = k.shape[2], v.shape[3]
    d_pad, dv_pad = padded_dim(d), padded_dim(dv)
    block_n, block_m = block_sizes(n, m, max(d_pad, dv_pad))
    n_pad, m_pad = round_up(n, block_n), round_up(m, block_m)
    bh = b * h

    # 1. the scores A, stored, and their (B*H, N_pad) statistics L and S. Zero rows of the padded
    #    q and k give finite scores in padded rows (cropped) and padded columns (masked in the
    #    kernels), so A is never re-padded. The causal mask uses the padded matrix's indices,
    #    which are the true ones for real rows.
    if stats == "scores":
        a, row_max, row_sum = _scores_stats_call(
            pad_to(q, (b, h, n_pad, d_pad)).reshape(bh, n_pad, d_pad),
            pad_to(k, (b, h, m_pad, d_pad)).reshape(bh, m_pad, d_pad),
            scale, m, block_n, block_m, causal, interpret)
    elif stats == "reduction":
        a = _scores(pad_to(q, (b, h, n_pad, d)), pad_to(k, (b, h, m_pad, d)), scale, causal).reshape(bh, n_pad, m_pad)
        row_max, row_sum = (x.reshape(bh, n_pad) for x in
                            _stats_call(a.reshape(bh * n_pad, m_pad), m, block_n, block_m, interpret))
    else:
        raise ValueError(f"stats: expected one of {PARTIAL_SOFTMAX_STATS}, got {stats!r}")

    # 2. O = exp(A - L) V / S, a (block_n, dv_pad) output tile per program
    v_pad = pad_to(v, (b, h, m_pad, dv_pad)).reshape(bh, m_pad, dv_pad)
    kernel = functools.partial(_pv_softmax_kernel, num_keys=m, block_m=block_m, interpret=interpret)
    stats_spec = pl.BlockSpec((None, block_n), lambda i, r: (i, r))
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((bh, n_pad, dv_pad), q.dtype),
        grid=(bh, n_pad // block_n),
        in_specs=[
            pl.BlockSpec((None, block_n, m_pad), lambda i, r: (i, r, 0)),  # A rows
            stats_spec,                                                   # L
            stats_spec,                                                   # S
            pl.BlockSpec((None, m_pad, dv_pad), lambda i, r: (i, 0, 0)),  # all of V of head i
        ],
        out_specs=pl.BlockSpec((None, block_n, dv_pad), lambda i, r: (i, r, 0)),
        interpret=interpret,
        compiler_params=_compiler_params(dv_pad, interpret),
        name="attention_pv_softmax",
    )(a, row_max, row_sum, v_pad)
    return out[:, :n, :dv].reshape(b, h, n, dv)


# -- flash ----------------------------------------------------------------------------------------


def head_dim_pieces(d: int, tensor_cores: bool) -> tuple[int, ...]:
    """The widths the flash kernel splits a head dim into: powers of two >= 16, widest first,
    summing to d rounded up to 16 where that is less than ``padded_dim(d)`` on the tensor-core
    path (40 -> (32, 16): 48 columns of work, not 64; 80 -> (64, 16); 160 -> (128, 32)); else
    the one piece ``padded_dim(d)``. Each piece is a column slice of the kernel's
    ``padded_dim(d)``-wide block; columns past d are masked to 0 when loaded."""
    whole = padded_dim(d)
    if not tensor_cores:
        return (whole,)
    rest, pieces = round_up(int(d), MIN_BLOCK), []
    while rest:
        width = 1 << (rest.bit_length() - 1)
        pieces.append(width)
        rest -= width
    return tuple(pieces) if sum(pieces) < whole else (whole,)


def _inside(shape, first_row, num_rows: int | None, num_columns: int):
    """Where a (rows, width) tile lies inside the array: row index first_row + r < ``num_rows``
    (None: every row exists) and column < ``num_columns``; None where the static sizes say the
    whole tile does."""
    mask = None
    if num_rows is not None:
        mask = first_row + lax.broadcasted_iota(jnp.int32, shape, 0) < num_rows
    if num_columns < shape[1]:
        columns = lax.broadcasted_iota(jnp.int32, shape, 1) < num_columns
        mask = columns if mask is None else mask & columns
    return mask


def _load_tile(ref, first_row, num_rows: int | None, num_columns: int):
    """The tile of a block ref in its storage dtype, 0 where it reaches past the array (``_inside``)."""
    mask = _inside(ref.shape, first_row, num_rows, num_columns)
    return ref[...] if mask is None else plgpu.load(ref, mask=mask, other=0.0)


def _store_tile(ref, value, first_row, num_rows: int | None, num_columns: int):
    """``value`` into the tile of a block ref, skipping what lies past the array (``_inside``)."""
    mask = _inside(ref.shape, first_row, num_rows, num_columns)
    if mask is None:
        ref[...] = value
    else:
        plgpu.store(ref, value, mask=mask)


def _column_pieces(widths) -> list[tuple[int, int]]:
    """(offset, width) of each head-dim piece (``head_dim_pieces``), left to right."""
    return [(sum(widths[:i]), width) for i, width in enumerate(widths)]


def _flash_kernel(q_ref, k_ref, v_ref, o_ref, *, scale: float, num_rows: int, num_keys: int, block_k: int,
                  causal: bool, d_pieces: tuple, dv_pieces: tuple, head_dim: int, head_dim_v: int, interpret: bool):
    """One (block_q, dv) output tile: loop over key blocks with an online softmax. The refs are
    this program's Q tile (block_q, d_pad), its head's K (m_pad, d_pad) and V (m_pad, dv_pad)
    and the output tile (block_q, dv_pad), blocks of the caller's arrays in place: the padded
    rows and columns lie past the array's end or in the next head's columns, so every load is
    masked to 0 there and the store skips them. The head dims are read in ``head_dim_pieces``.

    float32 storage: both products with float32 operands at HIGHEST (no TF32). 16-bit storage
    (float16, bfloat16): both products on the tensor cores, Q K_j^T on the stored operands and
    P V_j with P rounded to the storage dtype (as FlashAttention 2 does), float32 accumulation;
    the softmax statistics stay float32. Q K^T sums one dot per head-dim piece; P V keeps one
    accumulator per piece of V's head dim.

    The online softmax runs in the log2 domain: the scores are multiplied by scale log2(e) (one
    multiply, which was there for the scale anyway), the running max m is kept in those units,
    and every exponential is ``exp2`` (the hardware's ex2.approx on a GPU, pallas_util.exp2).
    2^(t - m) with t = s log2(e) is exp(s - m / log2(e)): the same weights, the same output."""
    block_q = q_ref.shape[0]
    tensor_cores = _tensor_cores(q_ref.dtype)
    precision = None if tensor_cores else HIGHEST
    padded_keys = k_ref.shape[0]
    num_blocks = padded_keys // block_k
    first_row = pl.program_id(1) * block_q  # the query index of the tile's row 0
    ragged_rows = num_rows if num_rows % block_q else None
    ragged_keys = num_keys if num_keys % block_k else None

    d_columns, dv_columns = _column_pieces(d_pieces), _column_pieces(dv_pieces)

    def pieces(ref, rows, columns, head_columns, first, rows_valid):
        """The head-dim pieces of ``ref``'s ``rows`` (a slice), each masked; one indexer per load
        (rows and columns together)."""
        return [_load_tile(ref.at[rows, pl.ds(o, w)], first, rows_valid, head_columns - o) for o, w in columns]

    qs = pieces(q_ref, slice(None), d_columns, head_dim, first_row, ragged_rows)  # kept for the whole loop
    scale_log2 = scale * LOG2_E

    def step(j, carry):
        accs, row_max, row_sum = carry
        start = j * block_k
        keys = _key_block(j, block_k)
        # T_j = scale log2(e) Q K_j^T: (block_q, block_k), float32 accumulation, -inf for padded keys
        scores = sum(lax.dot_general(q, k, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=F32)
                     for q, k in zip(qs, pieces(k_ref, keys, d_columns, head_dim, start, ragged_keys)))
        scores = _mask_keys(scale_log2 * scores, start, num_keys, padded_keys, first_row if causal else None)
        # online softmax: rescale what was accumulated under the old max (with causal masking,
        # m is finite from block 0 on, which holds column 0: a fully masked tile gives
        # correction 1 and p = 0, never 2^(-inf + inf)); m is in T's base-2 units
        new_max = jnp.maximum(row_max, jnp.max(scores, axis=1))
        correction = exp2(row_max - new_max, interpret)
        p = exp2(scores - new_max[:, None], interpret)
        row_sum = row_sum * correction + jnp.sum(p, axis=1)
        if tensor_cores:
            p = p.astype(v_ref.dtype)  # rounded once, not once per piece of V
        values = pieces(v_ref, keys, dv_columns, head_dim_v, start, ragged_keys)
        new_accs = [acc * correction[:, None] + _times_v(p, v) for acc, v in zip(accs, values)]
        return tuple(new_accs), new_max, row_sum

    init = (tuple(jnp.zeros((block_q, width), F32) for width in dv_pieces),
            jnp.full((block_q,), -jnp.inf, F32),  # the first block has a visible key: its max is finite
            jnp.zeros((block_q,), F32))
    if causal:
        # skip the key blocks whose first column exceeds the tile's last row first_row + block_q - 1:
        # ceil((first_row + block_q) / block_k) blocks (lax.div: the bound is a traced int32)
        last = lax.div(first_row + block_q + block_k - 1, block_k)
        accs, _, row_sum = lax.fori_loop(0, jnp.minimum(last, num_blocks), step, init)
    else:
        accs, _, row_sum = lax.fori_loop(0, num_blocks, step, init)
    for acc, (offset, width) in zip(accs, dv_columns):
        _store_tile(o_ref.at[:, pl.ds(offset, width)], (acc / row_sum[:, None]).astype(o_ref.dtype), first_row,
                    ragged_rows, head_dim_v - offset)


#: ``attention_flash``'s layouts: where the heads are in q, k, v and the output
FLASH_LAYOUTS = {1: "(B, H, N, d), the op's", 2: "(B, N, H, d), the linear layers'"}


def attention_flash(q, k, v, scale: float, interpret: bool, block_q: int | None = None,
                    block_k: int | None = None, causal: bool = False, num_warps: int | None = None,
                    num_stages: int = FLASH_STAGES, heads_axis: int = 1):
    """FlashAttention forward in one pallas_call; no N x M array exists outside a tile. With
    ``causal`` the kernel masks keys after each query and skips key blocks above the diagonal.
    With 16-bit storage the head dims are cut into ``head_dim_pieces``.

    ``heads_axis`` (FLASH_LAYOUTS): 1 for q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv) and
    the output (B, H, N, dv); 2 for (B, N, H, d) and the like, the layout the projections
    produce before the heads are split off. The kernel reads and writes the arrays in place in
    either layout (strided blocks, masked where a block reaches past N, M or the head dim), so
    no padded, transposed or concatenated copy exists around the call.

    ``block_q``, ``block_k`` override ``block_sizes`` (powers of two >= 16), ``num_warps`` the
    kernel's warps and ``num_stages`` Triton's pipeline stages (for tuning)."""
    if heads_axis not in FLASH_LAYOUTS:
        raise ValueError(f"heads_axis: expected one of {tuple(FLASH_LAYOUTS)}, got {heads_axis!r}")
    rows_axis = 3 - heads_axis
    b, h, n, d = q.shape[0], q.shape[heads_axis], q.shape[rows_axis], q.shape[3]
    m, dv = k.shape[rows_axis], v.shape[3]
    tensor_cores = q.dtype != F32
    d_pieces, dv_pieces = head_dim_pieces(d, tensor_cores), head_dim_pieces(dv, tensor_cores)
    default_q, default_k, default_warps = flash_blocks(n, m, max(padded_dim(d), padded_dim(dv)), tensor_cores)
    block_q, block_k, num_warps = block_q or default_q, block_k or default_k, num_warps or default_warps
    for name, block in (("block_q", block_q), ("block_k", block_k)):
        if block < MIN_BLOCK or block & (block - 1):
            raise ValueError(f"{name}: expected a power of two >= {MIN_BLOCK}, got {block!r}")
    n_tiles, m_pad = cdiv(n, block_q), round_up(m, block_k)
    d_block, dv_block = padded_dim(d), padded_dim(dv)  # block widths: powers of two holding the pieces

    def spec(rows: int, width: int, row_block):
        """Program (i, r)'s block: head i % H of sample i // H, row block row_block(r), all columns."""
        if heads_axis == 1:
            return pl.BlockSpec((None, None, rows, width), lambda i, r: (i // h, i % h, row_block(r), 0))
        return pl.BlockSpec((None, rows, None, width), lambda i, r: (i // h, row_block(r), i % h, 0))

    this_tile, whole_head = (lambda r: r), (lambda r: 0)
    kernel = functools.partial(_flash_kernel, scale=float(scale), num_rows=n, num_keys=m, block_k=block_k,
                               causal=bool(causal), d_pieces=d_pieces, dv_pieces=dv_pieces, head_dim=d,
                               head_dim_v=dv, interpret=interpret)
    out_shape = list(q.shape)
    out_shape[3] = dv
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct(tuple(out_shape), q.dtype),
        grid=(b * h, n_tiles),
        in_specs=[spec(block_q, d_block, this_tile),  # this program's Q tile
                  spec(m_pad, d_block, whole_head),   # K of its head (read blockwise)
                  spec(m_pad, dv_block, whole_head)],  # V of its head (read blockwise)
        out_specs=spec(block_q, dv_block, this_tile),
        interpret=interpret,
        compiler_params=compiler_params(num_warps, interpret, num_stages=num_stages),
        name="flash_attention",
    )(q, k, v)

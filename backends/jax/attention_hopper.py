"""FlashAttention for Hopper GPUs (H100, H200) through Pallas' Mosaic GPU lowering: the ``flash``
switch's kernel for 16-bit storage on the shapes it accepts (``accepts``); attention.py chooses
between it and its Triton-lowered flash kernel (``attention.FLASH_LOWERINGS``).

The math is attention.py's flash kernel: for each query row, over key blocks j,

    T_j = scale log2(e) Q K_j^T,   m' = max(m, rowmax(T_j)),   P_j = 2^(T_j - m'),
    l = l 2^(m - m') + rowsum(P_j),   acc = acc 2^(m - m') + P_j V_j,   m = m',   O = acc / l,

with float32 scores, statistics and accumulator, Q K_j^T on the stored fp16/bf16 operands and P_j
rounded to the storage dtype for P_j V_j, both products on the tensor cores with float32
accumulation. What differs is the schedule, which the Triton lowering cannot express. It is
FlashAttention 3's (Shah et al. 2024, "FlashAttention-3: Fast and Accurate Attention with Asynchrony
and Low-precision"), as JAX's own example kernel builds it in Pallas
(``jax/experimental/pallas/ops/gpu/attention_mgpu.py``), which this one follows:

* Warp specialization. A program owns one head and ``CONSUMERS * block_q`` query rows and runs
  three warpgroups (128 threads each). The producer (warpgroup 2) only issues TMA copies: K and V
  blocks into a ring of ``stages`` shared-memory slots, each refilled as soon as both consumers
  release it (``k_free`` / ``v_free`` barriers; ``k_ready`` / ``v_ready`` signal a finished copy).
  The consumers (warpgroups 0 and 1) each own ``block_q`` rows: they run the products and the
  softmax and never wait for memory unless the ring is empty.
* Asynchronous tensor-core products (``wgmma``): Q K_j^T reads Q and K_j from shared memory, P_j V_j
  reads P_j from registers and V_j from shared memory, both accumulate in registers.
* Ping-pong. The two consumers pass a ``turn`` barrier (two arrivals) around each product, so that
  one consumer's softmax (exponentials, reductions: the MUFU and FP32 pipes) runs while the other's
  products hold the tensor cores. At d = 40 the softmax is most of the work (notes/attention.md).
* The output tile goes back through Q's shared-memory slot and one TMA store.

Layouts. q, k, v and the output in (B, N, H, d) (``heads_axis=2``, the projections' layout, which
the network's head transposes then never materialize) or (B, H, N, d) (``heads_axis=1``). Each TMA
copy reads a (rows, d) window of one head in place. Shared memory holds the tiles in 8-row tiles of
``swizzle`` bytes with the swizzle wgmma reads without bank conflicts; so the head dim must be a
multiple of 16 elements, and ``attention_flash_hopper`` zero-pads it to ``head_dim_multiple`` (zero
columns add nothing to Q K^T, and give zero output columns, which it crops): by default 16, so d = 40
becomes 48 (a 32-byte swizzle) and 80 and 160 stay as they are (32 and 64 bytes). The pads and the
crop are XLA copies around the kernel, and they cost: at (2, 8, 4096, 4096, 40) fp16 on an H100 the
kernel alone took 0.146 ms (1.17x torch SDPA), 0.170 ms with them (notes/attention.md). The kernel
cannot read d = 40 in place, because a TMA copy into 16-column tiles needs a global head dim that
is a multiple of 16.

Key counts. Where M is not a multiple of block_k (SD's 77-token cross-attention), K and V are
zero-padded to the next multiple and the scores of the padded keys set to -inf before the softmax
(T_j = -inf, so P_j = 0 there: neither the row maximum, the row sum nor P V sees them). The last
block always holds a real key, so no row is all -inf. With one key block per program there is
nothing for the pipeline to overlap: at 77 keys this kernel took twice the Triton kernel's time,
so ``flash_lowering="auto"`` leaves masked key blocks to the Triton kernel (``masks_keys``;
attention.flash_kernel_for).

What it accepts (``accepts``): float16 or bfloat16, d == dv, N a multiple of CONSUMERS * block_q,
any positive M, no causal mask, and the tiles within Hopper's 227 KiB of shared memory. The text
encoder's causal 77-token attention and the decoder's d = 512 one-head attention stay on the Triton
kernel. float32 storage stays on the Triton kernel at HIGHEST.

Testing. Only a Hopper GPU runs this kernel: JAX's GPU interpreter (0.10.2) has no rule for
``transpose_ref`` inside ``wgmma`` nor for ``layout_cast``, so the CPU suite checks the arguments and
the dispatch, and the GPU suite the values (tests/jax/test_jax_attention_hopper.py).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from .pallas_util import cdiv, pad_last, pad_to, round_up

__all__ = ["attention_flash_hopper", "accepts", "why_not", "masks_keys", "default_blocks", "on_hopper", "padded_head_dim",
           "smem_bytes"]

F32 = jnp.float32
#: log2(e): exp(x) = 2^(x log2(e)); the scale is folded into the one multiply by it
LOG2_E = math.log2(math.e)
#: consumer warpgroups per program (the producer is one more)
CONSUMERS = 2
#: shared memory a Hopper block may use (227 KiB), less a margin for the barriers
SMEM_LIMIT = 227 * 1024 - 1024
#: storage dtypes of the kernel (the tensor-core path)
DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
#: K/V ring slots and the head-dim padding, by default. Padding to a multiple of 16 (40 -> 48,
#: 80 and 160 unpadded) beat a multiple of 64 at every shape and block pair of the H200 sweep
#: (notes/attention.md, v5: e.g. d = 40, 128 x 128: 0.167 against 0.185 ms)
STAGES, HEAD_DIM_MULTIPLE = 2, 16


def on_hopper() -> bool:
    """True where JAX's default device is an NVIDIA GPU of compute capability 9.x (H100, H200)."""
    device = jax.devices()[0]
    return device.platform == "gpu" and str(getattr(device, "compute_capability", "")).startswith("9")


def padded_head_dim(d: int, multiple: int = HEAD_DIM_MULTIPLE) -> int:
    """d rounded up to ``multiple`` (16, 32 or 64 elements: the swizzled tiles' widths)."""
    if multiple not in (16, 32, 64):
        raise ValueError(f"head_dim_multiple: expected 16, 32 or 64, got {multiple!r}")
    return round_up(int(d), multiple)


def _swizzle(d_pad: int, itemsize: int) -> int:
    """The widest shared-memory swizzle (128, 64 or 32 bytes) that divides a d_pad-wide row."""
    return next(s for s in (128, 64, 32) if (d_pad * itemsize) % s == 0)


def smem_bytes(block_q: int, block_k: int, stages: int, d_pad: int, itemsize: int = 2) -> int:
    """Shared memory of one program: CONSUMERS Q/output tiles and ``stages`` K and V slots."""
    return itemsize * d_pad * (CONSUMERS * block_q + 2 * stages * block_k)


def default_blocks(n: int, d_pad: int, stages: int = STAGES, itemsize: int = 2) -> tuple[int, int]:
    """(block_q, block_k) for N query rows and a padded head dim, the fastest pairs of the H200
    sweep (notes/attention.md, v5): 128 x 128 up to d_pad = 64 (where N allows 2 x 128 rows; d 48:
    0.167 ms, 0.94x SDPA), else 64 x 128 (d 80: 1.00x, d 160: 1.03x), and 64 keys where 128 do not
    fit shared memory (d_pad = 192: 64 x 64)."""
    block_q = 128 if d_pad <= 64 and n % (CONSUMERS * 128) == 0 else 64
    block_k = 128 if smem_bytes(block_q, 128, stages, d_pad, itemsize) <= SMEM_LIMIT else 64
    return block_q, block_k


def _resolve_blocks(n: int, d: int, dtype, block_q: int | None, block_k: int | None, stages: int,
                    head_dim_multiple: int) -> tuple[int, int, int]:
    """(d_pad, block_q, block_k): the padded head dim, and the blocks given or ``default_blocks``'."""
    d_pad = padded_head_dim(d, head_dim_multiple)
    default_q, default_k = default_blocks(n, d_pad, stages, jnp.dtype(dtype).itemsize)
    return d_pad, block_q or default_q, block_k or default_k


def why_not(q_shape, k_shape, v_shape, dtype, causal: bool, heads_axis: int, block_q: int | None = None,
            block_k: int | None = None, stages: int = STAGES,
            head_dim_multiple: int = HEAD_DIM_MULTIPLE) -> str | None:
    """None where the kernel accepts these operands with these blocks (None: ``default_blocks``),
    else the reason (the module docstring's list)."""
    if heads_axis not in (1, 2):
        return f"heads_axis: expected 1 or 2, got {heads_axis!r}"
    if jnp.dtype(dtype) not in DTYPES:
        return f"dtype: expected float16 or bfloat16, got {jnp.dtype(dtype)}"
    if causal:
        return "causal: the kernel has no causal mask"
    rows_axis = 3 - heads_axis
    n, m, d, dv = q_shape[rows_axis], k_shape[rows_axis], q_shape[3], v_shape[3]
    if d != dv:
        return f"head dims: expected q's d == v's dv, got {d} and {dv}"
    d_pad, block_q, block_k = _resolve_blocks(n, d, dtype, block_q, block_k, stages, head_dim_multiple)
    if block_q % 64 or block_k % 64 or stages < 2:
        return f"blocks: expected block_q and block_k multiples of 64 and stages >= 2, got {block_q}, {block_k}, {stages}"
    if n % (CONSUMERS * block_q) or n == 0:
        return f"N: expected a positive multiple of {CONSUMERS} * block_q = {CONSUMERS * block_q}, got {n}"
    if m <= 0:
        return f"M: expected at least one key, got {m}"
    if d_pad > 256:
        return f"head dim: expected at most 256 after padding, got {d_pad}"
    need = smem_bytes(block_q, block_k, min(stages, cdiv(m, block_k)), d_pad, jnp.dtype(dtype).itemsize)
    if need > SMEM_LIMIT:
        return f"shared memory: the tiles need {need} bytes, more than {SMEM_LIMIT}"
    return None


def masks_keys(q_shape, k_shape, dtype, heads_axis: int, block_q: int | None = None, block_k: int | None = None,
               stages: int = STAGES, head_dim_multiple: int = HEAD_DIM_MULTIPLE) -> bool:
    """Whether the last key block holds padded, masked keys (M not a multiple of block_k)."""
    rows_axis = 3 - heads_axis
    n, m = q_shape[rows_axis], k_shape[rows_axis]
    _, _, block_k = _resolve_blocks(n, q_shape[3], dtype, block_q, block_k, stages, head_dim_multiple)
    return m % block_k != 0


def accepts(q_shape, k_shape, v_shape, dtype, causal: bool, heads_axis: int, **blocks) -> bool:
    """Whether ``attention_flash_hopper`` runs these operands (``why_not`` is None)."""
    return why_not(q_shape, k_shape, v_shape, dtype, causal, heads_axis, **blocks) is None


def _flash_kernel(q_ref, k_ref, v_ref, o_ref, smem, ready, free, turn, *, heads_axis: int, block_q: int,
                  block_k: int, stages: int, num_key_blocks: int, keys: int, scale_log2: float):
    """One program: CONSUMERS * block_q query rows of one head (module docstring). ``keys``: the
    real key count M; the scores of keys M ... num_key_blocks * block_k - 1 (zero padding) are masked.

    smem: the Q/output tiles (CONSUMERS, block_q, d), the K and V rings (stages, block_k, d).
    ready: k_ready[stages], v_ready[stages] (a TMA copy landed), q_ready[CONSUMERS].
    free: k_free[stages], v_free[stages] (both consumers are done with a slot).
    turn: the consumers' ping-pong barrier (two arrivals per phase)."""
    q_tiles, k_ring, v_ring = smem
    k_ready, v_ready, q_ready = ready
    k_free, v_free = free
    batch, head, wg = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("wg")
    dtype = q_ref.dtype

    def rows(ref, start, size: int):
        """The (size, d) window of this program's head, rows start ... start + size - 1."""
        window = pl.ds(start, size)
        return ref.at[batch, window, head] if heads_axis == 2 else ref.at[batch, head, window]

    def pass_turn():
        """Arrive at the ping-pong barrier and wait for the other consumer's arrival."""
        plgpu.barrier_arrive(turn)
        plgpu.barrier_wait(turn)

    def slot_of(j):
        return lax.rem(j, jnp.array(stages, j.dtype))

    @pl.when(wg < CONSUMERS)
    def _consumer():
        plgpu.set_max_registers(232, action="increase")  # the producer gives its registers away
        q_tile = q_tiles.at[wg]
        first_row = (lax.axis_index("q_tiles") * CONSUMERS + wg) * block_q
        plgpu.copy_gmem_to_smem(rows(q_ref, first_row, block_q), q_tile, q_ready.at[wg])
        plgpu.barrier_wait(q_ready.at[wg])

        row_layout = plgpu.Layout.WGMMA.reduce(1)
        row_max = plgpu.layout_cast(jnp.full((block_q,), -jnp.inf, F32), row_layout)
        row_sum = plgpu.layout_cast(jnp.zeros((block_q,), F32), row_layout)
        acc = plgpu.layout_cast(jnp.zeros((block_q, q_tile.shape[-1]), F32), plgpu.Layout.WGMMA)

        plgpu.barrier_wait(k_ready.at[0])
        pl.when(wg == 1)(pass_turn)  # consumer 0 takes the tensor cores first

        def step(j, carry):
            acc, row_max, row_sum = carry
            slot = slot_of(j)

            def scores(acc_ref):  # S_j = Q K_j^T, float32 accumulation
                plgpu.wgmma(acc_ref, q_tile, plgpu.transpose_ref(k_ring.at[slot], (1, 0)))
                pass_turn()
                return acc_ref[...]

            s = pl.run_scoped(scores, plgpu.ACC((block_q, block_k), F32))
            plgpu.barrier_arrive(k_free.at[slot])
            if keys % block_k:  # padded keys: their scores -inf, so 2^(T - m') = 0 (module docstring)
                key = plgpu.broadcasted_iota(jnp.int32, s.shape, 1, layout=plgpu.Layout.WGMMA) + j * block_k
                s = jnp.where(key < keys, s, -jnp.inf)
            # the online softmax in base 2: m in units of T = scale log2(e) S, so that
            # P = 2^(S scale log2(e) - m) is one fused multiply-add before the ex2
            new_max = jnp.maximum(row_max, s.max(axis=1) * scale_log2)
            correction = jnp.exp2(row_max - new_max)
            p = jnp.exp2(s * scale_log2 - lax.broadcast_in_dim(new_max, s.shape, [0]))
            acc = acc * lax.broadcast_in_dim(correction, acc.shape, [0])
            row_sum = row_sum * correction
            p_stored = p.astype(dtype)  # P rounded to the storage dtype for P V (FlashAttention 2's choice)

            # JAX's kernel found this order of the row sum and the barriers fastest up to d = 128
            # (its comment: "empirically"); the optimization barrier keeps XLA from moving the sum
            if acc.shape[-1] <= 128:
                row_sum = row_sum + p.sum(axis=1)
                acc, row_sum, new_max, p_stored = lax.optimization_barrier((acc, row_sum, new_max, p_stored))
            plgpu.barrier_arrive(turn)  # softmax done: the other consumer may run its products
            plgpu.barrier_wait(v_ready.at[slot])
            plgpu.barrier_wait(turn)  # the tensor cores are ours again
            if acc.shape[-1] > 128:
                row_sum = row_sum + p.sum(axis=1)

            def times_v(acc_ref):  # acc += P_j V_j
                plgpu.wgmma(acc_ref, p_stored, v_ring.at[slot])
                following = j + 1

                @pl.when(following < num_key_blocks)
                def _():  # wait for the next K block while this product runs
                    plgpu.barrier_wait(k_ready.at[slot_of(following)])

            acc = pl.run_state(times_v)(plgpu.ACC.init(acc))
            plgpu.barrier_arrive(v_free.at[slot])
            return acc, new_max, row_sum

        acc, _, row_sum = lax.fori_loop(0, num_key_blocks, step, (acc, row_max, row_sum))
        pl.when(wg == 0)(pass_turn)  # balance consumer 1's extra pass at the start

        q_tile[...] = (acc / lax.broadcast_in_dim(row_sum, acc.shape, [0])).astype(dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(q_tile, rows(o_ref, first_row, block_q))
        plgpu.wait_smem_to_gmem(0)

    @pl.when(wg == CONSUMERS)
    def _producer():
        plgpu.set_max_registers(40, action="decrease")

        def load(j, slot):
            plgpu.copy_gmem_to_smem(rows(k_ref, j * block_k, block_k), k_ring.at[slot], k_ready.at[slot])
            plgpu.copy_gmem_to_smem(rows(v_ref, j * block_k, block_k), v_ring.at[slot], v_ready.at[slot])

        for j in range(stages):  # fill the ring
            load(j, j)

        @pl.loop(0, num_key_blocks - stages)
        def _(j):  # refill slot j % stages with block j + stages once both consumers released it
            slot = slot_of(j)
            plgpu.barrier_wait(k_free.at[slot])
            plgpu.copy_gmem_to_smem(rows(k_ref, (j + stages) * block_k, block_k), k_ring.at[slot],
                                    k_ready.at[slot])
            plgpu.barrier_wait(v_free.at[slot])
            plgpu.copy_gmem_to_smem(rows(v_ref, (j + stages) * block_k, block_k), v_ring.at[slot],
                                    v_ready.at[slot])


@functools.partial(jax.jit, static_argnames=("scale", "heads_axis", "block_q", "block_k", "stages",
                                             "head_dim_multiple"))
def attention_flash_hopper(q, k, v, scale: float, heads_axis: int = 2, block_q: int | None = None,
                           block_k: int | None = None, stages: int = STAGES,
                           head_dim_multiple: int = HEAD_DIM_MULTIPLE):
    """O = softmax(scale Q K^T) V in one Mosaic GPU kernel (module docstring), for q (B, N, H, d),
    k, v (B, M, H, d) with ``heads_axis=2`` or (B, H, N, d), (B, H, M, d) with ``heads_axis=1``;
    the output has q's shape and dtype. The head dim is zero-padded to ``head_dim_multiple``
    (where it is not a multiple already) and the output cropped. ``block_q`` rows per consumer,
    ``block_k`` keys per block (None: ``default_blocks``; K and V zero-padded to a multiple of it and
    the padded keys masked), ``stages`` K/V slots. Raises ValueError on operands the kernel does not
    accept (``why_not``)."""
    reason = why_not(q.shape, k.shape, v.shape, q.dtype, False, heads_axis, block_q, block_k, stages,
                     head_dim_multiple)
    if reason is not None:
        raise ValueError(f"attention_flash_hopper: {reason}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"k, v: expected q's dtype {q.dtype}, got {k.dtype} and {v.dtype}")
    rows_axis = 3 - heads_axis
    b, h, n, d = q.shape[0], q.shape[heads_axis], q.shape[rows_axis], q.shape[3]
    d_pad, block_q, block_k = _resolve_blocks(n, d, q.dtype, block_q, block_k, stages, head_dim_multiple)
    keys = k.shape[rows_axis]
    num_key_blocks = cdiv(keys, block_k)
    stages = min(stages, num_key_blocks)
    q = pad_last(q, d_pad)  # zero columns (no copy where d_pad == d)
    kv_shape = list(k.shape)
    kv_shape[rows_axis], kv_shape[3] = num_key_blocks * block_k, d_pad  # whole key blocks, zero keys masked
    k, v = pad_to(k, kv_shape), pad_to(v, kv_shape)
    swizzle = _swizzle(d_pad, q.dtype.itemsize)
    transforms = (plgpu.TilingTransform((8, swizzle // q.dtype.itemsize)), plgpu.SwizzleTransform(swizzle))
    kernel = functools.partial(_flash_kernel, heads_axis=heads_axis, block_q=block_q, block_k=block_k,
                               stages=stages, num_key_blocks=num_key_blocks, keys=keys,
                               scale_log2=float(scale) * LOG2_E)

    def program(q_ref, k_ref, v_ref, o_ref):
        pl.run_scoped(
            lambda smem, ready, free, turn: kernel(q_ref, k_ref, v_ref, o_ref, smem, ready, free, turn),
            (plgpu.SMEM((CONSUMERS, block_q, d_pad), q.dtype, transforms=transforms),
             plgpu.SMEM((stages, block_k, d_pad), q.dtype, transforms=transforms),
             plgpu.SMEM((stages, block_k, d_pad), q.dtype, transforms=transforms)),
            (plgpu.Barrier(num_barriers=stages), plgpu.Barrier(num_barriers=stages),
             plgpu.Barrier(num_barriers=CONSUMERS)),
            (plgpu.Barrier(num_arrivals=CONSUMERS, num_barriers=stages),) * 2,
            plgpu.Barrier(num_arrivals=CONSUMERS),
            collective_axes="wg",
        )

    out = plgpu.kernel(
        program,
        out_type=jax.ShapeDtypeStruct(q.shape, q.dtype),
        grid=(h, n // (CONSUMERS * block_q), b),
        grid_names=("heads", "q_tiles", "batch"),
        num_threads=CONSUMERS + 1,
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v)
    return out if d_pad == d else out[..., :d]

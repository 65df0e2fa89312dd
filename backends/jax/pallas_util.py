"""What more than one Pallas kernel module needs: compiler parameters, block sizes, padding, and
the overflow-free sigmoid.

The kernels compile through Pallas' Triton lowering on a GPU (its tensors have power-of-two
sizes, hence the block helpers) and run in the Pallas interpreter on a CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

try:  # selects the Triton lowering explicitly (jax >= 0.11 may default to Mosaic GPU)
    from jax.experimental.pallas import triton as _pallas_triton
except ImportError:  # pragma: no cover - a jax without the Triton backend
    _pallas_triton = None

#: Smallest block considered when looking for one that divides a length (fewer pad bytes).
MIN_BLOCK = 128


def compiler_params(num_warps: int, interpret: bool, num_stages: int | None = None):
    """Triton compiler parameters of a compiled kernel (they also pick the Triton lowering over
    Mosaic GPU); None in interpret mode or without the Triton backend."""
    if interpret or _pallas_triton is None:
        return None
    options = {"num_warps": num_warps} if num_stages is None else {"num_warps": num_warps, "num_stages": num_stages}
    return _pallas_triton.CompilerParams(**options)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def round_up(n: int, multiple: int) -> int:
    return cdiv(n, multiple) * multiple


def choose_block(length: int, max_block: int) -> tuple[int, int]:
    """(block, padded_length) for a loop over ``length`` elements in power-of-two blocks of at
    most ``max_block``: the block (>= MIN_BLOCK unless the length is shorter) whose multiple
    covers ``length`` with the fewest padding elements, the largest such block on a tie.
    E.g. 40960 -> (4096, 40960), 5000 -> (1024, 5120), 969 -> (1024, 1024), 3 -> (4, 4)."""
    top = min(max_block, next_power_of_2(length))
    candidates = [b for b in (1 << k for k in range(top.bit_length())) if b >= min(MIN_BLOCK, top)]
    block = min(candidates, key=lambda b: (cdiv(length, b) * b, -b))
    return block, cdiv(length, block) * block


def pad_to(x, shape):
    """Zero-pad x at the end of each axis up to ``shape`` (no copy where the sizes agree)."""
    widths = [(0, size - have) for have, size in zip(x.shape, shape)]
    return x if not any(hi for _, hi in widths) else jnp.pad(x, widths)


def pad_last(x, padded: int):
    """x zero-padded on its last axis to ``padded`` elements."""
    return pad_to(x, x.shape[:-1] + (padded,))


def warps_for_block(block: int) -> int:
    """Triton's layer-norm tutorial rule: one warp per 256 elements, 1 to 8 warps."""
    return min(max(block // 256, 1), 8)


def exp2(x, interpret: bool):
    """2^x inside a kernel: the hardware's ``ex2.approx.ftz.f32`` (one MUFU instruction; relative
    error about 2^-22, results below 2^-126 flushed to 0, 2^-inf = 0) on a GPU, ``jnp.exp2`` in
    interpret mode.

    Why not ``jnp.exp``: the Triton lowering calls libdevice's ``__nv_expf`` for it (and
    ``__nv_exp2f`` for ``jnp.exp2``), the accurate versions, several FP32 instructions around the
    MUFU one each. Attention exponentiates every score, so with a small head dim (SD's 40)
    those instructions are most of a score's FP32 work (backends/jax/notes/attention.md, v3:
    the count and its predicted effect, not yet measured). Callers pass base-2 exponents:
    e^x = 2^(x log2(e))."""
    if interpret or _pallas_triton is None:
        return jnp.exp2(x)
    [y] = _pallas_triton.elementwise_inline_asm(
        "ex2.approx.ftz.f32 $0, $1;", args=[x], constraints="=f,f", pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(x.shape, x.dtype)])
    return y


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp of -|z| only (usable inside and outside kernels)."""
    e = jnp.exp(-jnp.abs(z))
    return jnp.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))

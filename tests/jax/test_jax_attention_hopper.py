"""The Mosaic GPU FlashAttention for Hopper (backends/jax/attention_hopper.py) and how the flash
switch chooses between it and the Triton kernel (``flash_lowering``).

Its values are checked on a Hopper GPU only (against the float64 reference, in both layouts, with
padded and unpadded head dims, several key blocks and both 16-bit dtypes): no other machine runs a
Mosaic GPU kernel, and JAX's GPU interpreter has no rule for its transposed wgmma operand. On every
machine: that it passes the Mosaic GPU lowering (everything before the PTX compiler), what it
accepts and why not, and that the choice of kernel is explicit (``"mosaic"``
raises where it cannot run; ``"auto"`` takes it exactly where it can) and counted.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backends.jax import attention as jax_attention
from backends.jax import attention_hopper
from backends.jax.backend import JaxBackend
from reference import attention as att

from ..helpers import assert_matches, attention_inputs, attention_tolerance

pytestmark = pytest.mark.backends("jax")

hopper_only = pytest.mark.skipif(not attention_hopper.on_hopper(), reason="the Mosaic GPU kernel runs on Hopper GPUs only")


# -- what it accepts (every machine) ----------------------------------------------------------------


@pytest.mark.parametrize("case, reason", [
    (dict(dtype=jnp.float32), "dtype"),
    (dict(causal=True), "causal"),
    (dict(dv=64), "head dims"),
    (dict(n=200), "N: expected a positive multiple of 2 \\* block_q = 128"),
    (dict(m=0), "M: expected at least one key"),
    (dict(d=512), "head dim: expected at most 256"),
    (dict(block_q=96), "blocks"),
    (dict(d=192, block_k=128), "shared memory"),
    (dict(heads_axis=3), "heads_axis"),
])
def test_what_the_kernel_refuses_and_why(case, reason):
    c = dict(n=4096, m=4096, d=40, dv=None, dtype=jnp.float16, causal=False, heads_axis=2, block_q=None, block_k=None)
    c.update(case)
    sd = (2, 4096, 8, 40)  # SD's long self-attention: accepted
    assert attention_hopper.accepts(sd, sd, sd, jnp.float16, False, 2)
    cross = (2, 77, 8, 40)  # SD's cross-attention: 77 keys, one masked block of 128
    assert attention_hopper.accepts(sd, cross, cross, jnp.float16, False, 2)
    q, k, v = (2, c["n"], 8, c["d"]), (2, c["m"], 8, c["d"]), (2, c["m"], 8, c["dv"] or c["d"])
    why = attention_hopper.why_not(q, k, v, c["dtype"], c["causal"], c["heads_axis"], c["block_q"], c["block_k"])
    assert why is not None and re.search(reason, why), why
    x = jnp.zeros((1, 128, 1, 64), jnp.float16)
    with pytest.raises(ValueError, match="attention_flash_hopper: M"):
        attention_hopper.attention_flash_hopper(x, x[:, :0], x[:, :0], 0.125)


def test_default_blocks_fit_shared_memory_and_pad_head_dims():
    assert attention_hopper.padded_head_dim(40) == 48 and attention_hopper.padded_head_dim(40, 64) == 64
    assert attention_hopper.padded_head_dim(80) == 80 and attention_hopper.padded_head_dim(160) == 160
    assert attention_hopper.default_blocks(4096, 48) == (128, 128)
    assert attention_hopper.default_blocks(1024, 80) == (64, 128)
    assert attention_hopper.default_blocks(256, 160) == (64, 128)
    assert attention_hopper.default_blocks(256, 192) == (64, 64)  # 64 x 128 would need 240 KiB
    for d_pad in (64, 128, 192, 256):
        block_q, block_k = attention_hopper.default_blocks(4096, d_pad)
        assert attention_hopper.smem_bytes(block_q, block_k, attention_hopper.STAGES, d_pad) <= attention_hopper.SMEM_LIMIT
    with pytest.raises(ValueError, match="head_dim_multiple"):
        attention_hopper.padded_head_dim(40, 8)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape, options, padded", [
    ((2, 4096, 8, 40, 4096), dict(), True),  # SD's long self-attention, d padded to 48, 128 x 128 blocks
    ((2, 256, 8, 40, 384), dict(head_dim_multiple=64, block_q=64, block_k=64), True),  # d 64: 128-byte swizzle
    ((2, 1024, 8, 80, 1024), dict(heads_axis=1), False),  # d 80 unpadded, (B, H, N, d)
    ((2, 256, 8, 160, 256), dict(head_dim_multiple=64, stages=3), True),  # d 192, 64 x 64 blocks, a ring of 3
    ((2, 4096, 8, 40, 77), dict(), True),  # SD's cross-attention: 77 keys padded to one block of 128, masked
    ((2, 256, 8, 64, 200), dict(block_q=64, block_k=64, heads_axis=1), True),  # 200 keys: 4 blocks, 8 real in the last
])
def test_hopper_kernel_lowers_for_cuda(dtype_name, shape, options, padded):
    """The kernel passes Pallas' Mosaic GPU lowering on the CPU (register layouts, shared-memory
    transforms, barriers: everything up to the PTX compiler): one Mosaic GPU custom call, and a
    pad of q, k and v only where the head dim is not a multiple of ``head_dim_multiple`` (of k and v
    also where M is not a multiple of block_k), and the key mask only where M needs one."""
    b, n, h, d, m = shape
    heads_axis = options.get("heads_axis", 2)
    arrange = (lambda rows: (b, rows, h, d)) if heads_axis == 2 else (lambda rows: (b, h, rows, d))
    q, k = (jax.ShapeDtypeStruct(arrange(rows), jnp.dtype(dtype_name)) for rows in (n, m))
    run = jax.jit(lambda q, k, v: attention_hopper.attention_flash_hopper(q, k, v, d**-0.5, **options))
    traced = run.trace(q, k, k)
    text = traced.lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("stablehlo.custom_call @mosaic_gpu") == 1
    assert ("call @_pad(" in text) == padded
    key_mask = "= iota[" in str(traced.jaxpr)  # the kernel's key index, compared with M
    assert key_mask == bool(m % (options.get("block_k") or 128))


# -- the choice of kernel (every machine) ------------------------------------------------------------


def test_the_flash_kernel_is_chosen_explicitly():
    q = jnp.zeros((2, 8, 256, 64), jnp.float16)  # (B, H, N, d): a shape the Hopper kernel accepts
    assert jax_attention.flash_kernel_for(q, q, q, False, "triton", interpret=False) == "triton"
    # in the interpreter, "auto" is the Triton kernel and "mosaic" an error, not a silent fallback
    assert jax_attention.flash_kernel_for(q, q, q, False, "auto", interpret=True) == "triton"
    with pytest.raises(ValueError, match="flash_lowering='mosaic': the interpreter"):
        jax_attention.flash_kernel_for(q, q, q, False, "mosaic", interpret=True)
    with pytest.raises(ValueError, match="flash_lowering: expected one of"):
        jax_attention.flash_kernel_for(q, q, q, False, "cuda", interpret=False)
    expected = "mosaic" if attention_hopper.on_hopper() else "triton"
    assert jax_attention.flash_kernel_for(q, q, q, False, "auto", interpret=False) == expected


def test_auto_keeps_masked_key_blocks_on_the_triton_kernel(monkeypatch):
    """77 keys fill one masked block of 128: the Hopper kernel runs them ("mosaic"), but "auto"
    keeps the Triton kernel there, which was twice as fast (flash_kernel_for's measurement)."""
    monkeypatch.setattr(attention_hopper, "on_hopper", lambda: True)  # the choice as on a Hopper GPU
    q = jnp.zeros((2, 8, 4096, 40), jnp.float16)  # (B, H, N, d)
    cross = q[:, :, :77]
    assert attention_hopper.masks_keys(q.swapaxes(1, 2).shape, cross.swapaxes(1, 2).shape, q.dtype, 2)
    assert not attention_hopper.masks_keys(q.shape, q.shape, q.dtype, 1)
    assert jax_attention.flash_kernel_for(q, q, q, False, "auto", interpret=False) == "mosaic"
    assert jax_attention.flash_kernel_for(q, cross, cross, False, "auto", interpret=False) == "triton"
    assert jax_attention.flash_kernel_for(q, cross, cross, False, "mosaic", interpret=False) == "mosaic"
    assert jax_attention.flash_kernel_for(q, q, q, True, "auto", interpret=False) == "triton"  # causal: Triton's
    with pytest.raises(ValueError, match="flash_lowering='mosaic': causal"):
        jax_attention.flash_kernel_for(q, q, q, True, "mosaic", interpret=False)


def test_the_backend_counts_each_flash_kernel():
    with pytest.raises(ValueError, match="flash_lowering: expected one of"):
        JaxBackend(flash_lowering="cuda")
    backend = JaxBackend(flash_lowering="auto")
    (q, k, v), (q64, k64, v64) = attention_inputs(3, (1, 2, 20, 24, 40), np.float16)
    out = backend.attention(*(backend.asarray(x) for x in (q, k, v)), method="flash")
    assert_matches(np.asarray(out), att.attention(q64, k64, v64), np.float16, rel_tol=attention_tolerance(q64, k64, np.float16))
    assert backend.choices[("attention", "flash kernel", "triton")] == 1  # N = 20: not the Hopper kernel's


# -- its values (Hopper GPUs) ---------------------------------------------------------------------------


@hopper_only
@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("shape, blocks", [
    ((2, 3, 256, 512, 40), dict(head_dim_multiple=64)),  # d = 40 padded to 64; 4 key blocks through a ring of 2
    ((1, 2, 256, 384, 40), dict(block_q=64, block_k=64)),  # d = 48, 32-byte swizzle
    ((1, 2, 128, 256, 80), dict()),  # d = 80, unpadded
    ((1, 2, 256, 256, 160), dict(head_dim_multiple=64)),  # d = 160 padded to 192, 64 keys per block
    ((1, 2, 128, 640, 64), dict(stages=3, block_k=64)),  # 10 key blocks through a ring of 3
    ((2, 2, 256, 77, 40), dict()),  # SD's cross-attention: 77 keys in one masked block of 128
    ((1, 2, 128, 200, 64), dict(stages=3, block_k=64)),  # 200 keys: 4 blocks, the last with 8 real keys
])
def test_hopper_kernel_matches_the_float64_reference(dtype, shape, blocks):
    b, h, n, m, d = shape
    (q, k, v), (q64, k64, v64) = attention_inputs(11, shape, dtype, scale=4.0)
    expected = att.attention(q64, k64, v64, scale=d**-0.5)
    tol = attention_tolerance(q64, k64, dtype)
    for heads_axis, arrange in ((2, lambda x: x.swapaxes(1, 2)), (1, lambda x: x)):
        out = attention_hopper.attention_flash_hopper(*(jnp.asarray(arrange(x)) for x in (q, k, v)), d**-0.5,
                                                      heads_axis=heads_axis, **blocks)
        assert out.shape == arrange(q).shape and out.dtype == np.dtype(dtype)
        assert_matches(arrange(np.asarray(out)), expected, np.dtype(dtype), rel_tol=tol, name=f"heads_axis={heads_axis}")


@hopper_only
def test_the_backend_runs_the_hopper_kernel_where_it_accepts_the_shape():
    backend = JaxBackend(flash_lowering="auto")
    (q, k, v), (q64, k64, v64) = attention_inputs(5, (2, 4, 256, 256, 40), np.float16)
    out = backend.attention(*(backend.asarray(x) for x in (q, k, v)), method="flash")
    assert_matches(np.asarray(out), att.attention(q64, k64, v64), np.float16,
                   rel_tol=attention_tolerance(q64, k64, np.float16))
    assert backend.choices[("attention", "flash kernel", "mosaic")] == 1

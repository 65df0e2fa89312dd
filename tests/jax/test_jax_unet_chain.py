"""A UNet-sized chain of the backend's ops compiles under one ``jax.jit``.

``unet_block`` is one Stable Diffusion UNet block at a small size with the real structure and
diffusers' parameter names: a ResnetBlock2D (GroupNorm + SiLU, conv 3x3, the timestep
embedding added per channel, GroupNorm + SiLU, conv 3x3, residual) and a Transformer2DModel with
one BasicTransformerBlock (GroupNorm, linear proj_in, LayerNorm + self-attention, LayerNorm +
cross-attention over 77 context tokens, LayerNorm + GEGLU feed-forward, linear proj_out,
residual). It is written once against the op interface and runs on the JAX backend (one jit,
``Optimizations.none()`` and with Winograd F(4x4, 3x3) convolutions) and on the numpy backend
(the reference semantics). Attention is "naive" and GEGLU unfused, so the chain exercises the
plain-jnp ops and the Winograd kernels rather than the attention and norm kernels.
"""

import math

import jax
import numpy as np
import pytest

from backends import Optimizations, get_backend
from reference.numerics import relative_frobenius_error

from ..helpers import primitives_outside_kernels, random_array

BATCH, CHANNELS, SIZE, GROUPS, HEADS = 2, 64, 8, 32, 2
TEMB, CONTEXT_TOKENS, CONTEXT_DIM = 128, 77, 96   # SD 1.x: 1280, 77, 768
FF_INNER = 4 * CHANNELS
CONFIGS = {"none": Optimizations.none(), "winograd4": Optimizations.none().with_(winograd_tile=4)}


# ----------------------------------------------------------------------------------- the block


def resnet_block(be, x, temb, p):
    h = be.group_norm(x, GROUPS, p["resnet.norm1.weight"], p["resnet.norm1.bias"], fused=False, silu=True)
    h = be.conv2d(h, p["resnet.conv1.weight"], p["resnet.conv1.bias"], padding=1)
    t = be.linear(be.silu(temb), p["resnet.time_emb_proj.weight"], p["resnet.time_emb_proj.bias"])
    h = be.add_broadcast(h, t)
    h = be.group_norm(h, GROUPS, p["resnet.norm2.weight"], p["resnet.norm2.bias"], fused=False, silu=True)
    h = be.conv2d(h, p["resnet.conv2.weight"], p["resnet.conv2.bias"], padding=1)
    return be.add(x, h)


def attention(be, h, context, p, name):
    """diffusers' Attention: q from h, k and v from the context, HEADS heads, out projection."""
    def heads(t):  # (B, N, C) -> (B, H, N, C / H)
        b, n, c = t.shape
        return t.reshape(b, n, HEADS, c // HEADS).transpose(0, 2, 1, 3)

    q = be.linear(h, p[f"{name}.to_q.weight"])
    k = be.linear(context, p[f"{name}.to_k.weight"])
    v = be.linear(context, p[f"{name}.to_v.weight"])
    o = be.attention(heads(q), heads(k), heads(v), method="naive")
    b, _, n, d = o.shape
    o = o.transpose(0, 2, 1, 3).reshape(b, n, HEADS * d)
    return be.linear(o, p[f"{name}.to_out.0.weight"], p[f"{name}.to_out.0.bias"])


def transformer(be, x, context, p):
    n, c, hh, ww = x.shape
    h = be.group_norm(x, GROUPS, p["attn.norm.weight"], p["attn.norm.bias"], eps=1e-6, fused=False)
    h = h.transpose(0, 2, 3, 1).reshape(n, hh * ww, c)
    h = be.linear(h, p["attn.proj_in.weight"], p["attn.proj_in.bias"])
    block = "attn.transformer_blocks.0"
    normed = be.layer_norm(h, p[f"{block}.norm1.weight"], p[f"{block}.norm1.bias"])
    h = be.add(h, attention(be, normed, normed, p, f"{block}.attn1"))
    normed = be.layer_norm(h, p[f"{block}.norm2.weight"], p[f"{block}.norm2.bias"])
    h = be.add(h, attention(be, normed, context, p, f"{block}.attn2"))
    normed = be.layer_norm(h, p[f"{block}.norm3.weight"], p[f"{block}.norm3.bias"])
    ff = be.linear(normed, p[f"{block}.ff.net.0.proj.weight"], p[f"{block}.ff.net.0.proj.bias"])
    ff = be.geglu(ff, fused=False)
    h = be.add(h, be.linear(ff, p[f"{block}.ff.net.2.weight"], p[f"{block}.ff.net.2.bias"]))
    h = be.linear(h, p["attn.proj_out.weight"], p["attn.proj_out.bias"])
    return be.add(h.reshape(n, hh, ww, c).transpose(0, 3, 1, 2), x)


def unet_block(be, x, temb, context, p):
    return transformer(be, resnet_block(be, x, temb, p), context, p)


def parameters(seed=0) -> dict:
    """float32 parameters named as in diffusers' checkpoints, weights ~ 1/sqrt(fan_in)."""
    c, block = CHANNELS, "attn.transformer_blocks.0"
    shapes = {
        "resnet.norm1.weight": (c,), "resnet.norm1.bias": (c,),
        "resnet.conv1.weight": (c, c, 3, 3), "resnet.conv1.bias": (c,),
        "resnet.time_emb_proj.weight": (c, TEMB), "resnet.time_emb_proj.bias": (c,),
        "resnet.norm2.weight": (c,), "resnet.norm2.bias": (c,),
        "resnet.conv2.weight": (c, c, 3, 3), "resnet.conv2.bias": (c,),
        "attn.norm.weight": (c,), "attn.norm.bias": (c,),
        "attn.proj_in.weight": (c, c), "attn.proj_in.bias": (c,),
        "attn.proj_out.weight": (c, c), "attn.proj_out.bias": (c,),
    }
    for i in (1, 2, 3):
        shapes[f"{block}.norm{i}.weight"] = shapes[f"{block}.norm{i}.bias"] = (c,)
    for name, kv_dim in (("attn1", c), ("attn2", CONTEXT_DIM)):
        shapes[f"{block}.{name}.to_q.weight"] = (c, c)
        shapes[f"{block}.{name}.to_k.weight"] = shapes[f"{block}.{name}.to_v.weight"] = (c, kv_dim)
        shapes[f"{block}.{name}.to_out.0.weight"], shapes[f"{block}.{name}.to_out.0.bias"] = (c, c), (c,)
    shapes[f"{block}.ff.net.0.proj.weight"], shapes[f"{block}.ff.net.0.proj.bias"] = (2 * FF_INNER, c), (2 * FF_INNER,)
    shapes[f"{block}.ff.net.2.weight"], shapes[f"{block}.ff.net.2.bias"] = (c, FF_INNER), (c,)
    params = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm3.weight") \
                or name.endswith("norm.weight"):
            params[name] = random_array(seed + i, shape, scale=0.1, offset=1.0, dtype=np.float32)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            params[name] = random_array(seed + i, shape, scale=1 / math.sqrt(fan_in), dtype=np.float32)
    return params


def chain_inputs(seed=100):
    x = random_array(seed, (BATCH, CHANNELS, SIZE, SIZE), dtype=np.float32)
    temb = random_array(seed + 1, (BATCH, TEMB), dtype=np.float32)
    context = random_array(seed + 2, (BATCH, CONTEXT_TOKENS, CONTEXT_DIM), dtype=np.float32)
    return x, temb, context


# ----------------------------------------------------------------------------------- the tests


def _count_pallas_calls(jaxpr) -> int:
    return primitives_outside_kernels(jaxpr).count("pallas_call")


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_unet_block_compiles_once_under_one_jit_and_matches_numpy(config):
    be = get_backend("jax", optimizations=CONFIGS[config])
    params_np = parameters()
    inputs_np = chain_inputs()
    params = {k: be.asarray(v) for k, v in params_np.items()}
    inputs = [be.asarray(a) for a in inputs_np]

    traces = []

    def block(x, temb, context, p):
        traces.append(1)  # a Python side effect: runs once per trace, never in compiled code
        return unet_block(be, x, temb, context, p)

    jitted = jax.jit(block)
    compiled = jitted.lower(*inputs, params).compile()
    assert len(traces) == 1
    out = np.asarray(compiled(*inputs, params))
    assert out.shape == (BATCH, CHANNELS, SIZE, SIZE) and out.dtype == np.float32 and np.all(np.isfinite(out))

    # the variant choices made while tracing: both 3x3 convolutions direct, or both Winograd F(4, 3)
    conv = "winograd4" if config == "winograd4" else "direct"
    assert be.choices[("conv2d", "default", conv)] == 2
    pallas_calls = _count_pallas_calls(jax.make_jaxpr(lambda *a: unet_block(be, *a))(*inputs, params).jaxpr)
    assert pallas_calls == (4 if config == "winograd4" else 0)  # 2 transform kernels per convolution

    # the same chain on the numpy backend (the reference semantics) in float32, and in float64
    ref_be = get_backend("numpy", optimizations=CONFIGS[config])
    expected = unet_block(ref_be, *inputs_np, params_np)
    assert relative_frobenius_error(out, expected) < 1e-4
    exact = unet_block(ref_be, *(a.astype(np.float64) for a in inputs_np),
                       {k: v.astype(np.float64) for k, v in params_np.items()})
    assert relative_frobenius_error(out, exact) < 1e-5  # measured: 3e-7 (direct), 4e-7 (Winograd)
    assert relative_frobenius_error(out, inputs_np[0]) > 0.1  # the block really changed its input

    # re-running, with new values of the same shapes, neither retraces nor changes the result
    first = np.asarray(jitted(*inputs, params))   # reuses the trace of lower()
    other = [be.asarray(a) for a in chain_inputs(seed=200)]
    second = np.asarray(jitted(*other, params))
    third = np.asarray(jitted(*inputs, params))
    assert len(traces) == 1
    np.testing.assert_array_equal(first, out)
    np.testing.assert_array_equal(third, first)
    assert not np.array_equal(second, first)

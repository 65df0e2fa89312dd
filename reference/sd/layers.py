"""The building blocks of Stable Diffusion 1.x, written once against the op interface.

Every block is a ``Module``: it knows the names and shapes of its parameters (exactly the names
of diffusers' / transformers' checkpoints, e.g. ``down_blocks.0.resnets.1.conv2.weight``) and
how to run them, ``block(run, x, ...)``, where ``run`` carries the backend and one flat dict of
parameters. Modules hold no arrays, so the same module tree runs on the numpy, jax and opencl
backends, and on JAX it can be traced under one ``jax.jit`` with the parameters as an argument.

Every op goes through the backend with its variant left open (``fused=None``, ``method=None``),
so the backend's ``Optimizations`` (the paper's switches) reach every layer:

    GroupNorm (+ SiLU)         backend.group_norm(..., silu=...)  fused GroupNorm switch
    GEGLU feed-forward         backend.geglu                      fused GELU switch
    Attention                  backend.attention                  naive / partial_softmax / flash
    3x3 stride-1 convolutions  backend.conv2d                     Winograd tile (or direct)

Layouts are diffusers': images NCHW, tokens (B, N, C), attention (B, heads, N, head_dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Run:
    """What a forward pass needs besides its inputs: the backend and the parameters (one flat
    dict from checkpoint names to backend arrays)."""

    backend: object
    params: Mapping


class Module:
    """A named part of a network: parameter shapes plus a forward pass (``__call__``).

    Like ``torch.nn.Module`` without state: ``self.path`` is the module's dotted name inside its
    model (``"mid_block.attentions.0"``), assigned when it is attached to a parent with ``add``.
    """

    def __init__(self):
        self.path = ""
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._children: dict[str, Module] = {}

    def add(self, name: str, module: "Module") -> "Module":
        self._children[name] = module
        module._set_path(f"{self.path}.{name}" if self.path else name)
        return module

    def _set_path(self, path: str) -> None:
        self.path = path
        for name, child in self._children.items():
            child._set_path(f"{path}.{name}")

    def add_param(self, name: str, shape) -> None:
        self._shapes[name] = tuple(int(s) for s in shape)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def param(self, run: Run, name: str):
        return run.params[self.key(name)]

    def optional_param(self, run: Run, name: str):
        """A parameter this module may lack (a bias), None when it has none."""
        return run.params[self.key(name)] if name in self._shapes else None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """{checkpoint name: shape} of every parameter of this module and its children."""
        shapes = {self.key(name): shape for name, shape in self._shapes.items()}
        for child in self._children.values():
            shapes.update(child.parameter_shapes())
        return shapes


class ModuleList(Module):
    """Children named 0, 1, 2, ... as in ``nn.ModuleList`` (``resnets.0``, ``resnets.1``)."""

    def __init__(self, modules):
        super().__init__()
        self._items = [self.add(str(i), m) for i, m in enumerate(modules)]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        return self._items[i]


# -- the basic layers ------------------------------------------------------------------------


class Linear(Module):
    """y = x W^T + b over the last axis; W is (out, in) as in torch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.add_param("weight", (out_features, in_features))
        if bias:
            self.add_param("bias", (out_features,))

    def __call__(self, run: Run, x):
        return run.backend.linear(x, self.param(run, "weight"), self.optional_param(run, "bias"))


class Conv2d(Module):
    """2-D convolution, NCHW / OIHW. The backend picks direct or Winograd (3x3, stride 1 only)
    from its Optimizations."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.add_param("weight", (out_channels, in_channels, kernel_size, kernel_size))
        self.add_param("bias", (out_channels,))

    def __call__(self, run: Run, x):
        return run.backend.conv2d(x, self.param(run, "weight"), self.param(run, "bias"),
                                  stride=self.stride, padding=self.padding)


class GroupNorm(Module):
    """GroupNorm over (C/G, H, W) per group, optionally followed by SiLU (one fused kernel when
    the fused GroupNorm switch is on)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"norm_num_groups: {num_groups} does not divide the {num_channels} channels of {self.path or 'a GroupNorm'}")
        self.num_groups, self.eps = num_groups, eps
        self.add_param("weight", (num_channels,))
        self.add_param("bias", (num_channels,))

    def __call__(self, run: Run, x, silu: bool = False):
        return run.backend.group_norm(x, self.num_groups, self.param(run, "weight"), self.param(run, "bias"),
                                      eps=self.eps, silu=silu)


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.add_param("weight", (dim,))
        self.add_param("bias", (dim,))

    def __call__(self, run: Run, x):
        return run.backend.layer_norm(x, self.param(run, "weight"), self.param(run, "bias"), eps=self.eps)


# -- attention -------------------------------------------------------------------------------


def split_heads(be, x, heads: int):
    """(B, N, heads * d) -> (B, heads, N, d)."""
    b, n, c = x.shape
    return be.transpose(be.reshape(x, (b, n, heads, c // heads)), (0, 2, 1, 3))


def merge_heads(be, x):
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return be.reshape(be.transpose(x, (0, 2, 1, 3)), (b, n, h * d))


def image_to_tokens(be, x):
    """(B, C, H, W) -> (B, H*W, C)."""
    b, c, h, w = x.shape
    return be.reshape(be.transpose(x, (0, 2, 3, 1)), (b, h * w, c))


def tokens_to_image(be, x, height: int, width: int):
    """(B, H*W, C) -> (B, C, H, W)."""
    b, _, c = x.shape
    return be.transpose(be.reshape(x, (b, height, width, c)), (0, 3, 1, 2))


class Attention(Module):
    """diffusers' ``Attention``: multi-head attention with separate q/k/v projections.

        Q = x W_q^T,  K = c W_k^T,  V = c W_v^T    (c = context, or x for self-attention)
        O = softmax(Q K^T / sqrt(d)) V per head,   out = O W_o^T + b_o

    The attention itself is ``backend.attention`` with the backend's method (the paper's switch).
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None,
                 qkv_bias: bool = False):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = self.add("to_q", Linear(query_dim, inner, bias=qkv_bias))
        self.to_k = self.add("to_k", Linear(context_dim, inner, bias=qkv_bias))
        self.to_v = self.add("to_v", Linear(context_dim, inner, bias=qkv_bias))
        self.to_out = self.add("to_out", ModuleList([Linear(inner, query_dim)]))

    def __call__(self, run: Run, x, context=None):
        be = run.backend
        context = x if context is None else context
        q = split_heads(be, self.to_q(run, x), self.heads)
        k = split_heads(be, self.to_k(run, context), self.heads)
        v = split_heads(be, self.to_v(run, context), self.heads)
        return self.to_out[0](run, merge_heads(be, be.attention(q, k, v)))


class GEGLUFeedForward(Module):
    """diffusers' ``FeedForward`` with GEGLU: ``net.0.proj`` (dim -> 2 * 4 dim), then
    a * gelu(gate) on the two halves (the fused GELU kernel), then ``net.2`` (4 dim -> dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        net = self.add("net", Module())  # net.1 is a dropout in diffusers: no parameters
        self.proj = net.add("0", Module()).add("proj", Linear(dim, 2 * inner))
        self.out = net.add("2", Linear(inner, dim))

    def __call__(self, run: Run, x):
        return self.out(run, run.backend.geglu(self.proj(run, x)))


class BasicTransformerBlock(Module):
    """Self-attention, cross-attention and GEGLU feed-forward, each pre-LayerNorm with a residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.norm1 = self.add("norm1", LayerNorm(dim))
        self.attn1 = self.add("attn1", Attention(dim, heads, dim_head))
        self.norm2 = self.add("norm2", LayerNorm(dim))
        self.attn2 = self.add("attn2", Attention(dim, heads, dim_head, context_dim=context_dim))
        self.norm3 = self.add("norm3", LayerNorm(dim))
        self.ff = self.add("ff", GEGLUFeedForward(dim))

    def __call__(self, run: Run, x, context):
        be = run.backend
        x = be.add(x, self.attn1(run, self.norm1(run, x)))
        x = be.add(x, self.attn2(run, self.norm2(run, x), context))
        return be.add(x, self.ff(run, self.norm3(run, x)))


class Transformer2DModel(Module):
    """diffusers' ``Transformer2DModel`` for SD 1.x: GroupNorm, a 1x1 ``proj_in`` (a Linear on
    the tokens with ``use_linear_projection``), transformer blocks on the H*W tokens, ``proj_out``
    back, plus the input as a residual."""

    def __init__(self, heads: int, dim_head: int, in_channels: int, context_dim: int, num_groups: int,
                 num_layers: int = 1, use_linear_projection: bool = False):
        super().__init__()
        inner = heads * dim_head
        self.linear_projection = use_linear_projection
        self.norm = self.add("norm", GroupNorm(num_groups, in_channels, eps=1e-6))
        if use_linear_projection:
            self.proj_in = self.add("proj_in", Linear(in_channels, inner))
            self.proj_out = self.add("proj_out", Linear(inner, in_channels))
        else:
            self.proj_in = self.add("proj_in", Conv2d(in_channels, inner, 1))
            self.proj_out = self.add("proj_out", Conv2d(inner, in_channels, 1))
        self.blocks = self.add("transformer_blocks", ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(num_layers)]))

    def __call__(self, run: Run, x, context):
        be = run.backend
        _, _, height, width = x.shape
        h = self.norm(run, x)
        if self.linear_projection:
            h = self.proj_in(run, image_to_tokens(be, h))
        else:
            h = image_to_tokens(be, self.proj_in(run, h))
        for block in self.blocks:
            h = block(run, h, context)
        if self.linear_projection:
            h = tokens_to_image(be, self.proj_out(run, h), height, width)
        else:
            h = self.proj_out(run, tokens_to_image(be, h, height, width))
        return be.add(h, x)


class SpatialSelfAttention(Attention):
    """The VAE's attention over the H*W pixels: diffusers' ``Attention`` with a ``group_norm``,
    biased q/k/v, one head (head_dim = channels) and the input as a residual."""

    def __init__(self, channels: int, num_groups: int, eps: float, heads: int = 1):
        super().__init__(channels, heads, channels // heads, qkv_bias=True)
        self.group_norm = self.add("group_norm", GroupNorm(num_groups, channels, eps))

    def __call__(self, run: Run, x):
        be = run.backend
        _, _, height, width = x.shape
        h = super().__call__(run, image_to_tokens(be, self.group_norm(run, x)))
        return be.add(tokens_to_image(be, h, height, width), x)


# -- convolutional blocks ----------------------------------------------------------------------


class ResnetBlock2D(Module):
    """GN+SiLU, 3x3 conv, (+ time embedding projection), GN+SiLU, 3x3 conv, plus the input
    (through a 1x1 ``conv_shortcut`` where the channel count changes).

    ``temb_act`` is SiLU(time embedding), computed once per UNet call by the caller (diffusers
    recomputes the same SiLU in every block)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None, num_groups: int, eps: float):
        super().__init__()
        self.norm1 = self.add("norm1", GroupNorm(num_groups, in_channels, eps))
        self.conv1 = self.add("conv1", Conv2d(in_channels, out_channels, 3, padding=1))
        self.time_emb_proj = self.add("time_emb_proj", Linear(temb_channels, out_channels)) if temb_channels else None
        self.norm2 = self.add("norm2", GroupNorm(num_groups, out_channels, eps))
        self.conv2 = self.add("conv2", Conv2d(out_channels, out_channels, 3, padding=1))
        self.conv_shortcut = (self.add("conv_shortcut", Conv2d(in_channels, out_channels, 1))
                              if in_channels != out_channels else None)

    def __call__(self, run: Run, x, temb_act=None):
        be = run.backend
        h = self.conv1(run, self.norm1(run, x, silu=True))
        if self.time_emb_proj is not None:
            h = be.add_broadcast(h, self.time_emb_proj(run, temb_act))
        h = self.conv2(run, self.norm2(run, h, silu=True))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(run, x)
        return be.add(shortcut, h)


class Downsample2D(Module):
    """3x3 convolution with stride 2 and padding 1 (direct: Winograd is for stride 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = self.add("conv", Conv2d(channels, channels, 3, stride=2, padding=1))

    def __call__(self, run: Run, x):
        return self.conv(run, x)


class Upsample2D(Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = self.add("conv", Conv2d(channels, channels, 3, padding=1))

    def __call__(self, run: Run, x):
        conv = self.conv  # one op: a backend may skip the upsampled image (reference/upsample_conv.py)
        return run.backend.upsample_conv2d(x, conv.param(run, "weight"), conv.param(run, "bias"), 2,
                                           padding=conv.padding)


def timestep_embedding(timesteps, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0) -> np.ndarray:
    """diffusers' sinusoidal ``get_timestep_embedding`` (host side, float64), shape (B, dim):

        f_i = exp(-ln(max_period) * i / (dim/2 - freq_shift)),  i = 0 .. dim/2 - 1
        emb = [sin(t f), cos(t f)]   ([cos, sin] with flip_sin_to_cos)
    """
    timesteps = np.atleast_1d(np.asarray(timesteps, dtype=np.float64))
    if timesteps.ndim != 1:
        raise ValueError(f"timestep: expected a number or a 1-D array, got shape {timesteps.shape}")
    if dim % 2:
        raise ValueError(f"dim: the timestep embedding needs an even size, got {dim}")
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - freq_shift))
    args = timesteps[:, None] * freqs[None, :]
    sin, cos = np.sin(args), np.cos(args)
    return np.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=1)

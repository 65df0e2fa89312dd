"""The image decoder of Stable Diffusion 1.x: the decoder half of diffusers' ``AutoencoderKL``.

    from backends import get_backend

    decoder = VAEDecoder.from_pretrained("sd-v1-4/vae", backend=get_backend("opencl"))
    image = decoder(latents)        # (B, 4, 64, 64) -> (B, 3, 512, 512), values about [-1, 1]

``decoder(z)`` is diffusers' ``AutoencoderKL.decode(z).sample``: ``z`` is the UNet's latents already
divided by ``scaling_factor`` (0.18215), which the pipeline does, as diffusers' does. With
``dtype="float16"`` and the config's ``force_upcast`` (true unless the config says otherwise, as
in diffusers), the decoder stores and computes in float32, as diffusers' pipelines upcast the VAE
(SD's decoder overflows float16 activations); ``decoder.dtype`` says which. The network (SD 1.4:
block_out_channels 128, 256, 512, 512; 2 layers per block, so 3 ResNets per up block):

    z -> post_quant_conv (1x1) -> decoder.conv_in (3x3, 4 -> 512)
      -> decoder.mid_block: ResnetBlock2D, single-head attention over H*W pixels, ResnetBlock2D
      -> decoder.up_blocks: [ResnetBlock2D x 3, Upsample2D] x 3, ResnetBlock2D x 3
      -> GroupNorm + SiLU -> conv_out (3x3, 128 -> 3)

All but two of its convolutions are 3x3 with stride 1: the layers Winograd F(4x4, 3x3) serves
(the paper: "90% of the image decoder's layers"). The attention has head_dim 512 over
64 x 64 = 4096 pixels at 512 x 512 output.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import BOOL, POSITIVE_INT, POSITIVE_NUMBER, STRING, Model, list_of
from .layers import Conv2d, GroupNorm, Module, ModuleList, ResnetBlock2D, Run, SpatialSelfAttention, Upsample2D

#: SD 1.4's vae/config.json (CompVis/stable-diffusion-v1-4).
SD14_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

#: the VAE attention's names before diffusers 0.14 (some checkpoints still use them)
_LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


class UpDecoderBlock2D(Module):
    def __init__(self, in_ch, out_ch, layers, groups, eps, add_upsample):
        super().__init__()
        self.resnets = self.add("resnets", ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, None, groups, eps) for i in range(layers)]))
        self.upsample = self.add("upsamplers", ModuleList([Upsample2D(out_ch)]))[0] if add_upsample else None

    def __call__(self, run: Run, x):
        for resnet in self.resnets:
            x = resnet(run, x)
        return x if self.upsample is None else self.upsample(run, x)


class UNetMidBlock2D(Module):
    def __init__(self, channels, groups, eps, add_attention=True):
        super().__init__()
        self.resnets = self.add("resnets", ModuleList(
            [ResnetBlock2D(channels, channels, None, groups, eps) for _ in range(2)]))
        self.attentions = self.add("attentions", ModuleList(
            [SpatialSelfAttention(channels, groups, eps)])) if add_attention else None

    def __call__(self, run: Run, x):
        x = self.resnets[0](run, x)
        if self.attentions is not None:
            x = self.attentions[0](run, x)
        return self.resnets[1](run, x)


class DecoderModule(Module):
    """post_quant_conv and ``decoder.*`` (parameter names = diffusers' checkpoint names)."""

    EPS = 1e-6  # diffusers' Decoder uses eps 1e-6 in every norm

    def __init__(self, config: dict):
        super().__init__()
        if config["act_fn"] != "silu":
            raise ValueError(f"act_fn: only 'silu' (SD 1.x) is implemented, got {config['act_fn']!r}")
        for t in config["up_block_types"]:
            if t != "UpDecoderBlock2D":
                raise ValueError(f"up_block_types: {t!r} is not an SD 1.x decoder block; expected 'UpDecoderBlock2D'")
        channels = list(config["block_out_channels"])
        if len(config["up_block_types"]) != len(channels):
            raise ValueError(f"up_block_types: expected {len(channels)} (one per block_out_channels), "
                             f"got {len(config['up_block_types'])}")
        groups, latent, layers = config["norm_num_groups"], config["latent_channels"], config["layers_per_block"]
        self.latent_channels = latent
        self.post_quant_conv = self.add("post_quant_conv", Conv2d(latent, latent, 1))
        decoder = self.add("decoder", Module())
        self.conv_in = decoder.add("conv_in", Conv2d(latent, channels[-1], 3, padding=1))
        self.mid_block = decoder.add("mid_block", UNetMidBlock2D(channels[-1], groups, self.EPS,
                                                                 config.get("mid_block_add_attention", True)))
        rev = channels[::-1]
        out_ch = rev[0]
        blocks = []
        for i in range(len(rev)):
            in_ch, out_ch = out_ch, rev[i]
            blocks.append(UpDecoderBlock2D(in_ch, out_ch, layers + 1, groups, self.EPS, add_upsample=i < len(rev) - 1))
        self.up_blocks = decoder.add("up_blocks", ModuleList(blocks))
        self.conv_norm_out = decoder.add("conv_norm_out", GroupNorm(groups, channels[0], self.EPS))
        self.conv_out = decoder.add("conv_out", Conv2d(channels[0], config["out_channels"], 3, padding=1))

    def __call__(self, run: Run, z):
        x = self.conv_in(run, self.post_quant_conv(run, z))
        x = self.mid_block(run, x)
        for block in self.up_blocks:
            x = block(run, x)
        return self.conv_out(run, self.conv_norm_out(run, x, silu=True))


class VAEDecoder(Model):
    """``decoder(latents)``: SD latents -> image (B, 3, 8H, 8W) with values about [-1, 1]."""

    IGNORED_PREFIXES = ("encoder.", "quant_conv.")  # the encoder half of AutoencoderKL
    CONFIG_KEYS = {"block_out_channels": list_of(POSITIVE_INT), "latent_channels": POSITIVE_INT,
                   "layers_per_block": POSITIVE_INT, "norm_num_groups": POSITIVE_INT, "out_channels": POSITIVE_INT,
                   "scaling_factor": POSITIVE_NUMBER, "up_block_types": list_of(STRING),
                   "mid_block_add_attention": BOOL, "force_upcast": BOOL}
    #: AutoencoderKL keys of other VAEs (SDXL's latents statistics, SD3's shift, no quant convs)
    FIXED_KEYS = {"act_fn": "silu", "latents_mean": None, "latents_std": None, "shift_factor": None,
                  "use_quant_conv": True, "use_post_quant_conv": True}
    #: the encoder's half (not built here: its input channels and block types) and the image size
    INFORMATIONAL_KEYS = frozenset({"in_channels", "down_block_types", "sample_size"})
    DEFAULTS = {"act_fn": "silu", "block_out_channels": [64], "latent_channels": 4, "layers_per_block": 1,
                "norm_num_groups": 32, "out_channels": 3, "scaling_factor": 0.18215,
                "up_block_types": ["UpDecoderBlock2D"], "mid_block_add_attention": True}

    @classmethod
    def build(cls, config: dict) -> Module:
        return DecoderModule(config)

    @classmethod
    def compute_dtype(cls, config: dict, dtype):
        """float32 in place of float16 when ``force_upcast`` (diffusers' default: true)."""
        return np.dtype(np.float32) if dtype == np.float16 and config.get("force_upcast", True) else dtype

    @classmethod
    def canonical_names(cls, params: dict) -> dict:
        """``...attentions.0.query.weight`` -> ``...attentions.0.to_q.weight`` (diffusers < 0.14),
        and 1x1-conv-shaped (C, C, 1, 1) attention projections to (C, C) linears."""
        renamed = {}
        for name, value in params.items():
            owner, _, leaf = name.rpartition(".")
            module, _, last = owner.rpartition(".")
            if ".attentions." in name and last in _LEGACY_ATTENTION_NAMES:
                name = f"{module}.{_LEGACY_ATTENTION_NAMES[last]}.{leaf}"
            if ".attentions." in name and leaf == "weight" and value.ndim == 4 and value.shape[2:] == (1, 1) and \
                    not name.split(".")[-2] == "group_norm":
                value = value[:, :, 0, 0]
            renamed[name] = value
        return renamed

    def forward(self, run: Run, z):
        return self.module(run, z)

    def __call__(self, z):
        """Decode latents z (B, latent_channels, h, w), already divided by ``scaling_factor``
        (diffusers' ``vae.decode(z)``)."""
        if z.ndim != 4 or z.shape[1] != self.module.latent_channels:
            raise ValueError(f"z: expected (B, {self.module.latent_channels}, h, w), got {tuple(z.shape)}")
        (z,) = self.to_backend([z])
        return self._forward(self.params, z)

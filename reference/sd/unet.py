"""The UNet of Stable Diffusion 1.x: diffusers' ``UNet2DConditionModel``, on any backend.

    from backends import get_backend

    be = get_backend("opencl", optimizations="paper")
    unet = UNet2DConditionModel.from_pretrained("sd-v1-4/unet", backend=be)  # or .random(SD14_UNET, backend=be)
    noise = unet(latents, timestep, text_embeddings)       # (B, 4, 64, 64) -> (B, 4, 64, 64)

The network (SD 1.4: block_out_channels 320, 640, 1280, 1280; 2 layers per block; 8 heads):

    t -> sinusoid(320) -> time_embedding: linear_1, SiLU, linear_2     -> temb (B, 1280)
    x -> conv_in (3x3)
      -> down_blocks: [ResnetBlock2D, Transformer2DModel] x 2, Downsample2D   (CrossAttnDownBlock2D)
                      ResnetBlock2D x 2                                        (DownBlock2D, last)
      -> mid_block:   ResnetBlock2D, Transformer2DModel, ResnetBlock2D
      -> up_blocks:   ResnetBlock2D x 3, Upsample2D                            (UpBlock2D, first)
                      [concat skip, ResnetBlock2D, Transformer2DModel] x 3, Upsample2D
      -> GroupNorm + SiLU -> conv_out (3x3)

Every down-block output is kept and concatenated (along channels) to the input of a ResNet of
the mirrored up block. The transformers attend over the H*W pixels (self-attention) and over the
77 text tokens (cross-attention). ``attention_head_dim`` in SD 1.x configs is, by diffusers'
historical quirk, the number of heads (8), so head_dim = channels / 8: 40, 80, 160.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import BOOL, NUMBER, POSITIVE_INT, POSITIVE_NUMBER, STRING, Model, list_of, one_or_list, optional
from .layers import (Conv2d, Downsample2D, GroupNorm, Linear, Module, ModuleList, ResnetBlock2D, Run,
                     Transformer2DModel, Upsample2D, timestep_embedding)

#: SD 1.4's unet/config.json (CompVis/stable-diffusion-v1-4), the keys this module reads.
SD14_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

def _per_block(config: dict, key: str, n: int) -> list:
    value = config[key]
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{key}: expected one value per block ({n}), got {value!r}")
        return list(value)
    return [value] * n


class CrossAttnDownBlock2D(Module):
    def __init__(self, in_ch, out_ch, temb_ch, layers, heads, context_dim, groups, eps, add_downsample,
                 transformer_layers, linear_projection, with_attention=True):
        super().__init__()
        self.resnets = self.add("resnets", ModuleList(
            [ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, temb_ch, groups, eps) for i in range(layers)]))
        self.attentions = self.add("attentions", ModuleList(
            [Transformer2DModel(heads, out_ch // heads, out_ch, context_dim, groups, transformer_layers,
                                linear_projection) for _ in range(layers)])) if with_attention else None
        self.downsample = self.add("downsamplers", ModuleList([Downsample2D(out_ch)]))[0] if add_downsample else None

    def __call__(self, run: Run, x, temb_act, context):
        """(output, [the states the up blocks will concatenate])."""
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(run, x, temb_act)
            if self.attentions is not None:
                x = self.attentions[i](run, x, context)
            states.append(x)
        if self.downsample is not None:
            x = self.downsample(run, x)
            states.append(x)
        return x, states


class CrossAttnUpBlock2D(Module):
    def __init__(self, in_ch, prev_out_ch, out_ch, temb_ch, layers, heads, context_dim, groups, eps, add_upsample,
                 transformer_layers, linear_projection, with_attention=True):
        super().__init__()
        resnets = []
        for i in range(layers):
            skip_ch = in_ch if i == layers - 1 else out_ch
            resnet_in = prev_out_ch if i == 0 else out_ch
            resnets.append(ResnetBlock2D(resnet_in + skip_ch, out_ch, temb_ch, groups, eps))
        self.resnets = self.add("resnets", ModuleList(resnets))
        self.attentions = self.add("attentions", ModuleList(
            [Transformer2DModel(heads, out_ch // heads, out_ch, context_dim, groups, transformer_layers,
                                linear_projection) for _ in range(layers)])) if with_attention else None
        self.upsample = self.add("upsamplers", ModuleList([Upsample2D(out_ch)]))[0] if add_upsample else None

    def __call__(self, run: Run, x, skips, temb_act, context):
        """``skips``: this block's down-block states, the last one first consumed."""
        be = run.backend
        for i, resnet in enumerate(self.resnets):
            x = resnet(run, be.concat([x, skips.pop()], axis=1), temb_act)
            if self.attentions is not None:
                x = self.attentions[i](run, x, context)
        if self.upsample is not None:
            x = self.upsample(run, x)
        return x


class UNetMidBlock2DCrossAttn(Module):
    def __init__(self, channels, temb_ch, heads, context_dim, groups, eps, transformer_layers, linear_projection):
        super().__init__()
        self.resnets = self.add("resnets", ModuleList(
            [ResnetBlock2D(channels, channels, temb_ch, groups, eps) for _ in range(2)]))
        self.attentions = self.add("attentions", ModuleList(
            [Transformer2DModel(heads, channels // heads, channels, context_dim, groups, transformer_layers,
                                linear_projection)]))

    def __call__(self, run: Run, x, temb_act, context):
        x = self.resnets[0](run, x, temb_act)
        x = self.attentions[0](run, x, context)
        return self.resnets[1](run, x, temb_act)


class UNetModule(Module):
    """The whole UNet as one module tree (parameter names = diffusers' checkpoint names)."""

    def __init__(self, config: dict):
        super().__init__()
        channels = list(config["block_out_channels"])
        n = len(channels)
        down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
        if len(down_types) != n or len(up_types) != n:
            raise ValueError(f"down_block_types, up_block_types: expected {n} each (one per block_out_channels), "
                             f"got {len(down_types)} and {len(up_types)}")
        for name, types, allowed in (("down_block_types", down_types, ("CrossAttnDownBlock2D", "DownBlock2D")),
                                     ("up_block_types", up_types, ("CrossAttnUpBlock2D", "UpBlock2D"))):
            for t in types:
                if t not in allowed:
                    raise ValueError(f"{name}: {t!r} is not an SD 1.x block; expected one of {allowed}")
        heads = _per_block(config, "num_attention_heads" if config.get("num_attention_heads") else "attention_head_dim", n)
        layers = _per_block(config, "layers_per_block", n)
        transformer_layers = _per_block(config, "transformer_layers_per_block", n)
        groups, eps, context_dim = config["norm_num_groups"], config["norm_eps"], config["cross_attention_dim"]
        linear_projection = bool(config["use_linear_projection"])
        for h, c in zip(heads, channels):
            if c % h:
                raise ValueError(f"attention_head_dim: {h} heads do not divide {c} channels")
        temb_ch = channels[0] * 4
        self.in_channels = config["in_channels"]
        self.flip_sin_to_cos, self.freq_shift = config["flip_sin_to_cos"], config["freq_shift"]
        self.time_proj_dim = channels[0]

        self.conv_in = self.add("conv_in", Conv2d(config["in_channels"], channels[0], 3, padding=1))
        time_embedding = self.add("time_embedding", Module())
        self.time_linear_1 = time_embedding.add("linear_1", Linear(channels[0], temb_ch))
        self.time_linear_2 = time_embedding.add("linear_2", Linear(temb_ch, temb_ch))

        down = []
        out_ch = channels[0]
        for i, kind in enumerate(down_types):
            in_ch, out_ch = out_ch, channels[i]
            down.append(CrossAttnDownBlock2D(in_ch, out_ch, temb_ch, layers[i], heads[i], context_dim, groups, eps,
                                             add_downsample=i < n - 1, transformer_layers=transformer_layers[i],
                                             linear_projection=linear_projection,
                                             with_attention=kind == "CrossAttnDownBlock2D"))
        self.down_blocks = self.add("down_blocks", ModuleList(down))
        self.mid_block = self.add("mid_block", UNetMidBlock2DCrossAttn(
            channels[-1], temb_ch, heads[-1], context_dim, groups, eps, transformer_layers[-1], linear_projection))

        up = []
        rev_channels, rev_heads, rev_layers = channels[::-1], heads[::-1], layers[::-1]
        rev_transformer_layers = transformer_layers[::-1]
        out_ch = rev_channels[0]
        for i, kind in enumerate(up_types):
            prev_out_ch, out_ch = out_ch, rev_channels[i]
            in_ch = rev_channels[min(i + 1, n - 1)]
            up.append(CrossAttnUpBlock2D(in_ch, prev_out_ch, out_ch, temb_ch, rev_layers[i] + 1, rev_heads[i],
                                         context_dim, groups, eps, add_upsample=i < n - 1,
                                         transformer_layers=rev_transformer_layers[i],
                                         linear_projection=linear_projection,
                                         with_attention=kind == "CrossAttnUpBlock2D"))
        self.up_blocks = self.add("up_blocks", ModuleList(up))
        self.conv_norm_out = self.add("conv_norm_out", GroupNorm(groups, channels[0], eps))
        self.conv_out = self.add("conv_out", Conv2d(channels[0], config["out_channels"], 3, padding=1))

    def __call__(self, run: Run, sample, timestep_sinusoid, context):
        be = run.backend
        temb = self.time_linear_2(run, be.silu(self.time_linear_1(run, timestep_sinusoid)))
        temb_act = be.silu(temb)  # every ResNet adds time_emb_proj(SiLU(temb))

        x = self.conv_in(run, sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(run, x, temb_act, context)
            skips += states
        x = self.mid_block(run, x, temb_act, context)
        for block in self.up_blocks:
            count = len(block.resnets)
            x = block(run, x, skips[-count:], temb_act, context)
            del skips[-count:]
        return self.conv_out(run, self.conv_norm_out(run, x, silu=True))


class UNet2DConditionModel(Model):
    """SD 1.x's noise predictor: ``unet(sample, timestep, encoder_hidden_states)``."""

    CONFIG_KEYS = {
        "attention_head_dim": one_or_list(POSITIVE_INT), "num_attention_heads": optional(one_or_list(POSITIVE_INT)),
        "block_out_channels": list_of(POSITIVE_INT), "cross_attention_dim": POSITIVE_INT,
        "down_block_types": list_of(STRING), "up_block_types": list_of(STRING), "flip_sin_to_cos": BOOL,
        "freq_shift": NUMBER, "in_channels": POSITIVE_INT, "out_channels": POSITIVE_INT,
        "layers_per_block": one_or_list(POSITIVE_INT), "transformer_layers_per_block": one_or_list(POSITIVE_INT),
        "norm_eps": POSITIVE_NUMBER, "norm_num_groups": POSITIVE_INT, "use_linear_projection": BOOL,
        "sample_size": optional(POSITIVE_INT),
    }
    #: keys of diffusers' UNet2DConditionModel that select other architectures: only SD 1.x's value
    FIXED_KEYS = {
        "act_fn": "silu", "center_input_sample": False, "class_embed_type": None, "addition_embed_type": None,
        "resnet_time_scale_shift": "default", "time_embedding_type": "positional", "only_cross_attention": False,
        "dual_cross_attention": False, "mid_block_type": "UNetMidBlock2DCrossAttn", "downsample_padding": 1,
        "mid_block_scale_factor": 1, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "num_class_embeds": None,
        "conv_in_kernel": 3, "conv_out_kernel": 3, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
        "time_cond_proj_dim": None, "time_embedding_dim": None, "time_embedding_act_fn": None,
        "timestep_post_act": None, "cross_attention_norm": None, "projection_class_embeddings_input_dim": None,
        "class_embeddings_concat": False, "mid_block_only_cross_attention": None, "attention_type": "default",
        "addition_time_embed_dim": None, "reverse_transformer_layers_per_block": None,
    }
    #: no effect here: dropout (inference), the heads of an addition embedding that is None, and
    #: upcast_attention (our attention computes in float32 whatever the storage)
    INFORMATIONAL_KEYS = frozenset({"dropout", "addition_embed_type_num_heads", "upcast_attention"})
    DEFAULTS = {
        "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False, "cross_attention_dim": 1280,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "num_attention_heads": None,
        "out_channels": 4, "sample_size": None, "transformer_layers_per_block": 1,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": False,
    }

    @classmethod
    def build(cls, config: dict) -> Module:
        return UNetModule(config)

    def forward(self, run: Run, sample, timestep_sinusoid, context):
        return self.module(run, sample, timestep_sinusoid, context)

    def __call__(self, sample, timestep, encoder_hidden_states):
        """Predicted noise for ``sample`` (B, C, H, W) at ``timestep`` (a number or (B,) array)
        given ``encoder_hidden_states`` (B, 77, cross_attention_dim); numpy or backend arrays in,
        a backend array out. H and W must be divisible by 2^(number of blocks - 1)."""
        batch = sample.shape[0]
        steps = np.broadcast_to(np.asarray(timestep, dtype=np.float64).reshape(-1), (batch,))
        sinusoid = timestep_embedding(steps, self.module.time_proj_dim, self.module.flip_sin_to_cos,
                                      self.module.freq_shift)
        factor = 2 ** (len(self.config["block_out_channels"]) - 1)
        if sample.ndim != 4 or sample.shape[1] != self.module.in_channels or sample.shape[2] % factor or sample.shape[3] % factor:
            raise ValueError(f"sample: expected (B, {self.module.in_channels}, H, W) with H, W divisible by {factor}, "
                             f"got {tuple(sample.shape)}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch or \
                encoder_hidden_states.shape[2] != self.config["cross_attention_dim"]:
            raise ValueError(f"encoder_hidden_states: expected ({batch}, tokens, {self.config['cross_attention_dim']}), "
                             f"got {tuple(encoder_hidden_states.shape)}")
        sample, sinusoid, context = self.to_backend([sample, sinusoid, encoder_hidden_states])
        return self._forward(self.params, sample, sinusoid, context)

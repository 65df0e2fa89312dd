"""Tiny Stable-Diffusion-1.x-shaped configs: every block type of SD 1.4 (cross-attention down and
up blocks, plain down and up blocks, the mid block, the VAE's attention), a few thousand times
smaller. The test suite builds its checkpoints from these; students can run the whole pipeline
in seconds on a CPU:

    from backends import get_backend

    pipe = tiny_pipeline(backend=get_backend("opencl", optimizations="paper"))
    result = pipe("a red apple", steps=4)
"""

from __future__ import annotations

from .pipeline import SD14_CONFIGS, StableDiffusionPipeline
from .text_encoder import SD14_TEXT_ENCODER
from .tokenizer import CLIPTokenizer
from .unet import SD14_UNET
from .vae import SD14_VAE

TINY_UNET = {**SD14_UNET, "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 2,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
             "norm_num_groups": 8, "sample_size": 8}
TINY_VAE = {**SD14_VAE, "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
            "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
            "sample_size": 16}
TINY_TEXT_ENCODER = {**SD14_TEXT_ENCODER, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2}
#: the sentences the tiny tokenizer learns its merges from
TINY_CORPUS = ["a photograph of an astronaut riding a horse", "a red apple on a wooden table",
               "an oil painting of a lighthouse at night"]


def tiny_tokenizer(num_merges: int = 40) -> CLIPTokenizer:
    return CLIPTokenizer.train(TINY_CORPUS, num_merges=num_merges)


def tiny_configs(tokenizer: CLIPTokenizer) -> dict:
    return {**SD14_CONFIGS, "unet": TINY_UNET, "vae": TINY_VAE,
            "text_encoder": {**TINY_TEXT_ENCODER, "vocab_size": tokenizer.vocab_size}}


def tiny_pipeline(*, backend, dtype="float32", seed: int = 0) -> StableDiffusionPipeline:
    """A random tiny pipeline (16 x 16 images from 8 x 8 latents) on the backend object ``backend``."""
    tokenizer = tiny_tokenizer()
    return StableDiffusionPipeline.random(tiny_configs(tokenizer), seed, backend=backend, dtype=dtype,
                                          tokenizer=tokenizer)

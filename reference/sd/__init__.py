"""Stable Diffusion 1.x written once against the op interface (../../shared/DESIGN.md), so the same
network runs on the numpy, jax and opencl backends and every paper switch reaches every layer.
Every model and the pipeline take the backend object to run on (``backend=``); nothing here
imports ``backends`` (the command line is ``python -m experiments.generate --help``):

    from backends import get_backend
    from reference.sd.tiny import tiny_pipeline

    result = tiny_pipeline(backend=get_backend("numpy", optimizations="paper"))("a red apple", steps=2)

    layers.py        the building blocks (ResNet, transformer, attention, up/down sampling)
    text_encoder.py  CLIP ViT-L/14's text transformer (transformers' CLIPTextModel)
    unet.py          UNet2DConditionModel (diffusers)
    vae.py           the VAE decoder (AutoencoderKL's decoder half)
    checkpoint.py    diffusers' folder layout, safetensors, random weights
    tokenizer.py     CLIP's BPE tokenizer
    schedulers.py    PNDM, DDIM, Euler; classifier-free guidance
    pipeline.py      text -> image, timed per component
    tiny.py          tiny SD-shaped configs for tests and quick runs
"""

from .checkpoint import CheckpointError
from .pipeline import StableDiffusionPipeline
from .text_encoder import TextEncoder
from .tokenizer import CLIPTokenizer
from .unet import UNet2DConditionModel
from .vae import VAEDecoder

Pipeline = StableDiffusionPipeline
UNet = UNet2DConditionModel

__all__ = ["CheckpointError", "CLIPTokenizer", "Pipeline", "StableDiffusionPipeline", "TextEncoder", "UNet",
           "UNet2DConditionModel", "VAEDecoder"]

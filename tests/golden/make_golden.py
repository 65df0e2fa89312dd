"""Write the golden files of tests/sd/test_golden.py with diffusers and transformers themselves.

    python -m venv /tmp/goldenv
    /tmp/goldenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/goldenv/bin/pip install diffusers transformers safetensors accelerate ml_dtypes einops scipy
    /tmp/goldenv/bin/python tests/golden/make_golden.py            # from the project root

It builds a tiny Stable Diffusion 1.x pipeline with the libraries a user compares us with
(diffusers' ``UNet2DConditionModel``, ``AutoencoderKL``, ``StableDiffusionPipeline`` and its
schedulers; transformers' ``CLIPTextModel`` and ``CLIPTokenizer``), and saves under
tests/golden/:

    tiny-sd/                      the pipeline, as ``StableDiffusionPipeline.save_pretrained`` writes it:
                                  model_index.json, scheduler/, tokenizer/, unet/, vae/ (AutoencoderKL,
                                  encoder included), text_encoder/ (this transformers version's layout)
    text_encoder_hub/             the same text encoder in the hub's SD 1.4 layout ("text_model." prefix
                                  on every tensor name, as CompVis/stable-diffusion-v1-4 ships it)
    tokenizer_hub/                the tokenizer in the hub's layout (vocab.json, merges.txt), the folder
                                  transformers loaded; tiny-sd/tokenizer/ is transformers 5's tokenizer.json
    outputs.npz                   every output below, float32 (token ids int64)
    outputs.json                  the inputs that are not arrays, and the versions that made the files

The networks are SD 1.x-shaped and a few thousand times smaller (reference/sd/tiny.py's configs):
cross-attention down and up blocks, plain down and up blocks, the cross-attention mid block,
2 heads per transformer, the VAE's attention, a 2-layer CLIP text tower. Weights are random;
every norm's scale is perturbed from 1 and every bias from 0 (so a dropped affine or bias shows),
and the weights are rounded to float16: the files hold them in float16 (a few MB in all), and
every output is computed in float32 by the pipeline diffusers loads back from these files.

Outputs (all from the libraries, in float32 on the CPU):

    tokens           transformers' CLIPTokenizer on PROMPTS (padding to max_length, truncation)
    text_embeddings  CLIPTextModel(tokens).last_hidden_state
    unet_sample, unet_timesteps, unet_context -> unet_output   UNet2DConditionModel(...).sample,
                     one batch of 2 per timestep (the same sample and context at each)
    vae_latents -> vae_decoded                         AutoencoderKL.decode(z).sample (no scaling:
                                                       the pipeline divides by scaling_factor itself)
    pipeline_<scheduler>_noise, _latents, _image       StableDiffusionPipeline(prompt, negative prompt,
                     STEPS steps, guidance GUIDANCE, latents=noise) with output_type="latent" (the
                     final latents) and "np" (the image in [0, 1], before uint8 rounding), per scheduler

Nothing here imports the project's networks: the tokenizer's vocabulary comes from
reference.sd.tiny's training (a vocabulary is data), the configs from reference.sd.tiny.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reference.sd.schedulers import SD14_SCHEDULER_CONFIG  # noqa: E402  (data: a config dict)
from reference.sd.tiny import TINY_TEXT_ENCODER, TINY_UNET, TINY_VAE, tiny_tokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent
PROMPTS = ["a photograph of an astronaut riding a horse", "an oil painting of a lighthouse at night"]
NEGATIVE_PROMPT = "a red apple"
STEPS = 3
GUIDANCE = 7.5
SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler"}
UNET_TIMESTEPS = [1, 451, 951]
SEED = 20261202


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Norm scales 1 -> 1 + 0.2 n, biases 0 -> b + 0.1 n (n standard normal)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("bias"):
                p.add_(0.1 * noise)
            elif p.ndim == 1 and "norm" in name:
                p.add_(0.2 * noise)


def diffusers_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def build(tokenizer_dir: Path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text_config = CLIPTextConfig(**{**TINY_TEXT_ENCODER, "vocab_size": len(tokenizer),
                                    "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                                    "pad_token_id": tokenizer.pad_token_id})
    text_encoder = CLIPTextModel(text_config).eval()
    unet = UNet2DConditionModel(**diffusers_config(TINY_UNET)).eval()
    vae = AutoencoderKL(**diffusers_config(TINY_VAE)).eval()
    for model in (text_encoder, unet, vae):
        perturb(model, generator)
    return tokenizer, text_encoder, unet, vae


def hub_layout(src: Path, dst: Path) -> None:
    """The text encoder as the hub's SD 1.4 folder has it: every tensor under ``text_model.``."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(src / "model.safetensors")
    renamed = {name if name.startswith("text_model.") else f"text_model.{name}": value
               for name, value in tensors.items()}
    dst.mkdir(parents=True, exist_ok=True)
    save_file(renamed, dst / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(src / "config.json", dst / "config.json")
    return sorted(tensors)[:3], sorted(renamed)[:3]


def main() -> None:
    import diffusers
    import transformers
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    folder = OUT / "tiny-sd"
    for path in (folder, OUT / "text_encoder_hub", OUT / "tokenizer_hub"):
        if path.exists():
            shutil.rmtree(path)
    tiny_tokenizer().save_pretrained(OUT / "tokenizer_hub")

    # The checkpoints first: diffusers' folder (this transformers' text-encoder and tokenizer
    # layouts), then the hub's text-encoder layout. Every output below comes from these files,
    # loaded back as a user loads them.
    tokenizer, text_encoder, unet, vae = build(OUT / "tokenizer_hub")
    pndm = diffusers.PNDMScheduler.from_config(SD14_SCHEDULER_CONFIG)
    for model in (text_encoder, unet, vae):
        model.half()
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=pndm,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder, safe_serialization=True)
    current, hub = hub_layout(folder / "text_encoder", OUT / "text_encoder_hub")
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    tokenizer, text_encoder, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae

    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(SEED)

    # The components, one call each.
    tokens = tokenizer(PROMPTS + [NEGATIVE_PROMPT], padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt").input_ids
    hub_tokens = CLIPTokenizer.from_pretrained(OUT / "tokenizer_hub")(
        PROMPTS + [NEGATIVE_PROMPT], padding="max_length", max_length=77, truncation=True).input_ids
    assert np.array_equal(np.asarray(hub_tokens), tokens.numpy()), "the two tokenizer layouts disagree"
    out["tokens"] = tokens.numpy().astype(np.int64)
    out["text_embeddings"] = text_encoder(tokens).last_hidden_state.numpy()

    sample = rng.standard_normal((2, TINY_UNET["in_channels"], 8, 8)).astype(np.float32)
    context = out["text_embeddings"][:2]
    out["unet_sample"], out["unet_context"] = sample, context
    out["unet_timesteps"] = np.asarray(UNET_TIMESTEPS, dtype=np.int64)
    out["unet_output"] = np.stack([
        unet(torch.from_numpy(sample), t, encoder_hidden_states=torch.from_numpy(context)).sample.numpy()
        for t in UNET_TIMESTEPS])

    z = rng.standard_normal((1, TINY_VAE["latent_channels"], 8, 8)).astype(np.float32)
    out["vae_latents"], out["vae_decoded"] = z, vae.decode(torch.from_numpy(z)).sample.numpy()

    # The whole pipeline per scheduler, swapped as diffusers' users do
    # (``Scheduler.from_config(pipe.scheduler.config)``, the saved config's keys included): the
    # same kind of noise (unscaled: diffusers multiplies it by init_noise_sigma, as our pipeline
    # does), the first prompt and the negative prompt, guidance on.
    saved_scheduler = pipe.scheduler.config
    for name in SCHEDULERS:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(saved_scheduler)
        noise = rng.standard_normal((1, TINY_UNET["in_channels"], 8, 8)).astype(np.float32)
        call = dict(prompt=PROMPTS[0], negative_prompt=NEGATIVE_PROMPT, num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE, height=16, width=16)
        latents = pipe(**call, latents=torch.from_numpy(noise), output_type="latent").images
        image = pipe(**call, latents=torch.from_numpy(noise), output_type="np").images
        out[f"pipeline_{name}_noise"] = noise
        out[f"pipeline_{name}_latents"] = latents.numpy()
        out[f"pipeline_{name}_image"] = np.asarray(image, dtype=np.float32)

    np.savez_compressed(OUT / "outputs.npz", **out)
    meta = {"prompts": PROMPTS, "negative_prompt": NEGATIVE_PROMPT, "steps": STEPS, "guidance_scale": GUIDANCE,
            "schedulers": SCHEDULERS, "unet_timesteps": UNET_TIMESTEPS, "seed": SEED, "height": 16, "width": 16,
            "text_encoder_tensor_names": {"tiny-sd/text_encoder": current, "text_encoder_hub": hub},
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__, "numpy": np.__version__,
                         "python": sys.version.split()[0]}}
    with open(OUT / "outputs.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    sizes = sorted((p.stat().st_size, str(p.relative_to(OUT))) for p in OUT.rglob("*") if p.is_file())
    print(json.dumps(meta["versions"]), f"{sum(s for s, _ in sizes) / 1e6:.2f} MB in {len(sizes)} files")
    for size, name in sizes[::-1][:6]:
        print(f"  {size / 1e6:8.3f} MB  {name}")


if __name__ == "__main__":
    main()

"""Golden tests: every backend against diffusers and transformers themselves.

tests/golden/make_golden.py built a tiny SD 1.x pipeline with diffusers and transformers, saved
it (tests/golden/tiny-sd/, plus the hub's layouts of the text encoder and tokenizer) and every
output of theirs (tests/golden/outputs.npz; versions in outputs.json and tests/golden/README.md).
Here our loaders read those files and our networks, on each backend, must give the same numbers:
the tokenizer's ids exactly, the networks to float32 rounding, the pipeline's final latents and
its 8-bit image for PNDM, DDIM and Euler with classifier-free guidance. No torch is needed.

Errors are ``max |ours - theirs| / max |theirs|`` over the whole output. Measured on a CPU
(numpy, PoCL, XLA; 2026-12-02, tests/golden/errors_cpu_2026-12-02.txt; the H200's are beside it,
within the same bounds, JAX float16 included): float32 networks 3e-7 to 6e-6, pipelines 1e-6 to 8e-6 and at
most 1 level of the 8-bit image; float16 storage (OpenCL) 8e-4 (text encoder) to 5e-3 (UNet),
pipelines up to 2.2e-2 and 4 levels; bfloat16 storage (JAX, 2026-12-04 on a CPU) 8.6e-3 (UNet),
9.2e-3 (text encoder), 2.1e-2 (decoder: diffusers' force_upcast is for float16 only), pipelines
up to 2.5e-2 and 4 levels. The bounds are about 10x the float32 figures and 4x the 16-bit ones. The networks of each backend are loaded once, by ``StableDiffusionPipeline.
from_pretrained``, and the component tests call the pipeline's own networks (JAX compiles each
once).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backends import Optimizations
from reference.sd import StableDiffusionPipeline, TextEncoder, VAEDecoder
from reference.sd.tokenizer import CLIPTokenizer

from .conftest import make_backend

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FOLDER = GOLDEN / "tiny-sd"
META = json.loads((GOLDEN / "outputs.json").read_text())
SCHEDULERS = sorted(META["schedulers"])

#: (backend, optimizations, storage dtype) each golden test runs on; the paper's switches are what
#: users run, and the numpy backend without them is the plain reference
CONFIGS = [("numpy", "none", "float32"), ("opencl", "none", "float32"), ("opencl", "paper", "float32"),
           ("opencl", "paper", "float16"), ("jax", "paper", "float32"), ("jax", "none", "bfloat16")]
#: the relative error each storage dtype may have on one network / on the whole pipeline
BOUND = {"float32": 5e-5, "float16": 2e-2, "bfloat16": 1e-1}
PIPELINE_BOUND = {"float32": 1e-4, "float16": 1e-1, "bfloat16": 1e-1}


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN / "outputs.npz") as data:
        return dict(data)


@pytest.fixture(scope="module", params=CONFIGS, ids=["-".join(c) for c in CONFIGS])
def config(request):
    name, optimizations, dtype = request.param
    try:
        backend = make_backend(name, Optimizations.named(optimizations))
    except Exception as exc:  # no such device here (the opencl and jax backends are optional)
        pytest.skip(f"{name}: {exc}")
    return backend, dtype


def relative_error(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    assert np.isfinite(ours).all()
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def prompts():
    return META["prompts"] + [META["negative_prompt"]]


# -- tokenizer and text encoder: both layouts users have ------------------------------------------


@pytest.mark.parametrize("layout", ["tiny-sd/tokenizer", "tokenizer_hub"])
def test_tokenizer_matches_transformers(golden, layout):
    """transformers 5's tokenizer.json and the hub's vocab.json + merges.txt give transformers' ids."""
    files = {p.name for p in (GOLDEN / layout).iterdir()}
    assert ("tokenizer.json" in files) != ("vocab.json" in files)  # each folder has one layout only
    tokenizer = CLIPTokenizer.from_pretrained(GOLDEN / layout)
    np.testing.assert_array_equal(tokenizer(prompts()), golden["tokens"])


@pytest.fixture(scope="module")
def pipeline(config):
    backend, dtype = config
    return StableDiffusionPipeline.from_pretrained(FOLDER, backend=backend, dtype=dtype)


@pytest.mark.parametrize("layout", ["tiny-sd/text_encoder", "text_encoder_hub"])
def test_text_encoder_matches_transformers(golden, config, pipeline, layout):
    """CLIPTextModel(...).last_hidden_state, from transformers 5's file (no "text_model." prefix)
    and from the hub's (with it)."""
    backend, dtype = config
    prefixed = META["text_encoder_tensor_names"][layout][0].startswith("text_model.")
    assert prefixed == (layout == "text_encoder_hub")  # the two files really differ
    encoder = pipeline.text_encoder if layout.startswith("tiny-sd") else \
        TextEncoder.from_pretrained(GOLDEN / layout, backend=backend, dtype=dtype)
    ours = backend.to_numpy(encoder(golden["tokens"]))
    assert relative_error(ours, golden["text_embeddings"]) <= BOUND[dtype]


# -- UNet and VAE decoder --------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(META["unet_timesteps"])), ids=[f"t={t}" for t in META["unet_timesteps"]])
def test_unet_matches_diffusers(golden, config, pipeline, index):
    backend, dtype = config
    t = int(golden["unet_timesteps"][index])
    ours = backend.to_numpy(pipeline.unet(golden["unet_sample"], t, golden["unet_context"]))
    assert relative_error(ours, golden["unet_output"][index]) <= BOUND[dtype]


def test_decoder_matches_vae_decode(golden, config, pipeline):
    """Our decoder(z) is diffusers' vae.decode(z).sample: no division by scaling_factor inside."""
    backend, _ = config
    ours = backend.to_numpy(pipeline.decoder(golden["vae_latents"]))
    assert relative_error(ours, golden["vae_decoded"]) <= BOUND[pipeline.decoder.dtype.name]


def test_force_upcast_runs_the_decoder_in_float32(golden, numpy_backend, tmp_path):
    """AutoencoderKL's force_upcast (default true): float16 asked for, float32 run; false: float16."""
    upcast = VAEDecoder.from_pretrained(FOLDER / "vae", backend=numpy_backend, dtype="float16")
    assert upcast.dtype == np.float32 and upcast.requested_dtype == np.float16
    assert all(p.dtype == np.float32 for p in upcast.params.values())
    assert relative_error(numpy_backend.to_numpy(upcast(golden["vae_latents"])), golden["vae_decoded"]) <= 1e-5

    folder = shutil.copytree(FOLDER / "vae", tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    assert config["force_upcast"] is True  # diffusers writes its default
    (folder / "config.json").write_text(json.dumps({**config, "force_upcast": False}))
    half = VAEDecoder.from_pretrained(folder, backend=numpy_backend, dtype="float16")
    assert half.dtype == np.float16
    ours = numpy_backend.to_numpy(half(golden["vae_latents"]))
    assert ours.dtype == np.float16 and 1e-5 < relative_error(ours, golden["vae_decoded"]) <= BOUND["float16"]


# -- the whole pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_pipeline_matches_diffusers(golden, config, pipeline, scheduler):
    """StableDiffusionPipeline(prompt, negative_prompt, 3 steps, guidance 7.5, latents=noise):
    the final latents (output_type="latent") and the image (output_type="np", then 8 bits)."""
    _, dtype = config
    result = pipeline(META["prompts"][0], negative_prompt=META["negative_prompt"], steps=META["steps"],
                      guidance_scale=META["guidance_scale"], scheduler=scheduler,
                      latents=golden[f"pipeline_{scheduler}_noise"], height=META["height"], width=META["width"])
    assert result.unet_evaluations == META["steps"] + (scheduler == "pndm")  # PLMS repeats its second step
    assert relative_error(result.latents, golden[f"pipeline_{scheduler}_latents"]) <= PIPELINE_BOUND[dtype]
    theirs = np.round(golden[f"pipeline_{scheduler}_image"][0] * 255).astype(np.int16)
    levels = np.abs(result.image.astype(np.int16) - theirs)
    assert levels.max() <= (1 if dtype == "float32" else 8), f"image differs by up to {levels.max()} levels"
    assert 0 < theirs.std()  # a real image, not a flat one

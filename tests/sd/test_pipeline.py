"""The whole text-to-image loop on tiny checkpoints: saved in diffusers' layout, loaded back, run on
every backend, compared with the numpy pipeline; the generate command end to end."""

import json

import numpy as np
import pytest

from backends import Optimizations
from experiments.generate import main as generate
from reference.numerics import relative_frobenius_error
from reference.sd import StableDiffusionPipeline
from reference.sd.tiny import tiny_pipeline

from .conftest import make_backend

PROMPT = "a red apple on a wooden table"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, numpy_backend):
    """A tiny random Stable Diffusion checkpoint in diffusers' layout."""
    return tiny_pipeline(backend=numpy_backend, seed=11).save_pretrained(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def numpy_result(tiny_folder, numpy_backend):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=numpy_backend)
    return pipe(PROMPT, steps=3, seed=5)


def test_layout_on_disk(tiny_folder):
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    for path in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                 "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
                 "scheduler/scheduler_config.json"):
        assert (tiny_folder / path).is_file(), path


def test_reloaded_pipeline_is_identical(tiny_folder, numpy_result, numpy_backend):
    """Saving and loading changes nothing: the same seed gives the same image, bit for bit."""
    again = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=numpy_backend)(PROMPT, steps=3, seed=5)
    np.testing.assert_array_equal(again.latents, numpy_result.latents)
    other_seed = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=numpy_backend)(PROMPT, steps=3, seed=6)
    assert not np.array_equal(other_seed.latents, numpy_result.latents)


def test_pipeline_on_every_backend(backend_name, tiny_folder, numpy_result):
    """PNDM, 3 steps (4 UNet evaluations of a batch of 2 with guidance 7.5) with the paper's
    switches equal the unoptimized numpy pipeline within the float32 network bound."""
    be = make_backend(backend_name, Optimizations.paper())
    result = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=be)(PROMPT, steps=3, seed=5)
    assert result.unet_evaluations == 4
    assert result.image.shape == (16, 16, 3) and result.image.dtype == np.uint8
    err = relative_frobenius_error(result.latents, numpy_result.latents)
    assert err < 1e-4, f"final latents on {backend_name}: relative error {err:.2e}"
    assert np.abs(result.image.astype(int) - numpy_result.image.astype(int)).max() <= 1
    assert len(result.timings["unet"].seconds) == 4
    assert "text encoder" in result.report() and "UNet, median iteration" in result.report()


@pytest.mark.parametrize("scheduler, evaluations", [("ddim", 3), ("euler", 3), ("pndm", 4)])
def test_schedulers_in_the_loop(tiny_folder, scheduler, evaluations, numpy_backend):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=numpy_backend)
    result = pipe(PROMPT, steps=3, seed=5, scheduler=scheduler, guidance_scale=1.0)
    assert result.unet_evaluations == evaluations
    assert np.isfinite(result.latents).all() and result.latents.std() > 0.1


def test_generate_command(tiny_folder, tmp_path, capsys):
    out, timings = tmp_path / "apple.png", tmp_path / "timings.json"
    assert generate(["--weights", str(tiny_folder), "--prompt", PROMPT, "--steps", "2", "--backend", "numpy",
                     "--optimizations", "paper", "--out", str(out), "--json", str(timings), "--no-progress"]) == 0
    import matplotlib.pyplot as plt

    assert plt.imread(out).shape[:2] == (16, 16)
    report = json.loads(timings.read_text())
    assert set(report["components"]) == {"text_encoder", "unet", "decoder"}
    assert len(report["components"]["unet"]["seconds"]) == 3
    printed = capsys.readouterr().out
    for line in ("text encoder", "UNet, first iteration", "UNet, median iteration", "image decoder", "total"):
        assert line in printed


def test_generate_command_tiny_on_opencl(tmp_path, capsys):
    pytest.importorskip("pyopencl")
    out = tmp_path / "tiny.png"
    assert generate(["--tiny", "--backend", "opencl", "--steps", "2", "--warmup", "--out", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "MiB" in printed  # OpenCL reports its peak memory per component


def test_pipeline_errors(tiny_folder, tmp_path, numpy_backend):
    with pytest.raises(FileNotFoundError, match="model_index.json: no such file"):
        StableDiffusionPipeline.from_pretrained(tmp_path, backend=numpy_backend)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, backend=numpy_backend)
    with pytest.raises(ValueError, match="height, width: expected multiples of 4"):
        pipe(PROMPT, steps=1, height=18, width=16)
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        pipe(PROMPT, steps=0)


def test_pipeline_refuses_a_backend_name(tiny_folder):
    """The pipeline runs on a backend object (its optimizations set where it is constructed); a
    name is refused before any file is read, with an error that says what to pass."""
    name_refused = (r"backend: expected a backend object such as backends.get_backend\('opencl'\), "
                    r"got the string 'opencl'")
    with pytest.raises(TypeError, match=name_refused):
        StableDiffusionPipeline.from_pretrained(tiny_folder, backend="opencl")
    with pytest.raises(TypeError, match=name_refused):
        StableDiffusionPipeline.from_pretrained("no/such/folder", backend="opencl")
    with pytest.raises(TypeError, match=name_refused):
        StableDiffusionPipeline.random(backend="opencl")
    with pytest.raises(TypeError, match=name_refused):
        tiny_pipeline(backend="opencl")

"""StableDiffusionPipeline.__call__ checks its arguments before any work: a wrong type raises
TypeError, a wrong value ValueError, each naming the argument and what was expected."""

import numpy as np
import pytest

from reference.sd.pipeline import CALL_ARGUMENTS, check_call_argument
from reference.sd.tiny import tiny_pipeline


@pytest.fixture(scope="module")
def pipe(numpy_backend):
    return tiny_pipeline(backend=numpy_backend)


@pytest.fixture
def no_work(pipe, monkeypatch):
    """The text encoder fails the test if it runs: the checks must come before any work."""
    def text_encoder(*args, **kwargs):
        raise AssertionError("the text encoder ran before the arguments were checked")

    monkeypatch.setattr(pipe, "text_encoder", text_encoder)
    return pipe


BAD = [
    ("guidance_scale", float("nan"), ValueError, "expected a finite number >= 0, got nan"),
    ("guidance_scale", float("inf"), ValueError, "expected a finite number >= 0, got inf"),
    ("guidance_scale", -1.0, ValueError, "expected a finite number >= 0, got -1.0"),
    ("guidance_scale", True, TypeError, "expected a finite number >= 0, got True"),
    ("guidance_scale", "7.5", TypeError, "expected a finite number >= 0, got '7.5'"),
    ("seed", -1, ValueError, r"expected an int in \[0, 2\*\*64\), got -1"),
    ("seed", 2**64, ValueError, rf"expected an int in \[0, 2\*\*64\), got {2**64}"),
    ("seed", 1.0, TypeError, r"expected an int in \[0, 2\*\*64\), got 1.0"),
    ("seed", False, TypeError, r"expected an int in \[0, 2\*\*64\), got False"),
    ("steps", 0, ValueError, "expected a positive int, got 0"),
    ("steps", 2.0, TypeError, "expected a positive int, got 2.0"),
    ("steps", True, TypeError, "expected a positive int, got True"),
    ("prompt", None, TypeError, "expected a str, got None"),
    ("prompt", ["a", "b"], TypeError, r"expected a str, got \['a', 'b'\]"),
    ("negative_prompt", None, TypeError, "expected a str, got None"),
    ("height", 0, ValueError, "expected None or a positive int, got 0"),
    ("height", -16, ValueError, "expected None or a positive int, got -16"),
    ("width", 16.0, TypeError, "expected None or a positive int, got 16.0"),
    ("max_unet_evaluations", 0, ValueError, "expected None or a positive int, got 0"),
    ("max_unet_evaluations", True, TypeError, "expected None or a positive int, got True"),
    ("scheduler", "dpm", ValueError, "expected None or one of 'ddim', 'euler', 'pndm', got 'dpm'"),
    ("scheduler", 1, TypeError, "expected None or one of 'ddim', 'euler', 'pndm', got 1"),
]


@pytest.mark.parametrize("name, value, error, message", BAD, ids=[f"{n}={v!r}" for n, v, _, _ in BAD])
def test_bad_argument_is_refused_before_any_work(no_work, name, value, error, message):
    call = {"prompt": "a red apple", "steps": 1, name: value}
    with pytest.raises(error, match=f"^{name}: {message}$"):
        no_work(**call)


def test_every_argument_has_a_rule():
    import inspect

    from reference.sd.pipeline import StableDiffusionPipeline

    # progress is any truth value; latents, an array, is checked against the latent shape
    parameters = set(inspect.signature(StableDiffusionPipeline.__call__).parameters) - {"self", "progress", "latents"}
    assert parameters == set(CALL_ARGUMENTS)


@pytest.mark.parametrize("latents", [np.ones((1, 4, 4, 4), np.float32), np.ones((1, 4, 8, 8), np.int32),
                                     np.full((1, 4, 8, 8), np.nan, np.float32), [[0.0]]],
                         ids=["shape", "int", "nan", "list"])
def test_bad_initial_latents_are_refused_before_any_work(no_work, latents):
    with pytest.raises(ValueError, match=r"^latents: expected a finite float array of shape \(1, 4, 8, 8\)"):
        no_work("a red apple", steps=1, latents=latents)


def test_initial_latents_replace_the_seeds_noise(pipe):
    """latents= is the seed's noise when it is that noise (diffusers' latents= argument)."""
    noise = np.random.default_rng(5).standard_normal((1, 4, 8, 8)).astype(np.float32)
    given = pipe("a red apple", steps=2, seed=0, latents=noise).latents
    np.testing.assert_array_equal(given, pipe("a red apple", steps=2, seed=5).latents)
    assert not np.allclose(given, pipe("a red apple", steps=2, seed=0).latents)


def test_numpy_scalars_and_edges_are_accepted():
    assert check_call_argument("seed", np.uint64(2**64 - 1)) == 2**64 - 1
    assert type(check_call_argument("seed", np.int32(3))) is int
    assert check_call_argument("guidance_scale", 0) == 0.0
    assert type(check_call_argument("guidance_scale", np.float32(7.5))) is float
    assert check_call_argument("height", None) is None


@pytest.mark.parametrize("guidance_scale, batch", [(0.0, 1), (1.0, 1), (1.5, 2), (np.float64(7.5), 2)])
def test_guidance_above_one_only(pipe, guidance_scale, batch):
    """diffusers' do_classifier_free_guidance: guidance_scale > 1; <= 1 runs the prompt alone."""
    result = pipe("a red apple", steps=1, guidance_scale=guidance_scale, seed=np.uint64(2**64 - 1),
                  max_unet_evaluations=1)
    assert f"batch {batch})" in result.description
    assert np.isfinite(result.latents).all()

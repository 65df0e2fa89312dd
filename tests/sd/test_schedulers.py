"""The SD samplers against formulas written out here: schedules, timesteps, one step of each,
PLMS's multistep combinations, exact-noise sanity runs, guidance, and bad configs."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.sd.schedulers import (
    SCHEDULERS,
    SD14_SCHEDULER_CONFIG,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    classifier_free_guidance,
    make_scheduler,
)

T = 1000
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def sd_alpha_bar():
    """SD 1.x's alpha_bar_t, one product at a time."""
    out, prod = [], 1.0
    for i in range(T):
        beta = (math.sqrt(0.00085) + i / (T - 1) * (math.sqrt(0.012) - math.sqrt(0.00085))) ** 2
        prod *= 1 - beta
        out.append(prod)
    return np.array(out)


AB = sd_alpha_bar()
SIGMA = np.sqrt((1 - AB) / AB)


def sigma_at(t):
    """Linear interpolation of the training sigmas at a fractional timestep."""
    lo = min(int(math.floor(t)), T - 2)
    w = t - lo
    return (1 - w) * SIGMA[lo] + w * SIGMA[lo + 1]


def ddim_update(x, e, a, a_prev):
    x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e


def randn(seed, shape=(1, 4, 3, 5)):
    return np.random.default_rng(seed).standard_normal(shape)


def close(actual, expected, rtol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


# ----------------------------------------------------------------------------- schedules


def test_betas_and_alphas_cumprod():
    for name in SCHEDULERS:
        s = make_scheduler(name)
        close(s.alphas_cumprod, AB)
    linear = DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    close(linear.betas, 1e-4 + np.arange(T) / (T - 1) * (0.02 - 1e-4))


def test_pndm_20_steps_is_the_known_sd_schedule():
    s = make_scheduler("pndm")
    s.set_timesteps(20)
    assert s.timesteps.tolist() == [951, 901, 901] + list(range(851, 0, -50))
    assert s.timesteps.dtype == np.int64
    assert s.num_model_evaluations == 21


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 50, 333, 1000])
def test_leading_timesteps(n):
    expected = [k * (T // n) + 1 for k in reversed(range(n))]
    ddim, pndm = make_scheduler("ddim"), make_scheduler("pndm")
    ddim.set_timesteps(n)
    pndm.set_timesteps(n)
    assert ddim.timesteps.tolist() == expected
    assert pndm.timesteps.tolist() == expected[:1] + expected[1:2] + expected[1:]
    assert pndm.num_model_evaluations == (n + 1 if n > 1 else 1)
    euler = make_scheduler("euler", dict(SD14_SCHEDULER_CONFIG, timestep_spacing="leading"))
    euler.set_timesteps(n)
    assert euler.timesteps.tolist() == [float(t) for t in expected]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 20, 50, 1000])
def test_trailing_and_linspace_timesteps(n):
    trailing = [round(T - k * T / n) - 1 for k in range(n)]  # Python's round: half to even, as numpy
    linspace = [(T - 1) * (n - 1 - k) / (n - 1) if n > 1 else 0.0 for k in range(n)]
    for name in ("ddim", "pndm", "euler"):
        s = make_scheduler(name, dict(SD14_SCHEDULER_CONFIG, timestep_spacing="trailing"))
        s.set_timesteps(n)
        got = s.timesteps.tolist()
        if name == "pndm":
            assert got == trailing[:1] + trailing[1:2] + trailing[1:]
        else:
            assert got == trailing
        s = make_scheduler(name, dict(SD14_SCHEDULER_CONFIG, timestep_spacing="linspace"))
        s.set_timesteps(n)
        if name == "euler":
            close(s.timesteps, np.array(linspace), rtol=1e-14)
        else:
            want = [round(t) for t in linspace]
            assert s.timesteps.tolist() == (want[:1] + want[1:2] + want[1:] if name == "pndm" else want)
    # Euler defaults to "linspace" when the config says nothing (SD 1.4's does not).
    e = make_scheduler("euler")
    e.set_timesteps(n)
    close(e.timesteps, np.array(linspace), rtol=1e-14)


def test_ddim_50_and_euler_known_values():
    d = make_scheduler("ddim")
    d.set_timesteps(50)
    assert d.timesteps[:3].tolist() == [981, 961, 941] and d.timesteps[-1] == 1
    e = make_scheduler("euler")
    e.set_timesteps(20)
    assert e.timesteps[0] == 999.0 and e.timesteps[-1] == 0.0
    # diffusers' float32 values for SD: sigma_max = 14.6146, first steps 10.7468, 8.0815
    np.testing.assert_allclose(e.sigmas[:3], [14.6146, 10.7468, 8.0815], atol=1e-4)
    assert e.sigmas[-1] == 0.0 and len(e.sigmas) == 21
    assert e.init_noise_sigma == pytest.approx(SIGMA[-1], rel=1e-12)
    lead = make_scheduler("euler", dict(SD14_SCHEDULER_CONFIG, timestep_spacing="leading"))
    lead.set_timesteps(20)
    assert lead.init_noise_sigma == pytest.approx(math.sqrt(sigma_at(951) ** 2 + 1), rel=1e-12)


# ----------------------------------------------------------------------------- one step each


@given(seed=seeds, n=st.sampled_from([10, 20, 50]), k=st.integers(0, 9))
def test_ddim_step(seed, n, k):
    s = make_scheduler("ddim")
    s.set_timesteps(n)
    t = int(s.timesteps[k])
    x, e = randn(seed), randn(seed + 1)
    a_prev = AB[t - T // n] if t - T // n >= 0 else AB[0]  # set_alpha_to_one=False
    close(s.step(e, t, x), ddim_update(x, e, AB[t], a_prev))
    out32 = s.step(e.astype(np.float32), t, x.astype(np.float32))
    assert out32.dtype == np.float32
    close(out32, ddim_update(x, e, AB[t], a_prev), rtol=1e-5)


def test_ddim_final_step_and_clipping():
    x, e = randn(0), randn(1)
    one = DDIMScheduler.from_config(dict(SD14_SCHEDULER_CONFIG, set_alpha_to_one=True))
    one.set_timesteps(20)
    close(one.step(e, 1, x), ddim_update(x, e, AB[1], 1.0))
    clipped = DDIMScheduler.from_config(dict(SD14_SCHEDULER_CONFIG, clip_sample=True, clip_sample_range=0.5))
    clipped.set_timesteps(20)
    t = 501
    x0 = np.clip((x - math.sqrt(1 - AB[t]) * e) / math.sqrt(AB[t]), -0.5, 0.5)
    close(clipped.step(e, t, x), math.sqrt(AB[t - 50]) * x0 + math.sqrt(1 - AB[t - 50]) * e)


@given(seed=seeds)
def test_pndm_plms_combinations(seed):
    """Evaluations 0, 1, 2, 3, 4 use e0, (e0 + e1)/2 from the kept x, then AB2, AB3, AB4
    over the stored outputs e0, e2, e3, e4 (e1 is never stored)."""
    n, r = 20, T // 20
    s = make_scheduler("pndm")
    s.set_timesteps(n)
    ts = s.timesteps.tolist()
    es = [randn(seed + i) for i in range(5)]
    xs = [randn(seed + 10 + i) for i in range(5)]  # arbitrary samples handed to each step
    outs = [s.step(es[i], ts[i], xs[i]) for i in range(5)]
    a = lambda t: AB[t]  # noqa: E731
    close(outs[0], ddim_update(xs[0], es[0], a(951), a(901)))
    close(outs[1], ddim_update(xs[0], (es[0] + es[1]) / 2, a(951), a(901)))
    close(outs[2], ddim_update(xs[2], (3 * es[2] - es[0]) / 2, a(901), a(851)))
    close(outs[3], ddim_update(xs[3], (23 * es[3] - 16 * es[2] + 5 * es[0]) / 12, a(851), a(801)))
    ab4 = (55 * es[4] - 59 * es[3] + 37 * es[2] - 9 * es[0]) / 24
    close(outs[4], ddim_update(xs[4], ab4, a(801), a(801 - r)))
    # And AB4 over the last four stored outputs from then on.
    e5, x5 = randn(seed + 5), randn(seed + 15)
    ab4 = (55 * e5 - 59 * es[4] + 37 * es[3] - 9 * es[2]) / 24
    close(s.step(e5, ts[5], x5), ddim_update(x5, ab4, a(751), a(701)))


def test_pndm_last_step_uses_final_alpha_and_set_timesteps_resets():
    s = make_scheduler("pndm")
    s.set_timesteps(2)  # timesteps [501, 1, 1]: the last step goes to t = 1 - 500 < 0
    assert s.timesteps.tolist() == [501, 1, 1]
    x = randn(3)
    outs = [s.step(randn(i), t, x) for i, t in enumerate(s.timesteps)]
    close(outs[2], ddim_update(x, (3 * randn(2) - randn(0)) / 2, AB[1], AB[0]))
    s.set_timesteps(2)
    again = [s.step(randn(i), t, x) for i, t in enumerate(s.timesteps)]
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a, b)


@given(seed=seeds, k=st.integers(0, 19))
def test_euler_step(seed, k):
    s = make_scheduler("euler")
    s.set_timesteps(20)
    s._step_index = None
    t = float(s.timesteps[k])
    x, e = randn(seed), randn(seed + 1)
    sigma = sigma_at(t)
    sigma_next = sigma_at(float(s.timesteps[k + 1])) if k < 19 else 0.0
    close(s.scale_model_input(x, t), x / math.sqrt(sigma**2 + 1))
    close(s.step(e, t, x), x + e * (sigma_next - sigma))
    assert s.step_index == k + 1


# ----------------------------------------------------------------------------- exact-noise runs


@pytest.mark.parametrize("name", ["ddim", "pndm"])
@pytest.mark.parametrize("n", [1, 4, 20])
def test_exact_noise_recovers_x0(name, n):
    """With the true epsilon of x_t = sqrt(a) x0 + sqrt(1 - a) eps, the ODE samplers land on
    x0 (set_alpha_to_one) or on the t = 0 noise level (SD's config)."""
    x0, eps = randn(0), randn(1)
    for to_one in (True, False):
        s = make_scheduler(name, dict(SD14_SCHEDULER_CONFIG, set_alpha_to_one=to_one))
        s.set_timesteps(n)
        t0 = int(s.timesteps[0])
        x = math.sqrt(AB[t0]) * x0 + math.sqrt(1 - AB[t0]) * eps
        for t in s.timesteps:
            model = (x - math.sqrt(AB[t]) * x0) / math.sqrt(1 - AB[t])
            x = s.step(model, t, s.scale_model_input(x, t))
        expected = x0 if to_one else math.sqrt(AB[0]) * x0 + math.sqrt(1 - AB[0]) * eps
        close(x, expected, rtol=1e-10)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_euler_exact_noise_recovers_x0(spacing):
    x0, eps = randn(0), randn(1)
    s = make_scheduler("euler", dict(SD14_SCHEDULER_CONFIG, timestep_spacing=spacing))
    s.set_timesteps(15)
    sigma0 = sigma_at(float(s.timesteps[0]))
    x = x0 + sigma0 * eps  # = latents * init_noise_sigma for linspace/trailing
    for t in s.timesteps:
        sigma = sigma_at(float(t))
        x_in = s.scale_model_input(x, t)  # = sqrt(a) x0 + sqrt(1 - a) eps, a = 1 / (1 + sigma^2)
        model = (x_in * math.sqrt(1 + sigma**2) - x0) / sigma
        x = s.step(model, t, x)
    close(x, x0, rtol=1e-10)


# ----------------------------------------------------------------------------- guidance, config


@given(seed=seeds, scale=st.sampled_from([0.0, 1.0, 7.5]))
def test_classifier_free_guidance(seed, scale):
    u, c = randn(seed), randn(seed + 1)
    close(classifier_free_guidance(u, c, scale), u + scale * (c - u))
    assert classifier_free_guidance(u.astype(np.float16), c.astype(np.float16), scale).dtype == np.float16
    if scale == 1.0:
        close(classifier_free_guidance(u, c, scale), c)


def test_from_config_ignores_private_and_foreign_keys():
    config = dict(SD14_SCHEDULER_CONFIG, _diffusers_version="0.2.2", use_karras_sigmas=False)
    for name, cls in SCHEDULERS.items():
        s = make_scheduler(name, config)
        assert isinstance(s, cls)
        assert s.steps_offset == 1
    # Missing keys take diffusers' defaults for the class.
    assert DDIMScheduler.from_config({}).clip_sample is True
    assert DDIMScheduler.from_config({}).final_alpha_cumprod == 1.0
    assert EulerDiscreteScheduler.from_config({}).timestep_spacing == "linspace"


@pytest.mark.parametrize("name, key, value, match", [
    ("pndm", "skip_prk_steps", False, "skip_prk_steps.*not implemented"),
    ("ddim", "prediction_type", "v_prediction", "prediction_type"),
    ("euler", "prediction_type", "sample", "prediction_type"),
    ("pndm", "beta_schedule", "squaredcos_cap_v2", "beta_schedule"),
    ("ddim", "trained_betas", [0.1] * 1000, "trained_betas"),
    ("euler", "timestep_spacing", "uniform", "timestep_spacing"),
    ("ddim", "thresholding", True, "thresholding"),
    ("ddim", "rescale_betas_zero_snr", True, "rescale_betas_zero_snr"),
    ("euler", "use_karras_sigmas", True, "use_karras_sigmas"),
    ("euler", "interpolation_type", "log_linear", "interpolation_type"),
    ("pndm", "steps_offset", -1, "steps_offset"),
    ("ddim", "nonsense_key", 1, "nonsense_key"),
])
def test_bad_config(name, key, value, match):
    with pytest.raises(ValueError, match=match):
        make_scheduler(name, dict(SD14_SCHEDULER_CONFIG, **{key: value}))


def test_bad_calls():
    with pytest.raises(ValueError, match="name"):
        make_scheduler("lms")
    with pytest.raises(ValueError, match="skip_prk_steps"):
        PNDMScheduler()  # diffusers' default is the unimplemented Runge-Kutta warm-up
    for name in SCHEDULERS:
        s = make_scheduler(name)
        with pytest.raises(RuntimeError, match="set_timesteps"):
            s.step(randn(0), 1, randn(1))
        with pytest.raises(ValueError, match="num_inference_steps"):
            s.set_timesteps(0)
        with pytest.raises(ValueError, match="num_inference_steps"):
            s.set_timesteps(T + 1)
        s.set_timesteps(5)
        with pytest.raises(ValueError, match="model_output"):
            s.step(randn(0, (1, 4, 3, 4)), s.timesteps[0], randn(1))
    e = make_scheduler("euler")
    e.set_timesteps(5)
    with pytest.raises(ValueError, match="timestep"):
        e.step(randn(0), 123.5, randn(1))
    with pytest.raises(ValueError, match="noise_text"):
        classifier_free_guidance(randn(0), randn(1, (2, 2)), 7.5)

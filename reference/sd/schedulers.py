"""diffusers' samplers for Stable Diffusion 1.x in NumPy: PNDM (PLMS), DDIM (eta = 0), Euler.

Noise schedule (DDPM). With T = num_train_timesteps training steps,

    "scaled_linear" (SD):  beta_i = linspace(sqrt(beta_start), sqrt(beta_end), T)_i ** 2
    "linear":              beta_i = linspace(beta_start, beta_end, T)_i
    alpha_bar_t = prod_{i <= t} (1 - beta_i),     x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

The UNet predicts eps ("epsilon" prediction, SD 1.x). A sampler walks N inference timesteps
from high noise to t = 0; their spacing follows diffusers (``timestep_spacing``):

    "leading":   t_k = k * (T // N) + steps_offset,                    k = 0..N-1
    "linspace":  t_k = round(linspace(0, T - 1, N))_k
    "trailing":  t_k = round(arange(T, 0, -T / N))_k - 1

visited in decreasing order. PNDM and DDIM step from t to t - T // N whatever the spacing (as in
diffusers), with alpha_bar_{t<0} = final_alpha_cumprod = 1 if set_alpha_to_one else alpha_bar_0.

DDIM (eta = 0), with a = alpha_bar_t, a' = alpha_bar_{t - T//N}, e = the model output:

    x0_hat = (x_t - sqrt(1 - a) e) / sqrt(a)           (clipped to +-clip_sample_range if clip_sample)
    x_prev = sqrt(a') x0_hat + sqrt(1 - a') e

PNDM's transfer (formula (9) of Liu et al. 2022) is the same map written differently:

    x_prev = sqrt(a' / a) x_t - (a' - a) e / (a sqrt(1 - a') + sqrt(a (1 - a) a'))

PLMS (``skip_prk_steps=True``, the only mode here) feeds it a linear-multistep combination of the
model outputs e_0, e_1, ... (diffusers' ``step_plms``, counter and ``ets`` logic included):

    evaluation 0 (t_0):       e = e_0                            x at t_0 -> t_0 - r, kept
    evaluation 1 (t_1):       e = (e_0 + e_1) / 2, restarting from the kept x at t_0 (Heun-like)
    then (e_1 is not stored): e = (3 E1 - E2) / 2, (23 E1 - 16 E2 + 5 E3) / 12,
                              (55 E1 - 59 E2 + 37 E3 - 9 E4) / 24  (Adams-Bashforth 2, 3, 4)

with E1 the newest stored output. The schedule repeats t_1, so N steps cost N + 1 model
evaluations: for SD 1.4's 20 steps, timesteps = [951, 901, 901, 851, ..., 51, 1].

Euler (Karras et al. 2022, Algorithm 2 with s_churn = 0) works in the variance-exploding
parametrization x = x_t / sqrt(alpha_bar_t), sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t).
sigma is interpolated linearly in t at the (possibly fractional) timesteps, and a final 0
appended. The model sees x / sqrt(sigma^2 + 1) (``scale_model_input``) and

    x_prev = x + e (sigma_next - sigma)
    init_noise_sigma = max sigma ("linspace", "trailing") or sqrt(max sigma^2 + 1) ("leading").

Precision: schedules and steps are computed in float64 (diffusers uses float32 tensors, so its
alpha_bar differ from ours by float32 rounding, ~1e-7 relative; Euler's fractional timesteps are
float32 in diffusers and float64 here). ``step`` returns the sample's dtype.

Guidance: ``classifier_free_guidance(e_uncond, e_text, s) = e_uncond + s (e_text - e_uncond)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

__all__ = [
    "SD14_SCHEDULER_CONFIG",
    "PNDMScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "SCHEDULERS",
    "make_scheduler",
    "classifier_free_guidance",
]

#: ``scheduler/scheduler_config.json`` of CompVis/stable-diffusion-v1-4.
SD14_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

SPACINGS = ("leading", "linspace", "trailing")

#: Parameters of other diffusers schedulers. ``from_config`` ignores them when the class at hand
#: has no such parameter (diffusers does the same), so one config can build every scheduler.
_OTHER_SCHEDULER_KEYS = frozenset({
    "skip_prk_steps", "set_alpha_to_one", "clip_sample", "clip_sample_range", "thresholding",
    "dynamic_thresholding_ratio", "sample_max_value", "rescale_betas_zero_snr", "interpolation_type",
    "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "sigma_min", "sigma_max",
    "timestep_type", "final_sigmas_type", "variance_type", "solver_order", "algorithm_type",
    "solver_type", "lower_order_final", "euler_at_final", "use_lu_lambdas", "use_flow_sigmas",
    "flow_shift", "lambda_min_clipped", "predict_x0", "solver_p", "use_dynamic_shifting", "shift",
    "base_shift", "max_shift",
})


# ----------------------------------------------------------------------------- shared pieces


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")


def _check_off(name: str, value, off=(False, None)) -> None:
    """A diffusers option this reference does not implement must stay off."""
    if value not in off:
        raise ValueError(f"{name}: {value!r} is not supported by this reference (only {off[0]!r})")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def make_betas(num_train_timesteps: int, beta_start: float, beta_end: float,
               beta_schedule: str, trained_betas=None) -> np.ndarray:
    """The DDPM betas (float64) of a "linear" or "scaled_linear" schedule."""
    if trained_betas is not None:
        raise ValueError("trained_betas: only None is supported (use beta_start/beta_end/beta_schedule)")
    _check_choice("beta_schedule", beta_schedule, ("scaled_linear", "linear"))
    if beta_schedule == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    return np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2


def spaced_timesteps(num_inference_steps: int, num_train_timesteps: int, spacing: str,
                     steps_offset: int = 0) -> np.ndarray:
    """The N inference timesteps, *increasing*, as float64 (see the module docstring)."""
    n, t = num_inference_steps, num_train_timesteps
    if spacing == "leading":
        return (np.arange(0, n) * (t // n)).round().astype(np.float64) + steps_offset
    if spacing == "linspace":
        return np.linspace(0, t - 1, n, dtype=np.float64)
    if spacing == "trailing":
        return np.round(np.arange(t, 0, -t / n))[::-1].astype(np.float64) - 1
    raise ValueError(f"timestep_spacing: expected one of {', '.join(map(repr, SPACINGS))}, got {spacing!r}")


def _as_arrays(model_output, sample):
    model_output, sample = np.asarray(model_output), np.asarray(sample)
    if model_output.shape != sample.shape:
        raise ValueError(
            f"model_output: expected the sample's shape {sample.shape}, got {model_output.shape}")
    if not np.issubdtype(sample.dtype, np.floating):
        raise TypeError(f"sample: expected a floating dtype, got {sample.dtype}")
    return model_output.astype(np.float64), sample


class _Scheduler:
    """Config handling and the timestep bookkeeping the three samplers share."""

    #: diffusers' ``order``: how many model outputs one ``step`` consumes (1 for all three).
    #: The number of UNet evaluations is ``num_model_evaluations`` (N + 1 for PLMS).
    order = 1

    def _init_schedule(self, num_train_timesteps, beta_start, beta_end, beta_schedule,
                       trained_betas, prediction_type, timestep_spacing, steps_offset):
        self.num_train_timesteps = _check_int("num_train_timesteps", num_train_timesteps, 1)
        _check_choice("prediction_type", prediction_type, ("epsilon",))
        _check_choice("timestep_spacing", timestep_spacing, SPACINGS)
        self.steps_offset = _check_int("steps_offset", steps_offset, 0)
        self.timestep_spacing = timestep_spacing
        self.betas = make_betas(self.num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)
        self.num_inference_steps = None
        self.timesteps = None

    @classmethod
    def from_config(cls, config: Mapping | None = None):
        """Build from a diffusers ``scheduler_config.json`` dict.

        Keys starting with "_" are ignored, and so are parameters of other diffusers schedulers
        that this class does not have (e.g. ``skip_prk_steps`` for DDIM): they do not change its
        math, and diffusers ignores them too. Missing keys take diffusers' defaults for this class.
        An unknown key, or a value this reference does not implement, raises ValueError."""
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise TypeError(f"config: expected a dict, got {type(config).__name__}")
        own = inspect.signature(cls.__init__).parameters
        kwargs = {}
        for key, value in config.items():
            if not isinstance(key, str):
                raise ValueError(f"config: keys must be strings, got {key!r}")
            if key in own and key != "self":
                kwargs[key] = value
            elif not key.startswith("_") and key not in _OTHER_SCHEDULER_KEYS:
                raise ValueError(f"config: unknown scheduler key {key!r}")
        return cls(**kwargs)

    def _check_steps(self, num_inference_steps):
        n = _check_int("num_inference_steps", num_inference_steps, 1)
        if n > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps: {n} exceeds num_train_timesteps = {self.num_train_timesteps}")
        return n

    def _require_timesteps(self):
        if self.num_inference_steps is None:
            raise RuntimeError(f"{type(self).__name__}: call set_timesteps(num_inference_steps) before step")

    @property
    def num_model_evaluations(self) -> int:
        """How many UNet evaluations the schedule set by ``set_timesteps`` costs."""
        self._require_timesteps()
        return len(self.timesteps)

    def add_noise(self, original, noise, timestep):
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps for an integer timestep."""
        a = self.alphas_cumprod[int(timestep)]
        original = np.asarray(original)
        out = np.sqrt(a) * original.astype(np.float64) + np.sqrt(1 - a) * np.asarray(noise, np.float64)
        return out.astype(original.dtype)

    def scale_model_input(self, sample, timestep=None):
        """The UNet's input for ``sample`` at ``timestep``: the sample itself (PNDM, DDIM)."""
        return sample


# ----------------------------------------------------------------------------- PNDM


class PNDMScheduler(_Scheduler):
    """diffusers' PNDMScheduler with ``skip_prk_steps=True`` (PLMS), the SD 1.x default sampler."""

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        skip_prk_steps: bool = False,
        set_alpha_to_one: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
    ):
        if not skip_prk_steps:
            raise ValueError(
                "skip_prk_steps: False (PNDM's Runge-Kutta warm-up) is not implemented; pass "
                "skip_prk_steps=True as SD 1.x's scheduler_config.json does (make_scheduler('pndm'))")
        self._init_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                            prediction_type, timestep_spacing, steps_offset)
        self.skip_prk_steps = True
        self.set_alpha_to_one = bool(set_alpha_to_one)
        self.final_alpha_cumprod = 1.0 if set_alpha_to_one else float(self.alphas_cumprod[0])
        self.init_noise_sigma = 1.0
        self.config = dict(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule, trained_betas=None, skip_prk_steps=True,
            set_alpha_to_one=self.set_alpha_to_one, prediction_type=prediction_type,
            timestep_spacing=timestep_spacing, steps_offset=steps_offset)
        self._reset()

    def _reset(self):
        self.counter = 0
        self.ets: list[np.ndarray] = []
        self.cur_sample = None

    def set_timesteps(self, num_inference_steps: int) -> None:
        """PLMS timesteps: the spaced ones, decreasing, with the second one repeated."""
        n = self._check_steps(num_inference_steps)
        self.num_inference_steps = n
        ts = spaced_timesteps(n, self.num_train_timesteps, self.timestep_spacing, self.steps_offset)
        ts = ts.round().astype(np.int64)
        self.timesteps = np.concatenate([ts[:-1], ts[-2:-1], ts[-1:]])[::-1].copy()
        self._reset()

    def _alpha_bar(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def _transfer(self, sample, timestep: int, prev_timestep: int, e):
        """PNDM's formula (9): x_t -> x_{prev} given the noise estimate e."""
        a, a_prev = self._alpha_bar(timestep), self._alpha_bar(prev_timestep)
        denominator = a * (1 - a_prev) ** 0.5 + (a * (1 - a) * a_prev) ** 0.5
        return (a_prev / a) ** 0.5 * sample - (a_prev - a) * e / denominator

    def step(self, model_output, timestep, sample):
        """One PLMS step (diffusers' ``step_plms``); returns the previous sample."""
        self._require_timesteps()
        e, x = _as_arrays(model_output, sample)
        x64 = x.astype(np.float64)
        timestep = int(timestep)
        ratio = self.num_train_timesteps // self.num_inference_steps
        prev_timestep = timestep - ratio
        if self.counter != 1:
            self.ets = self.ets[-3:] + [e]
        else:  # the repeated timestep: redo the first step from x at t_0 with the averaged slope
            prev_timestep = timestep
            timestep = timestep + ratio

        ets = self.ets
        if len(ets) == 1 and self.counter == 0:
            self.cur_sample = x64
        elif len(ets) == 1 and self.counter == 1:
            e = (e + ets[-1]) / 2
            x64 = self.cur_sample
            self.cur_sample = None
        elif len(ets) == 2:
            e = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            e = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            e = (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4]) / 24

        prev = self._transfer(x64, timestep, prev_timestep, e)
        self.counter += 1
        return prev.astype(x.dtype)


# ----------------------------------------------------------------------------- DDIM


class DDIMScheduler(_Scheduler):
    """diffusers' DDIMScheduler, deterministic (eta = 0)."""

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ):
        # dynamic_thresholding_ratio and sample_max_value only matter with thresholding=True.
        _check_off("thresholding", thresholding)
        _check_off("rescale_betas_zero_snr", rescale_betas_zero_snr)
        self._init_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                            prediction_type, timestep_spacing, steps_offset)
        self.clip_sample = bool(clip_sample)
        self.clip_sample_range = float(clip_sample_range)
        self.set_alpha_to_one = bool(set_alpha_to_one)
        self.final_alpha_cumprod = 1.0 if set_alpha_to_one else float(self.alphas_cumprod[0])
        self.init_noise_sigma = 1.0
        self.config = dict(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule, trained_betas=None, clip_sample=self.clip_sample,
            set_alpha_to_one=self.set_alpha_to_one, steps_offset=steps_offset,
            prediction_type=prediction_type, thresholding=False,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range, sample_max_value=sample_max_value,
            timestep_spacing=timestep_spacing, rescale_betas_zero_snr=False)

    def set_timesteps(self, num_inference_steps: int) -> None:
        n = self._check_steps(num_inference_steps)
        self.num_inference_steps = n
        ts = spaced_timesteps(n, self.num_train_timesteps, self.timestep_spacing, self.steps_offset)
        self.timesteps = ts.round()[::-1].astype(np.int64).copy()

    def step(self, model_output, timestep, sample):
        """x_t -> x_{t - T//N} by DDIM with eta = 0 (see the module docstring)."""
        self._require_timesteps()
        e, x = _as_arrays(model_output, sample)
        timestep = int(timestep)
        prev_timestep = timestep - self.num_train_timesteps // self.num_inference_steps
        a = float(self.alphas_cumprod[timestep])
        a_prev = float(self.alphas_cumprod[prev_timestep]) if prev_timestep >= 0 else self.final_alpha_cumprod
        x0 = (x.astype(np.float64) - (1 - a) ** 0.5 * e) / a**0.5
        if self.clip_sample:
            x0 = np.clip(x0, -self.clip_sample_range, self.clip_sample_range)
        prev = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * e
        return prev.astype(x.dtype)


# ----------------------------------------------------------------------------- Euler


class EulerDiscreteScheduler(_Scheduler):
    """diffusers' EulerDiscreteScheduler with s_churn = 0 (deterministic)."""

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        prediction_type: str = "epsilon",
        interpolation_type: str = "linear",
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        timestep_spacing: str = "linspace",
        timestep_type: str = "discrete",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        final_sigmas_type: str = "zero",
    ):
        # sigma_min / sigma_max only matter for the Karras/exponential/beta sigmas, and
        # timestep_type="continuous" only with v-prediction: neither changes the math here.
        _check_choice("interpolation_type", interpolation_type, ("linear",))
        _check_off("use_karras_sigmas", use_karras_sigmas)
        _check_off("use_exponential_sigmas", use_exponential_sigmas)
        _check_off("use_beta_sigmas", use_beta_sigmas)
        _check_off("rescale_betas_zero_snr", rescale_betas_zero_snr)
        _check_choice("timestep_type", timestep_type, ("discrete", "continuous"))
        _check_choice("final_sigmas_type", final_sigmas_type, ("zero", "sigma_min"))
        self._init_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                            prediction_type, timestep_spacing, steps_offset)
        self.final_sigmas_type = final_sigmas_type
        self.train_sigmas = np.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod)
        # Before set_timesteps, diffusers holds the full training schedule (decreasing) and a 0.
        self.sigmas = np.concatenate([self.train_sigmas[::-1], [0.0]])
        self._step_index = None
        self.config = dict(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule, trained_betas=None, prediction_type=prediction_type,
            interpolation_type=interpolation_type, use_karras_sigmas=False,
            use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=sigma_min,
            sigma_max=sigma_max, timestep_spacing=timestep_spacing, timestep_type=timestep_type,
            steps_offset=steps_offset, rescale_betas_zero_snr=False,
            final_sigmas_type=final_sigmas_type)

    @property
    def init_noise_sigma(self) -> float:
        """Standard deviation of the initial latents x_T (in the sigma parametrization)."""
        max_sigma = float(self.sigmas.max())
        if self.timestep_spacing in ("linspace", "trailing"):
            return max_sigma
        return (max_sigma**2 + 1) ** 0.5

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Decreasing float timesteps and their sigmas (linear interpolation in t), plus a final sigma."""
        n = self._check_steps(num_inference_steps)
        self.num_inference_steps = n
        ts = spaced_timesteps(n, self.num_train_timesteps, self.timestep_spacing, self.steps_offset)
        self.timesteps = ts[::-1].copy()
        sigmas = np.interp(self.timesteps, np.arange(self.num_train_timesteps), self.train_sigmas)
        last = self.train_sigmas[0] if self.final_sigmas_type == "sigma_min" else 0.0
        self.sigmas = np.concatenate([sigmas, [last]])
        self._step_index = None

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def _index_for(self, timestep) -> int:
        """diffusers' index_for_timestep: the position of ``timestep`` in the schedule (the
        second one if it occurs twice, so an img2img start does not skip a sigma)."""
        hits = np.flatnonzero(self.timesteps == float(timestep))
        if hits.size == 0:
            raise ValueError(f"timestep: {timestep!r} is not one of this scheduler's timesteps")
        return int(hits[1] if hits.size > 1 else hits[0])

    def _sigma(self, timestep) -> float:
        self._require_timesteps()
        if self._step_index is None:
            self._step_index = self._index_for(timestep)
        if self._step_index >= len(self.timesteps):
            raise RuntimeError("EulerDiscreteScheduler: the schedule is finished; call set_timesteps again")
        return float(self.sigmas[self._step_index])

    def scale_model_input(self, sample, timestep=None):
        """x / sqrt(sigma^2 + 1): the UNet's input at the current step."""
        if timestep is None:
            raise ValueError("timestep: EulerDiscreteScheduler.scale_model_input needs the timestep")
        sample = np.asarray(sample)
        sigma = self._sigma(timestep)
        return (sample.astype(np.float64) / (sigma**2 + 1) ** 0.5).astype(sample.dtype)

    def step(self, model_output, timestep, sample):
        """x -> x + e (sigma_next - sigma), then advance to the next sigma."""
        e, x = _as_arrays(model_output, sample)
        sigma = self._sigma(timestep)
        x64 = x.astype(np.float64)
        x0 = x64 - sigma * e                       # predicted original sample
        derivative = (x64 - x0) / sigma            # = e, kept in the ODE form for reading
        prev = x64 + derivative * (self.sigmas[self._step_index + 1] - sigma)
        self._step_index += 1
        return prev.astype(x.dtype)


# ----------------------------------------------------------------------------- registry


SCHEDULERS = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}


def make_scheduler(name: str, config: Mapping | None = None):
    """A scheduler by name ("pndm", "ddim", "euler") from a diffusers config dict; the default
    is SD 1.4's ``scheduler_config.json`` (``SD14_SCHEDULER_CONFIG``)."""
    if name not in SCHEDULERS:
        raise ValueError(f"name: expected one of {', '.join(map(repr, SCHEDULERS))}, got {name!r}")
    return SCHEDULERS[name].from_config(SD14_SCHEDULER_CONFIG if config is None else config)


def classifier_free_guidance(noise_uncond, noise_text, guidance_scale: float):
    """e_uncond + s (e_text - e_uncond) (Ho & Salimans, 2022); s = 1 gives e_text."""
    noise_uncond, noise_text = np.asarray(noise_uncond), np.asarray(noise_text)
    if noise_uncond.shape != noise_text.shape:
        raise ValueError(
            f"noise_text: expected the shape of noise_uncond {noise_uncond.shape}, got {noise_text.shape}")
    if noise_uncond.dtype != noise_text.dtype:
        raise TypeError(f"noise_text: dtype {noise_text.dtype} differs from noise_uncond's {noise_uncond.dtype}")
    u = noise_uncond.astype(np.float64)
    return (u + guidance_scale * (noise_text.astype(np.float64) - u)).astype(noise_uncond.dtype)

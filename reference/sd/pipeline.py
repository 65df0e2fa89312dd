"""Text to image with Stable Diffusion 1.x on any backend, timed per component as in the paper.

    from backends import get_backend

    pipe = StableDiffusionPipeline.from_pretrained("sd-v1-4", backend=get_backend("opencl", optimizations="paper"))
    result = pipe("a photograph of an astronaut riding a horse", steps=20, seed=0)
    result.image            # (512, 512, 3) uint8
    print(result.report())  # text encoder, UNet per iteration, decoder, total; peak memory each

The loop is diffusers' ``StableDiffusionPipeline.__call__``:

    c = text_encoder(tokens([negative_prompt, prompt]))          # one batch of 2 for guidance
    x = noise * scheduler.init_noise_sigma                       # (1, 4, H/8, W/8), from --seed
    for t in scheduler.timesteps:
        e_uncond, e_text = unet(scale_model_input([x, x], t), t, c)
        e = e_uncond + guidance_scale * (e_text - e_uncond)      # classifier-free guidance
        x = scheduler.step(e, t, x)
    image = decoder(x / scaling_factor)                          # diffusers' vae.decode

The networks run on the backend; the scheduler's arithmetic on the (1, 4, 64, 64) latents runs in
NumPy on the host (a few microseconds next to a UNet evaluation), so every iteration copies the
UNet's output to the host, which is also the synchronization point its timing needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .checkpoint import read_json, require_backend
from .schedulers import SCHEDULERS, SD14_SCHEDULER_CONFIG, classifier_free_guidance, make_scheduler
from .text_encoder import SD14_TEXT_ENCODER, TextEncoder
from .tokenizer import CLIPTokenizer
from .unet import SD14_UNET, UNet2DConditionModel
from .vae import SD14_VAE, VAEDecoder

#: diffusers' scheduler class names -> our names
SCHEDULER_NAMES = {"PNDMScheduler": "pndm", "DDIMScheduler": "ddim", "EulerDiscreteScheduler": "euler"}

SD14_CONFIGS = {"text_encoder": SD14_TEXT_ENCODER, "unet": SD14_UNET, "vae": SD14_VAE, "scheduler": SD14_SCHEDULER_CONFIG}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


class ArgumentRule(NamedTuple):
    expected: str  # the error's wording: "<name>: expected <expected>, got <value>"
    optional: bool  # None is allowed too
    right_type: Callable
    right_value: Callable | None = None


#: What each argument of ``StableDiffusionPipeline.__call__`` must be (experiments/generate.py
#: checks its options with the same rules and wording). bool is not an int here.
CALL_ARGUMENTS = {
    "prompt": ArgumentRule("a str", False, lambda v: isinstance(v, str)),
    "negative_prompt": ArgumentRule("a str", False, lambda v: isinstance(v, str)),
    "steps": ArgumentRule("a positive int", False, _is_int, lambda v: v >= 1),
    "guidance_scale": ArgumentRule("a finite number >= 0", False, _is_real, lambda v: np.isfinite(v) and v >= 0),
    "seed": ArgumentRule("an int in [0, 2**64)", False, _is_int, lambda v: 0 <= v < 2**64),
    "scheduler": ArgumentRule(f"one of {', '.join(map(repr, sorted(SCHEDULERS)))}", True,
                              lambda v: isinstance(v, str), lambda v: v in SCHEDULERS),
    "height": ArgumentRule("a positive int", True, _is_int, lambda v: v >= 1),
    "width": ArgumentRule("a positive int", True, _is_int, lambda v: v >= 1),
    "max_unet_evaluations": ArgumentRule("a positive int", True, _is_int, lambda v: v >= 1),
}


def check_call_argument(name: str, value):
    """``value`` (NumPy scalars as Python int / float) if it is what ``__call__``'s argument
    ``name`` must be (``CALL_ARGUMENTS[name]``); else a TypeError (wrong type) or ValueError (wrong
    value) that names the argument, what was expected and what it got."""
    rule = CALL_ARGUMENTS[name]
    if value is None and rule.optional:
        return None
    message = f"{name}: expected {'None or ' if rule.optional else ''}{rule.expected}, got {value!r}"
    if not rule.right_type(value):
        raise TypeError(message)
    value = int(value) if _is_int(value) else float(value) if _is_real(value) else value
    if rule.right_value is not None and not rule.right_value(value):
        raise ValueError(message)
    return value


@dataclass
class ComponentTiming:
    """Wall-clock seconds (device synchronized) and peak device memory of one component."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    peak_scope: str = "unavailable"

    @property
    def total(self) -> float:
        return float(sum(self.seconds))


@dataclass
class GenerationResult:
    image: np.ndarray  # (H, W, 3) uint8
    latents: np.ndarray  # the final latents, float32
    timings: dict[str, ComponentTiming]
    total_seconds: float
    unet_evaluations: int
    description: str

    def report(self) -> str:
        """The paper's breakdown: text encoder, UNet per iteration, decoder, total, peak memory."""
        def mib(t):
            if t.peak_bytes is None:
                return "n/a"
            return f"{t.peak_bytes / 2**20:.0f} MiB" + (" (process peak)" if t.peak_scope == "process" else "")

        te, unet, dec = self.timings["text_encoder"], self.timings["unet"], self.timings["decoder"]
        per_step = np.asarray(unet.seconds)
        steady = per_step[1:] if len(per_step) > 1 else per_step
        lines = [self.description,
                 f"{'component':<28}{'seconds':>12}   peak device memory (resident weights included)",
                 f"{'text encoder':<28}{te.total:>12.3f}   {mib(te)}",
                 f"{'UNet, first iteration':<28}{per_step[0]:>12.3f}   {mib(unet)}",
                 f"{'UNet, median iteration':<28}{float(np.median(steady)):>12.3f}",
                 f"{f'UNet, all {self.unet_evaluations} evaluations':<28}{unet.total:>12.3f}",
                 f"{'image decoder':<28}{dec.total:>12.3f}   {mib(dec)}",
                 f"{'total (incl. host work)':<28}{self.total_seconds:>12.3f}"]
        return "\n".join(lines)


class StableDiffusionPipeline:
    """Tokenizer, text encoder, UNet, VAE decoder and a scheduler, all on one backend (the object
    passed as ``backend=``, configured with its ``Optimizations`` by whoever constructs it)."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: TextEncoder, unet: UNet2DConditionModel,
                 decoder: VAEDecoder, scheduler_config: dict | None = None):
        self.tokenizer, self.text_encoder, self.unet, self.decoder = tokenizer, text_encoder, unet, decoder
        self.scheduler_config = dict(scheduler_config or SD14_SCHEDULER_CONFIG)
        self.backend = unet.backend
        if tokenizer.vocab_size > text_encoder.config["vocab_size"]:
            raise ValueError(f"tokenizer: {tokenizer.vocab_size} tokens do not fit the text encoder's vocab_size "
                             f"{text_encoder.config['vocab_size']}")

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, root, *, backend, dtype="float32", variant=None):
        """Load a diffusers Stable Diffusion folder (``model_index.json``, ``tokenizer/``,
        ``text_encoder/``, ``unet/``, ``vae/``, ``scheduler/``) from local disk."""
        require_backend(backend)
        root = Path(root)
        index = read_json(root / "model_index.json")
        for part in ("tokenizer", "text_encoder", "unet", "vae"):
            if part not in index:
                raise ValueError(f"{root / 'model_index.json'}: no {part!r} entry; is this a Stable Diffusion folder?")
        scheduler_path = root / "scheduler" / "scheduler_config.json"
        return cls(
            CLIPTokenizer.from_pretrained(root / "tokenizer"),
            TextEncoder.from_pretrained(root / "text_encoder", backend=backend, dtype=dtype, variant=variant),
            UNet2DConditionModel.from_pretrained(root / "unet", backend=backend, dtype=dtype, variant=variant),
            VAEDecoder.from_pretrained(root / "vae", backend=backend, dtype=dtype, variant=variant),
            read_json(scheduler_path) if scheduler_path.exists() else None,
        )

    @classmethod
    def random(cls, configs: dict | None = None, seed: int = 0, *, backend, dtype="float32",
               tokenizer: CLIPTokenizer | None = None):
        """Random weights with the shapes of ``configs`` (default: SD 1.4's). Images are noise;
        this is for latency and memory measurements without a checkpoint. Without a tokenizer,
        a small one is trained on a fixed sentence (token ids only need to be in range)."""
        require_backend(backend)
        configs = {**SD14_CONFIGS, **(configs or {})}
        tokenizer = tokenizer or CLIPTokenizer.train(["a photograph of an astronaut riding a horse"], num_merges=32)
        return cls(tokenizer,
                   TextEncoder.random(configs["text_encoder"], seed, backend=backend, dtype=dtype),
                   UNet2DConditionModel.random(configs["unet"], seed + 1, backend=backend, dtype=dtype),
                   VAEDecoder.random(configs["vae"], seed + 2, backend=backend, dtype=dtype),
                   configs["scheduler"])

    def save_pretrained(self, root) -> Path:
        """Write the diffusers layout (what ``from_pretrained`` reads)."""
        import json

        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(root / "tokenizer")
        self.text_encoder.save_pretrained(root / "text_encoder")
        self.unet.save_pretrained(root / "unet")
        self.decoder.save_pretrained(root / "vae")
        (root / "scheduler").mkdir(exist_ok=True)
        with open(root / "scheduler" / "scheduler_config.json", "w") as f:
            json.dump(self.scheduler_config, f, indent=2)
        index = {"_class_name": "StableDiffusionPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                 "vae": ["diffusers", "AutoencoderKL"],
                 "scheduler": ["diffusers", self.scheduler_config.get("_class_name", "PNDMScheduler")]}
        with open(root / "model_index.json", "w") as f:
            json.dump(index, f, indent=2)
        return root

    # -- generation ----------------------------------------------------------------------------

    def make_scheduler(self, name: str | None = None):
        """``name`` in pndm/ddim/euler, or None for the checkpoint's own scheduler."""
        if name is None:
            class_name = self.scheduler_config.get("_class_name", "PNDMScheduler")
            if class_name not in SCHEDULER_NAMES:
                raise ValueError(f"scheduler: the checkpoint asks for {class_name}; choose one of "
                                 f"{sorted(SCHEDULERS)} with scheduler=")
            name = SCHEDULER_NAMES[class_name]
        config = {k: v for k, v in self.scheduler_config.items() if k != "_class_name"}
        return make_scheduler(name, config)

    def latent_shape(self, height: int | None, width: int | None) -> tuple[int, int, int, int]:
        factor = 2 ** (len(self.decoder.config["block_out_channels"]) - 1)
        size = (self.unet.config.get("sample_size") or 64) * factor
        height, width = height or size, width or size
        unet_factor = 2 ** (len(self.unet.config["block_out_channels"]) - 1) * factor
        if height % unet_factor or width % unet_factor:
            raise ValueError(f"height, width: expected multiples of {unet_factor}, got {height} x {width}")
        return (1, self.unet.config["in_channels"], height // factor, width // factor)

    def __call__(self, prompt: str, negative_prompt: str = "", steps: int = 20, guidance_scale: float = 7.5,
                 seed: int = 0, scheduler: str | None = None, height: int | None = None, width: int | None = None,
                 progress: bool = False, max_unet_evaluations: int | None = None,
                 latents: np.ndarray | None = None) -> GenerationResult:
        """Generate one image. ``max_unet_evaluations`` stops the denoising loop early (for a
        warm-up or a quick latency probe; the image is then not a finished one). ``latents``, as
        in diffusers, is the initial noise (1, C, h, w) in place of the seed's, before the
        scheduler's ``init_noise_sigma`` multiplies it.

        ``guidance_scale`` is a finite number >= 0. As in diffusers (``do_classifier_free_guidance``
        is ``guidance_scale > 1``), a scale above 1 runs classifier-free guidance (a batch of 2:
        negative prompt and prompt) and a scale <= 1 runs the prompt alone, unguided. ``seed``, an
        int in [0, 2**64), seeds ``numpy.random.default_rng`` for the initial noise. Every argument
        is checked first (``CALL_ARGUMENTS``): a wrong type raises TypeError, a wrong value
        ValueError, naming the argument."""
        prompt = check_call_argument("prompt", prompt)
        negative_prompt = check_call_argument("negative_prompt", negative_prompt)
        steps = check_call_argument("steps", steps)
        guidance_scale = check_call_argument("guidance_scale", guidance_scale)
        seed = check_call_argument("seed", seed)
        scheduler = check_call_argument("scheduler", scheduler)
        height = check_call_argument("height", height)
        width = check_call_argument("width", width)
        max_unet_evaluations = check_call_argument("max_unet_evaluations", max_unet_evaluations)
        be = self.backend
        sched = self.make_scheduler(scheduler)
        sched.set_timesteps(steps)
        shape = self.latent_shape(height, width)
        if latents is None:
            latents = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        elif not isinstance(latents, np.ndarray) or latents.shape != shape or latents.dtype.kind != "f" \
                or not np.all(np.isfinite(latents)):
            raise ValueError(f"latents: expected a finite float array of shape {shape}, got "
                             f"{getattr(latents, 'dtype', type(latents).__name__)} of shape {np.shape(latents)}")
        latents = latents.astype(np.float32) * np.float32(sched.init_noise_sigma)
        timings = {name: ComponentTiming(name) for name in ("text_encoder", "unet", "decoder")}
        guided = guidance_scale > 1.0
        start = time.perf_counter()

        prompts = [negative_prompt, prompt] if guided else [prompt]
        with _measure(be, timings["text_encoder"]):
            context = be.synchronize(self.text_encoder(self.tokenizer(prompts)))

        timesteps = list(sched.timesteps)
        if max_unet_evaluations is not None:
            timesteps = timesteps[:max_unet_evaluations]
        iterator = timesteps
        if progress:
            from tqdm import tqdm

            iterator = tqdm(timesteps, desc=f"UNet ({be.name})", unit="it")
        with _measure(be, timings["unet"]) as unet_timing:
            for t in iterator:
                model_input = sched.scale_model_input(latents, t)
                if guided:
                    model_input = np.concatenate([model_input, model_input])
                tick = time.perf_counter()
                noise = be.to_numpy(self.unet(model_input, t, context)).astype(np.float32)
                unet_timing.seconds.append(time.perf_counter() - tick)
                if guided:
                    noise = classifier_free_guidance(noise[:1], noise[1:], guidance_scale)
                latents = sched.step(noise, t, latents).astype(np.float32)

        with _measure(be, timings["decoder"]):
            z = latents / np.float32(self.decoder.config["scaling_factor"])
            decoded = be.to_numpy(self.decoder(z)).astype(np.float32)
        total = time.perf_counter() - start
        image = np.round(np.clip(decoded[0].transpose(1, 2, 0) / 2 + 0.5, 0, 1) * 255).astype(np.uint8)
        description = (f"{image.shape[0]}x{image.shape[1]} image, {len(timesteps)} UNet "
                       f"evaluations ({type(sched).__name__}, {steps} steps, batch {2 if guided else 1}), "
                       f"{self.unet.dtype} on {be!r}")
        return GenerationResult(image, latents, timings, total, len(timesteps), description)


class _measure:
    """Time a component (when it does not time itself) and read the backend's peak memory."""

    def __init__(self, backend, timing: ComponentTiming):
        self.backend, self.timing = backend, timing

    def __enter__(self):
        self.backend.reset_peak_memory()
        self.start = time.perf_counter()
        return self.timing

    def __exit__(self, *exc):
        if not self.timing.seconds:
            self.timing.seconds.append(time.perf_counter() - self.start)
        stats = self.backend.memory_stats()
        self.timing.peak_bytes, self.timing.peak_scope = stats["peak_bytes"], stats["peak_scope"]
        return False


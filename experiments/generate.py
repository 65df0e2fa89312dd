"""Generate an image with Stable Diffusion 1.x on a chosen backend, timed as in the paper.

    python -m experiments.generate --weights ~/sd-v1-4 --prompt "an astronaut riding a horse" \\
        --steps 20 --backend opencl --optimizations paper --out astronaut.png

    python -m experiments.generate --random-weights --backend jax --optimizations paper \\
        --steps 20 --warmup --out noise.png        # SD 1.4's shapes, no checkpoint: latency only

    python -m experiments.generate --tiny --backend opencl --steps 4   # seconds, any CPU

``--weights`` is a diffusers folder on local disk (model_index.json, tokenizer/, text_encoder/,
unet/, vae/, scheduler/); nothing is downloaded. At the end it prints the paper's breakdown:
text encoder, UNet per iteration, image decoder, total, and peak device memory per component.
With ``--warmup`` one untimed pass (text encoder, one UNet evaluation, decoder) runs first, so
kernel builds and JIT compilation are not in the timed numbers.

The command builds the backend (``--backend``, ``--optimizations``, ``--device``) with
``backends.get_backend`` and hands the object to the network in reference/sd/, which imports
no backend itself.
"""

from __future__ import annotations

import argparse
import json
import sys

from backends import Backend, Optimizations, available_backends, get_backend
from reference.sd.pipeline import SCHEDULER_NAMES, StableDiffusionPipeline
from reference.sd.tiny import tiny_pipeline


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.generate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", metavar="DIR", help="a diffusers Stable Diffusion 1.x folder")
    source.add_argument("--random-weights", action="store_true",
                        help="SD 1.4's shapes with random weights (latency and memory only; the image is noise)")
    source.add_argument("--tiny", action="store_true",
                        help="a tiny random SD-shaped pipeline (reference.sd.tiny): the whole loop in seconds")
    p.add_argument("--prompt", default="a photograph of an astronaut riding a horse")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=7.5, help="<= 1 turns classifier-free guidance off")
    p.add_argument("--scheduler", choices=sorted(set(SCHEDULER_NAMES.values())), default=None,
                   help="default: the checkpoint's (SD 1.4: pndm)")
    p.add_argument("--backend", choices=available_backends(), default="numpy")
    p.add_argument("--optimizations", choices=["none", "paper"], default="paper")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="storage dtype of weights and activations (arithmetic is float32)")
    p.add_argument("--device", default=None, help="OpenCL device ('P:D' or a name substring; default PYOPENCL_CTX)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (and of --random-weights)")
    p.add_argument("--variant", default=None, help="weights variant, e.g. fp16 for *.fp16.safetensors")
    p.add_argument("--warmup", action="store_true", help="one untimed pass first (kernel builds, JIT)")
    p.add_argument("--out", default="image.png", help="PNG file to write")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the timings as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def make_backend(args) -> Backend:
    """The backend named by ``--backend`` with the ``--optimizations`` (and ``--device``) asked for."""
    options = {"device": args.device} if args.device is not None else {}
    if args.device is not None and args.backend != "opencl":
        raise SystemExit("--device: only the opencl backend takes a device")
    return get_backend(args.backend, optimizations=Optimizations.named(args.optimizations), **options)


def load_pipeline(args) -> StableDiffusionPipeline:
    backend = make_backend(args)
    if args.tiny:
        return tiny_pipeline(backend=backend, dtype=args.dtype, seed=args.seed)
    if args.random_weights:
        return StableDiffusionPipeline.random(seed=args.seed, backend=backend, dtype=args.dtype)
    return StableDiffusionPipeline.from_pretrained(args.weights, backend=backend, dtype=args.dtype,
                                                   variant=args.variant)


def main(argv=None) -> int:
    args = parse_args(argv)
    pipe = load_pipeline(args)
    call = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, steps=args.steps,
                guidance_scale=args.guidance_scale, seed=args.seed, scheduler=args.scheduler,
                height=args.height, width=args.width)
    if args.warmup:
        pipe(**call, max_unet_evaluations=1)
    result = pipe(**call, progress=not args.no_progress)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(args.out, result.image)
    print(result.report())
    if pipe.backend.choices:
        print("auto/default choices:", ", ".join(f"{op} {how} -> {what}: {n}"
                                                  for (op, how, what), n in sorted(pipe.backend.choices.items())))
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"description": result.description, "total_seconds": result.total_seconds,
                       "unet_evaluations": result.unet_evaluations, "warmup": args.warmup,
                       "components": {k: {"seconds": t.seconds, "peak_bytes": t.peak_bytes,
                                          "peak_scope": t.peak_scope} for k, t in result.timings.items()}},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Bad options end the command with exit status 2 and a message naming the option before any model is
built or any work is done: values by the pipeline's own rules (reference.sd.pipeline.CALL_ARGUMENTS:
``--guidance-scale`` a finite number >= 0, ``--seed`` an int in [0, 2**64), ``--steps``,
``--height``, ``--width`` positive ints), ``--out`` a .png file and ``--json`` a file, each in an
existing writable folder. Only the multiple that ``--height``/``--width`` must be of waits for the
model's config (its check runs right after loading, before any generation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from backends import Backend, Optimizations, available_backends, get_backend
from backends.optimizations import PRESETS
from reference.sd.pipeline import CALL_ARGUMENTS, SCHEDULER_NAMES, StableDiffusionPipeline, check_call_argument
from reference.sd.tiny import tiny_pipeline


def pipeline_argument(name: str, parse):
    """An argparse ``type=``: the option's text parsed with ``parse`` (int, float) and checked by
    the pipeline's own rule for its argument ``name`` (reference.sd.pipeline.CALL_ARGUMENTS), so a
    bad value is an argparse error (exit status 2) before anything is built, e.g.
    "argument --guidance-scale: expected a finite number >= 0, got 'nan'"."""
    def convert(text):
        try:
            return check_call_argument(name, parse(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {CALL_ARGUMENTS[name].expected}, got {text!r}") from None

    return convert


def check_output_file(parser, option: str, path: str, suffix: str | None = None) -> None:
    """``path`` can be written: not a directory, in an existing writable folder (and ending in
    ``suffix``); otherwise ``parser.error``, before any model is built."""
    file = Path(path)
    if suffix is not None and file.suffix.lower() != suffix:
        parser.error(f"argument {option}: expected a file name ending in {suffix}, got {path!r}")
    if file.is_dir():
        parser.error(f"argument {option}: expected a file name, got the directory {path!r}")
    folder = file.parent
    if not folder.exists():
        parser.error(f"argument {option}: expected a file in an existing folder, got {path!r} "
                     f"(no folder {str(folder)!r}; create it first)")
    if not folder.is_dir():
        parser.error(f"argument {option}: expected a file in a folder, got {path!r} ({str(folder)!r} is not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK) or (file.exists() and not os.access(file, os.W_OK)):
        parser.error(f"argument {option}: expected a writable file, got {path!r} (permission denied)")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--steps", type=pipeline_argument("steps", int), default=20)
    p.add_argument("--guidance-scale", type=pipeline_argument("guidance_scale", float), default=7.5,
                   help="a number >= 0; <= 1 turns classifier-free guidance off (as in diffusers)")
    p.add_argument("--scheduler", choices=sorted(set(SCHEDULER_NAMES.values())), default=None,
                   help="default: the checkpoint's (SD 1.4: pndm)")
    p.add_argument("--backend", choices=available_backends(), default="numpy")
    p.add_argument("--optimizations", choices=PRESETS, default="paper",
                   help="the paper's switches: none, all of them (paper), or best (each as measured on this "
                        "backend, device and dtype: backends/optimizations.py)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="storage dtype of weights and activations (arithmetic is float32)")
    p.add_argument("--device", default=None, help="OpenCL device ('P:D' or a name substring; default PYOPENCL_CTX)")
    p.add_argument("--height", type=pipeline_argument("height", int), default=None)
    p.add_argument("--width", type=pipeline_argument("width", int), default=None)
    p.add_argument("--seed", type=pipeline_argument("seed", int), default=0,
                   help="an int in [0, 2**64): seed of the initial noise (and of --random-weights, --tiny)")
    p.add_argument("--variant", default=None, help="weights variant, e.g. fp16 for *.fp16.safetensors")
    p.add_argument("--warmup", action="store_true", help="one untimed pass first (kernel builds, JIT)")
    p.add_argument("--compilation-cache", metavar="DIR", default=None,
                   help="jax: keep the compiled programs in DIR, so that the next run loads them instead of "
                        "compiling (JAX's persistent compilation cache; SD 1.4 fp32 on an H100: 114 s to the "
                        "UNet's first call cold, 6 s warm)")
    p.add_argument("--out", default="image.png", help="PNG file to write")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the timings as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv=None, parser: argparse.ArgumentParser | None = None):
    """The options, checked before any work starts: values (argparse ``type=``), then the files
    to write and option combinations; a bad one exits with status 2 and a message naming it."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    check_output_file(parser, "--out", args.out, suffix=".png")  # matplotlib's imsave picks PNG from it
    if args.json is not None:
        check_output_file(parser, "--json", args.json)
        if Path(args.json).resolve() == Path(args.out).resolve():
            parser.error(f"argument --json: expected a file other than --out's, got {args.json!r}")
    if args.device is not None and args.backend != "opencl":
        parser.error(f"argument --device: only the opencl backend takes a device, got --backend {args.backend}")
    if args.compilation_cache is not None and args.backend != "jax":
        parser.error(f"argument --compilation-cache: only the jax backend compiles programs, got --backend {args.backend}")
    return args


def make_backend(args) -> Backend:
    """The backend named by ``--backend`` with the ``--optimizations`` (and ``--device``) asked for."""
    options = {"device": args.device} if args.device is not None else {}
    if args.device is not None and args.backend != "opencl":
        raise SystemExit("--device: only the opencl backend takes a device")
    if args.compilation_cache is not None:
        options["compilation_cache"] = args.compilation_cache
    backend = get_backend(args.backend, optimizations=Optimizations.named(args.optimizations), **options)
    if backend.optimizations.measured:  # best: say now, not at the first op, where nothing was measured
        try:
            backend.measured_rule(args.dtype)
        except ValueError as error:
            raise SystemExit(f"--optimizations best: {error}") from None
    return backend


def load_pipeline(args) -> StableDiffusionPipeline:
    backend = make_backend(args)
    if args.tiny:
        return tiny_pipeline(backend=backend, dtype=args.dtype, seed=args.seed)
    if args.random_weights:
        return StableDiffusionPipeline.random(seed=args.seed, backend=backend, dtype=args.dtype)
    return StableDiffusionPipeline.from_pretrained(args.weights, backend=backend, dtype=args.dtype,
                                                   variant=args.variant)


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(argv, parser)
    pipe = load_pipeline(args)
    try:  # the multiple of --height/--width the model needs is known once it is loaded
        pipe.latent_shape(args.height, args.width)
    except ValueError as error:
        parser.error(f"{error} (--height, --width)")
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

"""The peer of experiments.sd_latency: diffusers' SD 1.4 UNet iteration and VAE decode on CUDA,
eager, with the same shapes and random weights (a batch of 2 for the UNet, 64 x 64 latents).

    python -m experiments.diffusers_latency --dtype float32 --json out.json

Needs torch with CUDA and diffusers (peer timings only; never a dependency of the project).
Settings: float32 runs with TF32 off (matmul and cuDNN), ``cudnn.benchmark`` on (the best
algorithm per layer), SDPA attention (diffusers' default). Timer: CUDA events around each call
after two warm-up calls; the median of ``--iterations`` calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import datetime, timezone

from reference.sd.pipeline import SD14_CONFIGS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import diffusers
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dtype = getattr(torch, args.dtype)
    device = torch.device("cuda")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel.from_config(SD14_CONFIGS["unet"]).to(device, dtype).eval()
    vae = diffusers.AutoencoderKL.from_config(SD14_CONFIGS["vae"]).to(device, dtype).eval()
    latents = torch.randn(2, 4, 64, 64, device=device, dtype=dtype)
    text = torch.randn(2, 77, 768, device=device, dtype=dtype)
    t = torch.tensor([500, 500], device=device)

    def timed(fn):
        with torch.no_grad():
            for _ in range(2):
                fn()
            torch.cuda.synchronize()
            seconds = []
            for _ in range(args.iterations):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                seconds.append(start.elapsed_time(end) * 1e-3)
        return statistics.median(seconds)

    row = {
        "system": f"diffusers {diffusers.__version__} eager (torch {torch.__version__})",
        "device": torch.cuda.get_device_name(device), "dtype": args.dtype,
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "iterations": args.iterations,
        "unet_ms": 1e3 * timed(lambda: unet(latents, t, encoder_hidden_states=text).sample),
        "decoder_ms": 1e3 * timed(lambda: vae.decode(latents[:1]).sample),
    }
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The measured errors behind tests/sd/test_golden.py's bounds, per backend configuration.

    .venv/bin/python tests/golden/report_errors.py                       # test_golden.CONFIGS
    .venv/bin/python tests/golden/report_errors.py jax-paper-float16     # backend-optimizations-dtype

For each configuration: ``max |ours - theirs| / max |theirs|`` of the text encoder (both
layouts), the UNet at each golden timestep, the decoder, and each scheduler's final latents,
plus the largest difference of the 8-bit image in levels; and the seconds it took (model loads
and JAX compilation included). The committed outputs are errors_<device>_<date>.txt beside this.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tests.sd.test_golden as golden  # noqa: E402
from backends import Optimizations  # noqa: E402
from tests.sd.conftest import make_backend  # noqa: E402


def errors(name: str, optimizations: str, dtype: str, outputs: dict) -> dict:
    be = make_backend(name, Optimizations.named(optimizations))
    pipe = golden.StableDiffusionPipeline.from_pretrained(golden.FOLDER, backend=be, dtype=dtype)
    hub = golden.TextEncoder.from_pretrained(golden.GOLDEN / "text_encoder_hub", backend=be, dtype=dtype)
    row = {}
    for layout, encoder in (("text encoder", pipe.text_encoder), ("text encoder (hub)", hub)):
        row[layout] = golden.relative_error(be.to_numpy(encoder(outputs["tokens"])), outputs["text_embeddings"])
    for i, t in enumerate(golden.META["unet_timesteps"]):
        ours = be.to_numpy(pipe.unet(outputs["unet_sample"], int(t), outputs["unet_context"]))
        row[f"UNet t={t}"] = golden.relative_error(ours, outputs["unet_output"][i])
    row[f"decoder ({pipe.decoder.dtype})"] = golden.relative_error(be.to_numpy(pipe.decoder(outputs["vae_latents"])),
                                                                   outputs["vae_decoded"])
    for s in golden.SCHEDULERS:
        result = pipe(golden.META["prompts"][0], negative_prompt=golden.META["negative_prompt"],
                      steps=golden.META["steps"], guidance_scale=golden.META["guidance_scale"], scheduler=s,
                      latents=outputs[f"pipeline_{s}_noise"], height=golden.META["height"], width=golden.META["width"])
        row[f"{s} latents"] = golden.relative_error(result.latents, outputs[f"pipeline_{s}_latents"])
        theirs = np.round(outputs[f"pipeline_{s}_image"][0] * 255)
        row[f"{s} image levels"] = int(np.abs(result.image.astype(np.int64) - theirs).max())
    return row


def main(argv) -> None:
    configs = [tuple(a.split("-")) for a in argv] or golden.CONFIGS
    with np.load(golden.GOLDEN / "outputs.npz") as data:
        outputs = dict(data)
    for config in configs:
        start = time.perf_counter()
        row = errors(*config, outputs)
        print(f"{'-'.join(config)} ({time.perf_counter() - start:.1f} s)")
        for key, value in row.items():
            print(f"    {key:<24}{value:.2e}" if isinstance(value, float) else f"    {key:<24}{value}")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])

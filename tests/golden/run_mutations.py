"""The golden tests must catch the bugs a user would meet only with real weights.

    .venv/bin/python tests/golden/run_mutations.py          # from the project root; about 15 s

Each entry is a one-line change to the network or the pipeline that every other test used to
let through (issue 15 lists the first five). The script applies one at a time, runs
tests/sd/test_golden.py on the numpy backend, restores the file, and prints whether the tests
failed, as they must. Extra pytest arguments are passed on (e.g. ``-k opencl``).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: (what, file, the line as it is, the mutated line)
MUTATIONS = [
 ("drop the cross-attention residual (BasicTransformerBlock)", "reference/sd/layers.py",
  "x = be.add(x, self.attn2(run, self.norm2(run, x), context))", "x = self.attn2(run, self.norm2(run, x), context)"),
 ("attention scale 1.0 instead of 1/sqrt(d) (network's Attention)", "reference/sd/layers.py",
  "return self.to_out[0](run, merge_heads(be, be.attention(q, k, v)))", "return self.to_out[0](run, merge_heads(be, be.attention(q, k, v, scale=1.0)))"),
 ("drop the SiLU after norm2 (ResnetBlock2D)", "reference/sd/layers.py",
  "h = self.conv2(run, self.norm2(run, h, silu=True))", "h = self.conv2(run, self.norm2(run, h, silu=False))"),
 ("swap the unconditional and text halves in guidance", "reference/sd/pipeline.py",
  "classifier_free_guidance(noise[:1], noise[1:], guidance_scale)", "classifier_free_guidance(noise[1:], noise[:1], guidance_scale)"),
 ("skip the division by the VAE's scaling_factor", "reference/sd/pipeline.py",
  'z = latents / np.float32(self.decoder.config["scaling_factor"])', "z = latents"),
 ("guidance without the unconditional term (s (e_text - e_uncond))", "reference/sd/schedulers.py",
  "return (u + guidance_scale * (noise_text.astype(np.float64) - u))", "return (guidance_scale * (noise_text.astype(np.float64) - u))"),
 ("negative prompt ignored (empty unconditional prompt)", "reference/sd/pipeline.py",
  "prompts = [negative_prompt, prompt] if guided else [prompt]", 'prompts = ["", prompt] if guided else [prompt]'),
 ("initial noise not scaled by init_noise_sigma", "reference/sd/pipeline.py",
  "latents = latents.astype(np.float32) * np.float32(sched.init_noise_sigma)", "latents = latents.astype(np.float32)"),
 ("model input not scaled (scale_model_input skipped)", "reference/sd/pipeline.py",
  "model_input = sched.scale_model_input(latents, t)", "model_input = latents"),
 ("image range: decoded + 0.5 instead of decoded / 2 + 0.5", "reference/sd/pipeline.py",
  "decoded[0].transpose(1, 2, 0) / 2 + 0.5", "decoded[0].transpose(1, 2, 0) + 0.5"),
 ("text encoder attention not causal", "reference/sd/text_encoder.py",
  "be.attention(q, k, v, causal=True)", "be.attention(q, k, v)"),
]


def main() -> int:
    survivors = 0
    for what, file, old, new in MUTATIONS:
        survivors += not run(what, file, old, new)
    print(f"{len(MUTATIONS) - survivors} of {len(MUTATIONS)} mutations fail the golden tests")
    return 1 if survivors else 0


def run(what, file, old, new) -> bool:
    """True when the golden tests fail with the mutation applied."""
    path = ROOT / file
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{file}: expected the line {old!r} once, found it {text.count(old)} times")
    path.write_text(text.replace(old, new))
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/sd/test_golden.py", "-k", "numpy", *sys.argv[1:]],
                                cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(text)
    summary = result.stdout.strip().splitlines()[-1]
    print(f"{'fails ' if result.returncode else 'PASSES'}  {what}  ({file}): {summary}", flush=True)
    return result.returncode != 0


if __name__ == "__main__":
    sys.exit(main())

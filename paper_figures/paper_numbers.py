"""The paper's own numbers, as data, each with where it comes from and how sure we are.

Markers (../shared/paper.md): ``paper`` read in the paper's own text (Chen et al., "Speed Is All
You Need: On-Device Acceleration of Large Diffusion Models via GPU-Aware Optimizations", CVPR 2023
Workshops, arXiv:2304.11267); ``press`` consistent secondary coverage of the paper (the Google
Research blog post of June 2023 and the coverage that quotes it), not the paper's text itself.
Nothing ``derived`` (our arithmetic) or ``unknown`` is listed here as the paper's: the paper's
Table 1 (per-optimization and per-component numbers) is not available to us, so no table of ours
invents a per-component figure for it.
"""

from __future__ import annotations

from typing import NamedTuple

PAPER = "Chen et al. 2023, arXiv:2304.11267"
PRESS = "secondary coverage of the paper (Google Research blog, June 2023, and press quoting it)"


class Claim(NamedTuple):
    key: str
    claim: str
    value: str
    marker: str  # "paper", "press" or "paper/press"
    source: str

    @property
    def cited(self) -> str:
        """The value with its marker, for a table cell: "52.2% [press]"."""
        return f"{self.value} [{self.marker}]"


CLAIMS = [
    Claim("model", "model, output, steps", "Stable Diffusion 1.4, 512x512, 20 iterations, no int8, no distillation",
          "paper", PAPER),
    Claim("s23_total", "end-to-end latency, Samsung S23 Ultra (Adreno 740)", "under 12 s (11.5 s in coverage)",
          "paper/press", f"{PAPER}; {PRESS}"),
    Claim("s23_reduction", "latency reduction from the optimizations, Samsung S23 Ultra", "52.2%", "press", PRESS),
    Claim("iphone_reduction", "latency reduction from the optimizations, iPhone 14 Pro Max", "32.9%", "press", PRESS),
    Claim("group_norm", "fused GroupNorm", "one GPU command, no intermediate tensors", "press", PRESS),
    Claim("gelu", "fused GELU", "the erf GELU with its split and multiply (GEGLU) in one draw call", "press", PRESS),
    Claim("attention", "attention variant per device",
          "FlashAttention on Adreno and Apple GPUs for head dimension 40; partially fused softmax elsewhere",
          "press", PRESS),
    Claim("winograd", "Winograd tile", "F(4x4, 3x3): the balance of multiplications, memory and error",
          "press", PRESS),
    Claim("decoder_3x3", "share of 3x3 convolutions in the image decoder", "about 90%", "press", PRESS),
]
BY_KEY = {c.key: c for c in CLAIMS}

#: the reductions the ablation table sets ours beside: (device, percent, claim); what they are
#: measured on (end-to-end or per UNet step) and against which baseline is unknown
REDUCTIONS = [("Samsung S23 Ultra", 52.2, BY_KEY["s23_reduction"]),
              ("iPhone 14 Pro Max", 32.9, BY_KEY["iphone_reduction"])]

#: Winograd F(4x4, 3x3) is the paper's choice [press]
WINOGRAD_TILE = 4
#: the head dimension at which the paper runs FlashAttention on mobile GPUs [press]
FLASH_HEAD_DIM = 40

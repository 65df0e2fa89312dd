"""The paper's own numbers, each with its marker from ../shared/paper.md:
[paper] read in the paper's text, [press] consistent secondary coverage of the paper.
Nothing [derived] or [unknown] is listed here as "the paper's"."""

HEADLINE = [
    # (claim, value, marker)
    ("model, output, steps", "Stable Diffusion 1.4, 512x512, 20 iterations, no int8", "paper"),
    ("end-to-end, Samsung S23 Ultra (Adreno 740)", "under 12 s (11.5 s in coverage)", "paper/press"),
    ("latency reduction from the optimizations, S23 Ultra", "52.2%", "press"),
    ("latency reduction from the optimizations, iPhone 14 Pro Max", "32.9%", "press"),
]

#: Winograd F(4x4, 3x3) is the paper's choice; the decoder is ~90% 3x3 convolutions. [press]
WINOGRAD_TILE = 4

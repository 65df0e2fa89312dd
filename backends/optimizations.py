"""The paper's switches, as one value that sets a backend's defaults.

    Optimizations.none()   every op unfused: GroupNorm and GELU as separate kernels, naive
                           attention (A and P stored), direct convolution
    Optimizations.paper()  the paper's configuration: fused GroupNorm, fused GELU, attention
                           "auto" (the paper's rule, below), Winograd F(4x4, 3x3) for every
                           eligible convolution (3x3, stride 1); the ablation's literal choice
    Optimizations.best()   each switch as measured fastest on this backend and device for the
                           call's storage dtype (``MEASURED``, with the measurements behind each
                           choice); a device without measurements raises, naming what exists

An op called with an explicit variant (``method=``, ``fused=``, ``tile=``) ignores the default.

The paper's attention rule ("auto"): FlashAttention on Adreno and Apple GPUs for head dimension
d = 40, the partially fused softmax everywhere else (../shared/paper.md, optimization 3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ATTENTION_METHODS = ("naive", "partial_softmax", "flash", "auto")
PRESETS = ("none", "paper", "best")
WINOGRAD_TILES = (2, 4, 6)
#: Device vendors on which the paper uses FlashAttention (for d = 40).
FLASH_VENDORS = ("qualcomm", "apple")


@dataclass(frozen=True)
class Optimizations:
    fused_group_norm: bool = False
    fused_gelu: bool = False
    attention: str = "naive"
    winograd_tile: int | None = None  # None: direct convolution
    #: True: ``best()``, every switch from ``measured_rule`` per call (the fields above unused)
    measured: bool = False

    def __post_init__(self):
        if self.measured and (self.fused_group_norm, self.fused_gelu, self.attention, self.winograd_tile) != (
                False, False, "naive", None):
            raise ValueError("measured: Optimizations.best() takes every switch from the device's measured rule; "
                             "set switches on none() or paper() instead")
        if self.attention not in ATTENTION_METHODS:
            raise ValueError(f"attention: expected one of {ATTENTION_METHODS}, got {self.attention!r}")
        if self.winograd_tile is not None and self.winograd_tile not in WINOGRAD_TILES:
            raise ValueError(f"winograd_tile: expected None or one of {WINOGRAD_TILES}, got {self.winograd_tile!r}")

    @classmethod
    def none(cls) -> "Optimizations":
        return cls()

    @classmethod
    def paper(cls) -> "Optimizations":
        return cls(fused_group_norm=True, fused_gelu=True, attention="auto", winograd_tile=4)

    @classmethod
    def best(cls) -> "Optimizations":
        return cls(measured=True)

    @classmethod
    def named(cls, name: str) -> "Optimizations":
        """``"none"``, ``"paper"`` or ``"best"`` (the generate command's --optimizations)."""
        if name not in PRESETS:
            raise ValueError(f"optimizations: expected one of {PRESETS}, got {name!r}")
        return getattr(cls, name)()

    def with_(self, **changes) -> "Optimizations":
        """A copy with some switches changed, e.g. ``Optimizations.paper().with_(winograd_tile=None)``."""
        return replace(self, **changes)


@dataclass(frozen=True)
class MeasuredRule:
    """The switches ``Optimizations.best()`` takes on one backend, device and storage dtype, and
    the measurements they come from. ``attention``: (largest head dim, method) pairs in
    ascending order; a head dim takes the method of the first pair that covers it."""
    fused_group_norm: bool
    fused_gelu: bool
    attention: tuple[tuple[int, str], ...]
    winograd_tile: int | None
    why: str

    def attention_method(self, head_dim: int) -> str:
        for largest, method in self.attention:
            if head_dim <= largest:
                return method
        return self.attention[-1][1]


#: The switches of the 16-bit rules on both GPUs measured (each rule's ``why`` says why): flash up
#: to the UNet's head dims (d <= 160), naive for the decoder's d = 512; the fused GroupNorm; neither
#: the Pallas GEGLU nor Winograd (the tensor cores make the multiplications cheap)
_16BIT_SWITCHES = dict(fused_group_norm=True, fused_gelu=False, attention=((160, "flash"), (1 << 30, "naive")),
                       winograd_tile=None)
#: ... and of the float32 rules: naive attention, the fused GroupNorm, Winograd F(4, 3)
_FLOAT32_SWITCHES = dict(fused_group_norm=True, fused_gelu=False, attention=((1 << 30, "naive"),), winograd_tile=4)

_H200_16BIT = MeasuredRule(
    **_16BIT_SWITCHES,
    why="H200, 2026-12-04 (experiments/results/issue13_h200_2026-12-04: kernels run 3, SD runs 1, 4 and 5): "
        "the fused GroupNorm+SiLU 1.4-1.9x XLA's unfused graph on all six SD shapes in fp16 and bf16; the "
        "Pallas GEGLU 0.87-0.98x XLA on the UNet's three large shapes, so off; flash on the tensor cores "
        "1.2-3.1x XLA's naive graph at d = 40 and 80 (0.54x torch SDPA at N = 4096, d = 40; 0.64x naive at "
        "(2, 8, 256, 256, 160), five layers or an estimated 0.04 ms per iteration, kept for want of a rule "
        "by key count) and the one attention switch that cuts the UNet (16.5 -> 14.0 ms fp16, 17.3 -> 12.7 "
        "ms bf16; partial_softmax 0.93x naive at N = 4096); the decoder's d = 512 attention naive (XLA/cuBLAS "
        "0.10 ms against flash 0.66); Winograd off: the UNet with winograd4 takes 38.5 against 16.1 ms "
        "(fp16) and 39.2 against 17.3 ms (bf16; both with the Winograd GEMMs at HIGHEST and a float32 "
        "result, before they took gemm.product_options), cuDNN's direct convolution on the tensor cores "
        "beating the transforms' extra passes, and in bf16 F(4, 3) raises the UNet's error against "
        "diffusers from 8.6e-3 to 5.4e-2 (decoder 2.1e-2 to 1.5e-1; the tiny golden test on the CPU). "
        "Confirmed 2026-12-07 (issue13_h200_2026-12-07, calls 14-16, the new defaults): fp16 UNet 9.5-9.6 ms "
        "against none's 14.7 (0.65x), decoder 7.6 against 8.2-8.3; bf16 10.2-10.3 against 14.7; flash's "
        "Hopper kernel (flash_lowering='auto') 0.94x SDPA at N = 4096 and 1.00-1.03x at d = 80 and 160")
#: ``Optimizations.best()``'s rules: (backend name, device as the backend's ``vendor`` names it,
#: storage dtype) -> the measured choice. Only what was measured is here.
MEASURED: dict[tuple[str, str, str], MeasuredRule] = {
    ("jax", "NVIDIA H200", "float16"): _H200_16BIT,
    ("jax", "NVIDIA H100 80GB HBM3", "float16"): MeasuredRule(
        **_16BIT_SWITCHES,
        why="H100 80GB HBM3, 2026-12-07 (experiments/results/issue13_h100_2026-12-07): in call 10's fp16 "
            "ablation (one process, row-major weights, the GroupNorm forms by size) the UNet iteration with each "
            "switch alone against none's 17.5 ms: fused_group_norm 17.1, fused_gelu 18.1, partial_softmax 18.5, "
            "flash 13.5, winograd4 43.3 ms; so flash (d <= 160; the decoder's d = 512 naive, as on the H200) and "
            "the fused GroupNorm on, GEGLU, the partial softmax and Winograd off. With the weights in XLA's "
            "layouts and the network GroupNorm form (calls 11 and 13, today's defaults) fused_group_norm is 15.8 "
            "against 17.5 ms (decoder 8.0 against 8.9) and best 10.5 against none's 18.0 ms (0.58x; decoder 8.0 "
            "against 8.9). Call 17 (the ablation again, with the Hopper flash kernel): each switch alone against "
            "none's 19.2 ms: fused_group_norm 16.6, fused_gelu 18.8, partial_softmax 19.4, flash 12.8, winograd4 "
            "51.6; best 10.7 (0.56x). fused_gelu, 0.4 ms under none here and 0.6 over in call 10, stays off. "
            "Calls 20-22 (50e618e): none 17.94, fused_gelu 17.80, flash 11.91 ms in one process; best alone in "
            "its process 10.36 ms (decoder 7.92); the fused GEGLU 0.93-1.00x XLA on the three large shapes in "
            "fp16 and bf16 at op level (Cephes' erfc). Call 24 (390b172, each configuration in a process of its "
            "own): against none's 18.23 ms, fused_group_norm 16.27, fused_gelu 17.72 (the Chebyshev erfc of "
            "16-bit storage, its first end-to-end row), partial_softmax 17.25 (the paper's reduction form), "
            "flash 11.25, winograd4 49.88; best 10.61 (0.58x; decoder 7.78 against 8.86). fused_gelu is under "
            "none in three of four calls (by 0.1-0.5 ms) and over in one (0.6): it stays off until best with it "
            "is measured against best without"),
    ("jax", "NVIDIA H100 80GB HBM3", "bfloat16"): MeasuredRule(
        **_16BIT_SWITCHES,
        why="H100 80GB HBM3, 2026-12-07 (experiments/results/issue13_h100_2026-12-07, calls 11-13): the bf16 "
            "UNet iteration with each switch alone against none's 18.0 ms (call 11, one process): "
            "fused_group_norm 17.6, fused_gelu 18.6, partial_softmax 17.9, flash 13.6 ms; winograd4 41.8 ms "
            "(call 12); so the fp16 rule. best (call 13, today's defaults): 11.7 against none's 18.3 ms "
            "(0.64x), decoder 7.9 against 8.8 ms"),
    ("jax", "NVIDIA H100 80GB HBM3", "float32"): MeasuredRule(
        **_FLOAT32_SWITCHES,
        why="H100 80GB HBM3, 2026-12-07 (experiments/results/issue13_h100_2026-12-07, call 12, one process, "
            "weights in XLA's layouts): fp32 against none's UNet 78.1 ms and decoder 94.0 ms: fused_group_norm "
            "76.3 and 94.6 ms, winograd4 76.6 and 36.7 ms (Winograd F(4, 3) cuts the decoder 2.6x where the "
            "convolutions run at HIGHEST without tensor cores, as on the H200 at op level), paper 76.9 and "
            "36.3 ms. Attention naive and GEGLU unfused from the H200's fp32 op measurements (kernels run 3 of "
            "issue13_h200_2026-12-04): not measured in fp32 on the H100. best itself (call 25, its own "
            "process, another session): UNet 76.2 ms, decoder 36.9 ms"),
    ("jax", "NVIDIA H200", "bfloat16"): _H200_16BIT,
    ("jax", "NVIDIA H200", "float32"): MeasuredRule(
        **_FLOAT32_SWITCHES,
        why="H200, 2026-12-04 (experiments/results/issue13_h200_2026-12-04, kernels run 3): the fused "
            "GroupNorm+SiLU 1.5-2.1x XLA on five SD shapes and 1.04x on (2, 1280, 16, 16); the Pallas GEGLU "
            "0.93-1.03x XLA, so off; attention in fp32 (HIGHEST, no tensor cores): naive (XLA) 0.82-0.95x "
            "torch SDPA, partial_softmax 0.56-0.84x and flash 0.18-0.38x on (2, 8, 4096, 4096 | 77, 40) and "
            "(2, 8, 1024, 1024, 80), so naive everywhere; Winograd F(4, 3) 2.6x XLA's direct convolution at "
            "conv3x3 (1, 512, 128, 128) (0.773 against 2.01 ms, 2026-12-01). The fp32 networks end to end are "
            "not measured on the H200 (the first UNet call of `none` took over 90 s)"),
}


def measured_rule(backend: str, device: str, dtype: str) -> MeasuredRule:
    """``MEASURED``'s rule for a backend, device and storage dtype, or a ValueError naming them
    and the measured ones (``best()`` never guesses for a device it was not measured on)."""
    rule = MEASURED.get((backend, device, dtype))
    if rule is None:
        measured = ", ".join(f"{b} on {d} ({t})" for b, d, t in MEASURED)
        raise ValueError(f"optimizations: Optimizations.best() has no measurements for the {backend} backend on "
                         f"{device!r} with {dtype} storage (measured: {measured}); use Optimizations.none(), "
                         f".paper() or explicit switches")
    return rule


def auto_attention_method(head_dim: int, vendor: str) -> str:
    """The paper's rule: "flash" for d = 40 on Adreno (Qualcomm) and Apple GPUs, else "partial_softmax"."""
    vendor = vendor.lower()
    if head_dim == 40 and any(v in vendor for v in FLASH_VENDORS):
        return "flash"
    return "partial_softmax"


def ablation() -> dict[str, Optimizations]:
    """The rows of an ablation: no switch, each of the paper's switches alone (each attention
    variant and Winograd tile on its own), and all of them (``"paper"``)."""
    none = Optimizations.none()
    return {
        "none": none,
        "fused_group_norm": none.with_(fused_group_norm=True),
        "fused_gelu": none.with_(fused_gelu=True),
        "partial_softmax": none.with_(attention="partial_softmax"),
        "flash": none.with_(attention="flash"),
        **{f"winograd{m}": none.with_(winograd_tile=m) for m in WINOGRAD_TILES},
        "paper": Optimizations.paper(),
    }

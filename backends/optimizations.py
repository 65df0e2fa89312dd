"""The paper's switches, as one value that sets a backend's defaults.

    Optimizations.none()   every op unfused: GroupNorm and GELU as separate kernels, naive
                           attention (A and P stored), direct convolution
    Optimizations.paper()  the paper's configuration: fused GroupNorm, fused GELU, attention
                           "auto" (the paper's rule, below), Winograd F(4x4, 3x3) for every
                           eligible convolution (3x3, stride 1)

An op called with an explicit variant (``method=``, ``fused=``, ``tile=``) ignores the default.

The paper's attention rule ("auto"): FlashAttention on Adreno and Apple GPUs for head dimension
d = 40, the partially fused softmax everywhere else (../shared/paper.md, optimization 3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ATTENTION_METHODS = ("naive", "partial_softmax", "flash", "auto")
WINOGRAD_TILES = (2, 4, 6)
#: Device vendors on which the paper uses FlashAttention (for d = 40).
FLASH_VENDORS = ("qualcomm", "apple")


@dataclass(frozen=True)
class Optimizations:
    fused_group_norm: bool = False
    fused_gelu: bool = False
    attention: str = "naive"
    winograd_tile: int | None = None  # None: direct convolution

    def __post_init__(self):
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
    def named(cls, name: str) -> "Optimizations":
        """``"none"`` or ``"paper"`` (the generate command's --optimizations)."""
        if name not in ("none", "paper"):
            raise ValueError(f"optimizations: expected 'none' or 'paper', got {name!r}")
        return getattr(cls, name)()

    def with_(self, **changes) -> "Optimizations":
        """A copy with some switches changed, e.g. ``Optimizations.paper().with_(winograd_tile=None)``."""
        return replace(self, **changes)


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

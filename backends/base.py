"""What every backend shares: the paper's switches and how an op resolves its variant.

A backend subclass implements the op interface of ../shared/DESIGN.md; this base class turns a
call's variant arguments (``method=None``, ``fused=None``, ``tile=None``) into the concrete
variant using the backend's ``Optimizations``, and records every "auto" decision so that
benchmark tables can report it.
"""

from __future__ import annotations

from collections import Counter

from reference._checks import pair

from .optimizations import ATTENTION_METHODS, WINOGRAD_TILES, Optimizations, auto_attention_method


class Backend:
    name = "base"
    #: vendor string used by the paper's "auto" attention rule
    vendor = "cpu"

    def __init__(self, optimizations: Optimizations | str | None = None):
        if optimizations is None:
            optimizations = Optimizations.none()
        elif isinstance(optimizations, str):
            optimizations = Optimizations.named(optimizations)
        elif not isinstance(optimizations, Optimizations):
            raise TypeError(f"optimizations: expected an Optimizations value or 'none'/'paper', got {optimizations!r}")
        self.optimizations = optimizations
        #: how often each "auto" or default choice resolved to each variant, e.g.
        #: {("attention", "auto", "partial_softmax"): 16, ("conv2d", "default", "winograd4"): 30}
        self.choices: Counter = Counter()

    def __repr__(self):
        return f"{type(self).__name__}(optimizations={self.optimizations})"

    # -- device memory -----------------------------------------------------------------------

    def memory_stats(self) -> dict:
        """Device memory held by this backend's arrays: ``{"in_use_bytes", "peak_bytes",
        "peak_scope"}``. ``peak_scope`` says what the peak covers: ``"since reset"`` (since the
        last ``reset_peak_memory``), ``"process"`` (the whole process; the device cannot reset
        it) or ``"unavailable"`` (both numbers None). The base class (and the numpy backend)
        knows nothing."""
        return {"in_use_bytes": None, "peak_bytes": None, "peak_scope": "unavailable"}

    def reset_peak_memory(self) -> None:
        """Start a new peak window (where the backend can)."""

    def synchronize(self, x=None):
        """Wait until the device has finished the work queued so far (and ``x`` is ready); returns
        ``x``. Timings must call it before reading the clock. A no-op for synchronous backends."""
        return x

    # -- variant resolution ------------------------------------------------------------------

    def _fused(self, op: str, fused: bool | None) -> bool:
        if fused is None:
            return self.optimizations.fused_group_norm if op == "group_norm" else self.optimizations.fused_gelu
        if not isinstance(fused, bool):
            raise TypeError(f"fused: expected True, False or None, got {fused!r}")
        return fused

    def _attention_method(self, method: str | None, head_dim: int) -> str:
        requested = self.optimizations.attention if method is None else method
        if requested not in ATTENTION_METHODS:
            raise ValueError(f"method: expected one of {ATTENTION_METHODS}, got {method!r}")
        if requested == "auto":
            chosen = auto_attention_method(head_dim, self.vendor)
            self.choices[("attention", "auto", chosen)] += 1
            return chosen
        return requested

    def _conv_method(self, method: str | None, tile: int | None, w_shape, stride) -> tuple[str, int | None]:
        """(method, tile) for a convolution. ``method=None`` uses Winograd with the default tile
        for every eligible layer (3x3, stride 1) and direct convolution for the others."""
        if method is None:
            eligible = tuple(w_shape[2:]) == (3, 3) and pair("stride", stride) == (1, 1)
            tile = tile if tile is not None else self.optimizations.winograd_tile
            chosen = ("winograd", tile) if (eligible and tile is not None) else ("direct", None)
            self.choices[("conv2d", "default", f"{chosen[0]}{chosen[1] or ''}")] += 1
            return chosen
        if method == "direct":
            if tile is not None:
                raise ValueError(f"tile: only meaningful with method='winograd', got tile={tile!r} with method='direct'")
            return "direct", None
        if method == "winograd":
            tile = tile if tile is not None else (self.optimizations.winograd_tile or 4)
            if tile not in WINOGRAD_TILES:
                raise ValueError(f"tile: expected one of {WINOGRAD_TILES}, got {tile!r}")
            return "winograd", tile
        raise ValueError(f"method: expected 'direct', 'winograd' or None, got {method!r}")

"""Error metrics shared by every comparison against the float64 reference."""

from __future__ import annotations

import numpy as np

__all__ = ["relative_frobenius_error"]


def relative_frobenius_error(y_hat, y) -> float:
    """||y_hat - y||_F / ||y||_F, computed in float64."""
    y_hat = np.asarray(y_hat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat: expected shape {y.shape} to match y, got {y_hat.shape}")
    denom = np.linalg.norm(y)
    if denom == 0:
        raise ValueError("y: the reference is all zeros; the relative error is undefined (never test on zeros)")
    return float(np.linalg.norm(y_hat - y) / denom)


def assert_close(actual, expected, atol: float, rtol: float, name: str = "output") -> None:
    """Elementwise check |actual - expected| <= atol + rtol * |expected| (llm.c's form), in float64.

    On failure the message gives the number of mismatches and the first five of them, so that a
    wrong kernel shows *where* it is wrong, not just that a norm is off.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {actual.shape} != expected {expected.shape}")
    bad = ~(np.abs(actual - expected) <= atol + rtol * np.abs(expected))  # NaN counts as bad
    if bad.any():
        idx = np.argwhere(bad)[:5]
        shown = ", ".join(f"{tuple(int(i) for i in ix)}: {actual[tuple(ix)]!r} vs {expected[tuple(ix)]!r}" for ix in idx)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.size} elements differ beyond atol={atol}, rtol={rtol}; first: {shown}"
        )

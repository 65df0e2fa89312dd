"""The backend registry, the paper's switches, and how variants resolve (numpy backend)."""

import pytest

from backends import Optimizations, available_backends, get_backend
from backends.optimizations import auto_attention_method
from reference import attention as ref_attention
from reference import ops, winograd
from reference.numerics import assert_close

from .helpers import random_array


def test_registry_lists_and_rejects_by_name():
    assert available_backends() == ["jax", "numpy", "opencl"]
    with pytest.raises(ValueError, match="name: unknown backend 'cuda'; available: jax, numpy, opencl"):
        get_backend("cuda")


def test_optimizations_presets_and_validation():
    assert Optimizations.none() == Optimizations(False, False, "naive", None)
    paper = Optimizations.paper()
    assert (paper.fused_group_norm, paper.fused_gelu, paper.attention, paper.winograd_tile) == (True, True, "auto", 4)
    assert paper.with_(winograd_tile=None).winograd_tile is None and paper.winograd_tile == 4
    with pytest.raises(ValueError, match="attention: expected one of"):
        Optimizations(attention="fast")
    with pytest.raises(ValueError, match="winograd_tile: expected None or one of"):
        Optimizations(winograd_tile=3)
    with pytest.raises(ValueError, match="optimizations: expected 'none' or 'paper'"):
        Optimizations.named("all")


def test_paper_attention_rule():
    assert auto_attention_method(40, "Qualcomm Adreno 740") == "flash"
    assert auto_attention_method(40, "Apple M2") == "flash"
    assert auto_attention_method(80, "Qualcomm") == "partial_softmax"
    assert auto_attention_method(40, "NVIDIA Corporation") == "partial_softmax"


def test_auto_choices_are_recorded_and_follow_the_switches():
    be = get_backend("numpy", optimizations="paper")
    q, k, v = (random_array(s, (1, 2, 9, 40)) for s in range(3))
    out = be.attention(q, k, v)
    assert be.choices[("attention", "auto", "partial_softmax")] == 1
    assert_close(out, ref_attention.attention_partial_softmax(q, k, v), atol=0, rtol=0)

    x = random_array(3, (1, 4, 9, 9))
    w3, w1 = random_array(4, (2, 4, 3, 3)), random_array(5, (2, 4, 1, 1))
    y3 = be.conv2d(x, w3, padding=1)  # eligible: Winograd F(4,3)
    y1 = be.conv2d(x, w1)  # 1x1: direct
    y3s = be.conv2d(x, w3, stride=2, padding=1)  # strided: direct
    assert be.choices[("conv2d", "default", "winograd4")] == 1
    assert be.choices[("conv2d", "default", "direct")] == 2
    assert_close(y3, winograd.conv2d_winograd(x, w3, padding=1, m=4), atol=0, rtol=0)
    assert_close(y1, ops.conv2d(x, w1), atol=0, rtol=0)
    assert_close(y3s, ops.conv2d(x, w3, stride=2, padding=1), atol=0, rtol=0)


def test_explicit_variants_override_and_are_checked():
    be = get_backend("numpy")  # Optimizations.none()
    x = random_array(0, (1, 2, 8, 8))
    w = random_array(1, (2, 2, 3, 3))
    assert_close(be.conv2d(x, w, method="winograd", tile=6), winograd.conv2d_winograd(x, w, m=6), atol=0, rtol=0)
    with pytest.raises(ValueError, match="tile: expected one of"):
        be.conv2d(x, w, method="winograd", tile=3)
    with pytest.raises(ValueError, match="tile: only meaningful with method='winograd'"):
        be.conv2d(x, w, method="direct", tile=4)
    with pytest.raises(ValueError, match="method: expected 'direct', 'winograd' or None"):
        be.conv2d(x, w, method="fft")
    with pytest.raises(ValueError, match="w: Winograd F"):
        be.conv2d(x, random_array(2, (2, 2, 5, 5)), method="winograd")
    with pytest.raises(ValueError, match="method: expected one of"):
        be.attention(*(random_array(s, (1, 1, 4, 8)) for s in range(3)), method="sparse")
    with pytest.raises(TypeError, match="fused: expected True, False or None"):
        be.group_norm(random_array(0, (1, 4, 2, 2)), 2, fused="yes")


def test_numpy_backend_group_norm_with_silu():
    be = get_backend("numpy")
    x = random_array(0, (2, 6, 3, 3))
    assert_close(be.group_norm(x, 3, silu=True), ops.silu(ops.group_norm(x, 3)), atol=0, rtol=0)

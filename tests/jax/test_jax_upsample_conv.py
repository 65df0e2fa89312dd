"""JAX's upsample_conv2d: which form runs (``upsample_conv="phases"``: the four output phases where
they apply; counted in ``choices``), and what the phase form's program computes, read from its jaxpr: one convolution of
the small image with 2x2 kernels and 4x the output channels, and no upsampled image. The values
against the float64 definition are tests/test_upsample_conv.py's, on every backend."""

import math

import jax
import numpy as np
import pytest
from hypothesis import strategies as st

from backends.jax import upsample_conv as jax_upsample_conv
from backends.jax.backend import JaxBackend
from reference import ops

from ..helpers import assert_matches, conv_inputs, equations_outside_kernels, given_for, scales_for, seeds, to_device

pytestmark = pytest.mark.backends("jax")


def convolutions(backend, x, w, b, **kwargs):
    """(lhs shape, rhs shape) of every convolution in the jaxpr of backend.upsample_conv2d."""
    jaxpr = jax.make_jaxpr(lambda x, w, b: backend.upsample_conv2d(x, w, b, **kwargs))(x, w, b).jaxpr
    return [(tuple(e.invars[0].aval.shape), tuple(e.invars[1].aval.shape))
            for e in equations_outside_kernels(jaxpr) if e.primitive.name == "conv_general_dilated"]


def sd_like(dtype=np.float16):
    """An upsampler's (x, w, b) on the device, 8 channels at 6 x 5 pixels, and the float64 values."""
    arrays, arrays64 = conv_inputs(11, (2, 8, 6, 5), (8, 8, 3, 3), dtype, w_scale=1 / math.sqrt(72))
    return [jax.numpy.asarray(a) for a in arrays], arrays64


def test_phases_are_one_convolution_of_the_small_image(backend):
    (x, w, b), (x64, w64, b64) = sd_like()
    phases = JaxBackend(upsample_conv="phases")
    assert convolutions(phases, x, w, b) == [((2, 8, 6, 5), (32, 8, 2, 2))]
    assert phases.choices[("upsample_conv2d", "form", "phases")] == 1
    # the default form convolves the 4x larger upsampled image with the 3x3 kernel
    backend.choices.clear()
    assert convolutions(backend, x, w, b) == [((2, 8, 12, 10), (8, 8, 3, 3))]
    assert backend.choices[("upsample_conv2d", "form", "upsample")] == 1
    for be in (backend, phases):
        assert_matches(np.asarray(be.upsample_conv2d(x, w, b)), ops.upsample_conv2d(x64, w64, b64), np.float16)


def test_phases_match_reference(backend, dtype):
    # every storage dtype; 1-pixel and odd images put each phase against the zero border
    phases = JaxBackend(upsample_conv="phases")

    @given_for(backend, jax=6, seed=seeds, c=st.integers(1, 6), o=st.integers(1, 7), h=st.integers(1, 6),
               w=st.integers(1, 6), bias=st.booleans(), scale=scales_for(dtype))
    def check(seed, c, o, h, w, bias, scale):
        arrays, (x64, w64, b64) = conv_inputs(seed, (2, c, h, w), (o, c, 3, 3), dtype, scale, bias,
                                              w_scale=1 / math.sqrt(9 * c))
        phases.choices.clear()
        y = phases.upsample_conv2d(*[to_device(phases, a) for a in arrays])
        assert phases.choices[("upsample_conv2d", "form", "phases")] == 1
        assert_matches(np.asarray(y), ops.upsample_conv2d(x64, w64, b64), dtype)

    check()


@pytest.mark.parametrize("case", [dict(scale_factor=3), dict(padding=0), dict(method="winograd")],
                         ids=["factor 3", "padding 0", "winograd"])
def test_the_two_ops_where_the_phases_do_not_apply(case):
    (x, w, b), _ = sd_like(np.float32)
    backend = JaxBackend(upsample_conv="phases")
    backend.upsample_conv2d(x, w, b, **case)
    assert backend.choices[("upsample_conv2d", "form", "upsample")] == 1
    assert backend.choices[("upsample_conv2d", "form", "phases")] == 0


@pytest.mark.parametrize("bias_form", ["separate", "epilogue"])
def test_phase_form_takes_the_convolutions_bias_form(bias_form):
    (x, w, b), (x64, w64, b64) = sd_like()
    backend = JaxBackend(conv_bias=bias_form, upsample_conv="phases")
    assert_matches(np.asarray(backend.upsample_conv2d(x, w, b)), ops.upsample_conv2d(x64, w64, b64), np.float16)
    with pytest.raises(ValueError, match="bias_form: expected one of"):
        jax_upsample_conv.upsample_conv2d_phases(x, w, b, bias_form="fused")


def test_backend_option_upsample_conv_is_checked():
    with pytest.raises(ValueError, match=r"upsample_conv: expected one of \('upsample', 'phases'\), got 'subpixel'"):
        JaxBackend(upsample_conv="subpixel")
    assert JaxBackend().upsample_conv == "upsample"

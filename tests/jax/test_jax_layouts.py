"""The weights' layouts (backends/jax/layouts.py): ``parameter_layouts="auto"`` compiles a
network with XLA's choice of the weights' layouts and places them once. On a CPU XLA keeps every
weight row-major, so these tests check the mechanics (the same results as ``jax.jit``, the
weights in the program's formats after the first call and not moved again, one program per input
signature, the option checked); whether a GPU program drops its filter transposes is a device
measurement (experiments/probes/device_run.sh, ``jax_*_autolayout``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.layout import Format, Layout

from backends import get_backend
from backends.jax import layouts
from experiments import sd_latency
from reference.sd.checkpoint import random_parameters
from reference.sd.vae import VAEDecoder

from ..helpers import random_array

pytestmark = pytest.mark.backends("jax")


def conv_network(params, x, scale):
    y = jax.lax.conv_general_dilated(x, params["conv.weight"], (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return scale * (y + params["conv.bias"][None, :, None, None])


def weights():
    return {"conv.weight": jnp.asarray(random_array(0, (8, 4, 3, 3))), "conv.bias": jnp.asarray(random_array(1, (8,)))}


def test_network_program_matches_jit_and_places_the_weights_once(monkeypatch):
    params, x = weights(), jnp.asarray(random_array(2, (2, 4, 9, 7)))
    expected = jax.jit(conv_network)(params, x, 0.5)
    # the filter starts column-major (I, W, ... fastest reversed), a layout the CPU program does
    # not pick: it must be moved once, to the program's format
    weight = params["conv.weight"]
    params["conv.weight"] = jax.device_put(weight, Format(Layout(major_to_minor=(3, 2, 1, 0)), weight.sharding))
    start = params["conv.weight"].format
    program = layouts.NetworkProgram(conv_network)
    placed = []
    real_put = jax.device_put
    monkeypatch.setattr(jax, "device_put", lambda a, f: placed.append(a) or real_put(a, f))
    np.testing.assert_array_equal(np.asarray(program(params, x, 0.5)), np.asarray(expected))
    compiled = program.program(params, x, 0.5)
    formats = compiled.input_formats[0][0]
    assert all(params[name].format == formats[name] for name in params)
    assert params["conv.weight"].format != start
    moved = len(placed)
    assert moved >= 1
    np.testing.assert_array_equal(np.asarray(program(params, x, 0.5)), np.asarray(expected))
    assert len(placed) == moved  # placed on the first call only
    # another input shape: a second program, the same results as jit
    x2 = jnp.asarray(random_array(3, (1, 4, 5, 5)))
    np.testing.assert_array_equal(np.asarray(program(params, x2, 0.5)), np.asarray(jax.jit(conv_network)(params, x2, 0.5)))
    assert len(program._programs) == 2


def test_auto_parameter_layouts_run_a_network_as_jit():
    # the tiny VAE decoder (convolutions, GroupNorm, attention) through compile_network: the
    # same output as the default layouts
    config = sd_latency.component_configs(tiny=True)["decoder"]
    shapes = VAEDecoder.build({**VAEDecoder.DEFAULTS, **config}).parameter_shapes()
    params = random_parameters(shapes, seed=4)
    z = random_array(5, (1, config["latent_channels"], 8, 8)).astype(np.float32)
    outputs = []
    for parameter_layouts in layouts.PARAMETER_LAYOUTS:
        backend = get_backend("jax", parameter_layouts=parameter_layouts)
        model = VAEDecoder(config, params, backend=backend, source="random parameters")
        outputs.append(np.asarray(model(z)))
    np.testing.assert_array_equal(outputs[1], outputs[0])


def test_parameter_layouts_are_checked():
    with pytest.raises(ValueError, match="parameter_layouts: expected one of"):
        get_backend("jax", parameter_layouts="nhwc")

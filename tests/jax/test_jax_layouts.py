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
from backends.optimizations import Optimizations
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
    compiled, _ = program.program(params, x, 0.5)
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


# ----------------------------------------------------------------------------- derived weights


def flipped(w):
    """A function of a weight alone (the filter rotated by 180 degrees), to derive."""
    return w[:, :, ::-1, ::-1]


def derived_network(params, x):
    """conv_network with its filter rotated: derived from the weight where a NetworkProgram asks."""
    u, _ = layouts.derived_weight(params["conv.weight"], "flipped", flipped)
    return conv_network({**params, "conv.weight": u}, x, 1.0)


def read_inputs(jaxpr) -> set:
    """The positions of a jaxpr's inputs that it reads: an equation other than a nested jit takes
    them, a nested jit's body reads them, or they are outputs (what XLA keeps of them)."""
    read = {id(v) for v in jaxpr.outvars}
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("jit", "pjit"):
            read |= {id(eqn.invars[i]) for i in read_inputs(eqn.params["jaxpr"].jaxpr)}
        else:
            read |= {id(v) for v in eqn.invars}
    return {i for i, v in enumerate(jaxpr.invars) if id(v) in read}


def unread_weights(program, params, *inputs) -> set:
    """The names of the weights that ``program``'s jaxpr does not read (its first inputs, sorted)."""
    read = read_inputs(program.jaxpr(params, *inputs).jaxpr)
    return {name for i, name in enumerate(sorted(params)) if i not in read}


def test_derived_weights_are_inputs_computed_once(monkeypatch):
    params, x = weights(), jnp.asarray(random_array(2, (2, 4, 9, 7)))
    expected = jax.jit(conv_network)({**params, "conv.weight": flipped(params["conv.weight"])}, x, 1.0)
    program = layouts.NetworkProgram(derived_network)
    derived = []
    real_derive = program.derive
    monkeypatch.setattr(program, "derive", lambda p, d: derived.append(sorted(d)) or real_derive(p, d))
    np.testing.assert_array_equal(np.asarray(program(params, x)), np.asarray(expected))
    assert derived == [["conv.weight -> flipped"]]
    # the program takes the rotated filter as an input and does not read the weight itself
    assert sorted(program.program(params, x)[1]) == ["conv.weight -> flipped"]
    assert unread_weights(program, params, x) == {"conv.weight"}
    # a later call, and another input signature, reuse the derived weight
    np.testing.assert_array_equal(np.asarray(program(params, x)), np.asarray(expected))
    x2 = jnp.asarray(random_array(3, (1, 4, 5, 5)))
    expected2 = jax.jit(conv_network)({**params, "conv.weight": flipped(params["conv.weight"])}, x2, 1.0)
    np.testing.assert_array_equal(np.asarray(program(params, x2)), np.asarray(expected2))
    assert len(derived) == 1
    # another dict of weights gets its own
    other = {"conv.weight": jnp.asarray(random_array(4, (8, 4, 3, 3))), "conv.bias": params["conv.bias"]}
    expected_other = jax.jit(conv_network)({**other, "conv.weight": flipped(other["conv.weight"])}, x, 1.0)
    np.testing.assert_array_equal(np.asarray(program(other, x)), np.asarray(expected_other))
    assert len(derived) == 2


def test_derived_weight_is_computed_in_the_call_outside_a_network_program():
    w = jnp.asarray(random_array(0, (2, 3, 3, 3)))
    value, when = layouts.derived_weight(w, "flipped", flipped)
    assert when == "per_call"
    np.testing.assert_array_equal(np.asarray(value), np.asarray(flipped(w)))

    def network(params, x):  # a value computed from a weight is not a weight: derived in the call
        u, when = layouts.derived_weight(2 * params["conv.weight"], "flipped", flipped)
        assert when == "per_call"
        return conv_network({**params, "conv.weight": u}, x, 1.0)

    program, params = layouts.NetworkProgram(network), weights()
    program(params, jnp.asarray(random_array(2, (1, 4, 5, 5))))
    assert program.program(params, jnp.asarray(random_array(2, (1, 4, 5, 5))))[1] == {}


def tiny_decoder(backend):
    config = sd_latency.component_configs(tiny=True)["decoder"]
    shapes = VAEDecoder.build({**VAEDecoder.DEFAULTS, **config}).parameter_shapes()
    model = VAEDecoder(config, random_parameters(shapes, seed=4), backend=backend, source="random parameters")
    return model, random_array(5, (1, config["latent_channels"], 8, 8)).astype(np.float32)


@pytest.mark.parametrize("optimizations, upsample_conv, kind, count", [
    (Optimizations.none().with_(winograd_tile=4), "upsample", "winograd filter transform m=4", 15),
    (Optimizations.none(), "phases", "upsample phase kernels", 1)], ids=["winograd", "phases"])
def test_a_network_derives_its_kernels_weights_once(optimizations, upsample_conv, kind, count):
    # the tiny decoder: Winograd's transformed filters or the upsampler's phase kernels are inputs
    # of its program, computed once, and its convolutions do not read those weights; with
    # derived_weights="per_call" the program reads them in every call. The jaxprs are traced only;
    # the phases run in both modes and give the same output (tests/sd runs the paper's switches,
    # Winograd included, against the reference with the default, "once").
    unread, outputs = {}, {}
    for when in layouts.DERIVED_WEIGHTS:
        backend = get_backend("jax", optimizations=optimizations, upsample_conv=upsample_conv, derived_weights=when)
        model, z = tiny_decoder(backend)
        unread[when] = unread_weights(model._forward, model.params, *model.to_backend([z]))
        if when == "once" or upsample_conv == "phases":
            outputs[when] = np.asarray(model(z))
            assert backend.choices[("derived weight", kind, when)] == count  # each op counted once
            assert sum(n for key, n in backend.choices.items() if key[0] == "derived weight") == count
    # Winograd derives from every 3x3 filter, the phases from the upsampler's alone
    filters = {name for name, p in model.params.items() if p.shape[2:] == (3, 3)
               and (upsample_conv == "upsample" or ".upsamplers." in name)}
    assert len(filters) == count and unread["once"] == filters
    assert unread["per_call"] == set()
    if upsample_conv == "phases":
        np.testing.assert_allclose(outputs["once"], outputs["per_call"], rtol=1e-5, atol=1e-5)


def test_derived_weights_option_is_checked():
    with pytest.raises(ValueError, match="derived_weights: expected one of"):
        get_backend("jax", derived_weights="at_load")


def test_clear_caches_drops_the_derived_weights():
    backend = get_backend("jax", optimizations=Optimizations.none(), upsample_conv="phases")
    model, z = tiny_decoder(backend)
    first = np.asarray(model(z))
    program = model._forward
    assert len(program._derived) == 1 and len(program._ready) == 1
    backend.clear_caches()
    assert program._derived == {} and program._ready == {}
    np.testing.assert_array_equal(np.asarray(model(z)), first)  # placed and derived again
    assert len(program._derived) == 1

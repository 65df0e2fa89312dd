"""The backend registry, the paper's switches, how variants resolve (numpy backend), and the
device interface of every backend (the ``backend`` fixture: numpy, opencl, jax).

Every backend class implements every abstract ``_op`` of ``backends.base.Backend``, keeps the
public ops of the base class (so validation and variant resolution are the same everywhere), and
declares nothing public beyond the interface except its documented extras; ``get_backend`` passes a
backend object through and refuses options beside it; ``compile`` is the identity where ops run one
by one and ``jax.jit`` on JAX; ``clear_caches`` lets OpenCL's cached Winograd weights go (counted in
``memory_stats``); ``time`` returns positive timings (and OpenCL's launch count); ``synchronize``
returns what it waited for.
"""

import gc

import numpy as np
import pytest

from backends import Backend, Optimizations, Timing, available_backends, get_backend
from backends import optimizations
from backends.optimizations import MeasuredRule, auto_attention_method
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
    with pytest.raises(ValueError, match=r"optimizations: expected one of \('none', 'paper', 'best'\)"):
        Optimizations.named("all")
    assert Optimizations.named("best") == Optimizations.best() and Optimizations.best().measured
    with pytest.raises(ValueError, match="measured: Optimizations.best.. takes every switch"):
        Optimizations.best().with_(fused_gelu=True)


def test_best_preset_refuses_a_device_without_measurements():
    be = get_backend("numpy", optimizations="best")
    with pytest.raises(ValueError, match="best.. has no measurements for the numpy backend on 'cpu' with float32"):
        be.gelu(random_array(0, (4, 8)).astype(np.float32))
    assert be.gelu(random_array(0, (4, 8)), fused=False) is not None  # an explicit variant needs no rule


def test_best_preset_follows_the_measured_rule_per_dtype_and_head_dim(monkeypatch):
    rule = MeasuredRule(fused_group_norm=True, fused_gelu=False, attention=((64, "flash"), (1 << 30, "naive")),
                        winograd_tile=2, why="test")
    monkeypatch.setitem(optimizations.MEASURED, ("numpy", "cpu", "float64"), rule)
    be = get_backend("numpy", optimizations="best")
    x = random_array(0, (1, 4, 6, 6))
    assert_close(be.group_norm(x, 2), ops.group_norm(x, 2), atol=0, rtol=0)
    be.geglu(random_array(1, (2, 8)))
    small, large = ([random_array(s, (1, 1, 5, d)) for s in range(3)] for d in (40, 80))
    assert_close(be.attention(*small), ref_attention.attention_flash(*small), atol=0, rtol=0)
    be.attention(*large)
    w3 = random_array(4, (2, 4, 3, 3))
    assert_close(be.conv2d(x, w3, padding=1), winograd.conv2d_winograd(x, w3, padding=1, m=2), atol=0, rtol=0)
    assert dict(be.choices) == {("group_norm", "best", "fused"): 1, ("gelu", "best", "unfused"): 1,
                                ("attention", "best", "flash"): 1, ("attention", "best", "naive"): 1,
                                ("conv2d", "best", "winograd2"): 1}
    with pytest.raises(ValueError, match="with float32 storage"):  # the rule is per storage dtype
        be.group_norm(x.astype(np.float32), 2)


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


# ----------------------------------------------------------------------------- every backend's interface

#: public attributes a backend may add to the interface (documented in its class)
EXTRAS = {"numpy": set(), "opencl": {"measure", "rt", "group_norm_form"}, "jax": {"interpret", "device", "group_norm_form", "compiler_options",
                                                                               "fused_group_norm_form",
                                                                               "parameter_layouts", "group_norm_view", "group_norm_stats", "conv_bias",
                                                                               "flash_lowering", "partial_softmax_stats", "upsample_conv",
                                                                               "derived_weights"}}
#: public attributes every backend has beside the methods of ``Backend`` (set by Backend.__init__)
STATE = {"optimizations", "choices"}
ABSTRACT_OPS = sorted(n for n in Backend.__abstractmethods__ if n.startswith("_"))


def test_every_abstract_op_is_implemented(backend):
    cls = type(backend)
    assert not cls.__abstractmethods__
    assert len(ABSTRACT_OPS) == 18  # one per op of the interface
    for name in ABSTRACT_OPS:
        implementation = getattr(cls, name)
        assert implementation is not getattr(Backend, name), name
        assert not getattr(implementation, "__isabstractmethod__", False), name
        # the public op is the base class's: it validates and resolves variants before the implementation
        public = "conv2d" if name.startswith("_conv2d") else name[1:]
        assert getattr(cls, public) is getattr(Backend, public), f"{cls.__name__} overrides {public}"


def test_nothing_public_beyond_the_interface_and_documented_extras(backend):
    public = {name for name in dir(backend) if not name.startswith("_")}
    interface = {name for name in dir(Backend) if not name.startswith("_")}
    assert public - interface - STATE == EXTRAS[backend.name]
    assert interface | STATE <= public


def test_get_backend_passes_a_backend_through_and_refuses_options_beside_it(backend):
    assert get_backend(backend) is backend
    with pytest.raises(ValueError, match="optimizations: pass options to the backend's constructor"):
        get_backend(backend, optimizations="paper")
    with pytest.raises(TypeError, match="name: expected a backend name or a Backend, got int"):
        get_backend(3)


def test_compile_is_identity_where_ops_run_one_by_one_and_jit_on_jax(backend):
    traces = []

    def fn(x):
        traces.append(1)
        return backend.silu(x)

    compiled = backend.compile(fn)
    x = backend.asarray(random_array(0, (3, 4)).astype(np.float32))
    eager = backend.to_numpy(fn(x))
    traces.clear()
    for _ in range(2):
        np.testing.assert_array_equal(backend.to_numpy(compiled(x)), eager)
    if backend.name == "jax":
        assert compiled is not fn and len(traces) == 1  # traced once, then the compiled program runs
    else:
        assert compiled is fn and len(traces) == 2


@pytest.mark.backends("opencl")
def test_clear_caches_lets_the_cached_winograd_weights_go(backend):
    def conv(x, w):
        return backend.conv2d(x, w, padding=1, method="winograd", tile=4)

    # build the kernels and the runtime's one-element bias stand-in first (persistent, not a cache)
    conv(backend.asarray(np.ones((1, 4, 9, 9), np.float32)), backend.asarray(np.ones((8, 4, 3, 3), np.float32)))
    backend.clear_caches()
    gc.collect()
    base = backend.memory_stats()["in_use_bytes"]
    w = backend.asarray(random_array(1, (8, 4, 3, 3)).astype(np.float32))
    x = backend.asarray(random_array(2, (1, 4, 9, 9)).astype(np.float32))
    with backend.measure() as counted:
        y = conv(x, w)
    assert counted.cache_bytes == 36 * 8 * 4 * 4  # U: (alpha^2, O, C) float32, alpha = 6
    del x, y
    gc.collect()
    held = base + w.nbytes + counted.cache_bytes
    assert backend.memory_stats()["in_use_bytes"] == held
    del w
    gc.collect()
    assert backend.memory_stats()["in_use_bytes"] == held  # the cache keeps the weights and U alive
    backend.clear_caches()
    gc.collect()
    assert backend.memory_stats()["in_use_bytes"] == base


@pytest.mark.backends("numpy", "opencl")  # JAX caches nothing (and compiles Winograd's Pallas transforms per shape)
def test_clear_caches_keeps_results(backend):
    x = backend.asarray(random_array(3, (1, 2, 6, 6)).astype(np.float32))
    w = backend.asarray(random_array(4, (2, 2, 3, 3)).astype(np.float32))
    before = backend.to_numpy(backend.conv2d(x, w, padding=1, method="winograd", tile=4))
    backend.clear_caches()
    np.testing.assert_array_equal(backend.to_numpy(backend.conv2d(x, w, padding=1, method="winograd", tile=4)), before)


def test_time_returns_positive_timings(backend):
    x = backend.asarray(random_array(5, (64, 64)).astype(np.float32))
    timing = backend.time(lambda: backend.gelu(x, fused=True), repeats=3, warmup=1)
    assert isinstance(timing, Timing)
    assert len(timing.wall) == 3 and all(t > 0 for t in timing.wall) and timing.wall_median > 0
    if backend.name == "numpy":
        assert timing.device == [] and timing.device_median is None and timing.timer == "wall clock"
    else:
        assert len(timing.device) == 3 and all(t > 0 for t in timing.device) and timing.device_median > 0
    if backend.name == "opencl":
        assert timing.launches == 1 and timing.temp_bytes == 0  # the fused GELU: one kernel, no temporary
    else:
        assert timing.launches is None and timing.temp_bytes is None


def test_synchronize_waits_and_returns_its_argument(backend):
    x_np = random_array(2, (64, 48)).astype(np.float32)
    x = backend.asarray(x_np)
    y = backend.transpose(x, (1, 0))
    assert backend.synchronize(y) is y
    pair = (y, backend.reshape(x, (48 * 64,)))
    assert backend.synchronize(pair) is pair  # a pytree of arrays
    assert backend.synchronize() is None
    np.testing.assert_array_equal(backend.to_numpy(y), x_np.T)


def test_arrays_keep_their_shape_on_the_way_there_and_back(backend):
    # a 0-d array stays 0-d (OpenCL's upload once made it shape (1,)), and so does the op's result
    for shape in [(), (1,), (3, 1, 2)]:
        x = random_array(6, shape, offset=1.0).astype(np.float32)
        on_device = backend.asarray(x)
        assert tuple(on_device.shape) == shape
        np.testing.assert_array_equal(backend.to_numpy(on_device), x)
        assert backend.to_numpy(backend.silu(on_device)).shape == shape


def test_device_info_names_what_runs_the_ops(backend):
    info = backend.device_info()
    assert set(info) == {"name", "kind", "driver", "handle"}
    assert info["kind"] in ("gpu", "cpu") and info["name"] and info["driver"]
    assert (info["handle"] is None) == (backend.name == "numpy")

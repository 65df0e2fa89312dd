"""GELU and GEGLU, the paper's second idea: in the reference and on every backend.

The reference (reference/gelu.py): GELU against libm's erfc (also where 1 + erf would cancel,
x << 0), known values, the tanh form within its published error and really a different function,
GEGLU as a * gelu(b) of the two halves, float32 arithmetic rounded to the storage dtype. The JAX
kernels' own erfc (Cephes' erfcf: Pallas-Triton lowers no erf; in 16-bit storage Numerical Recipes'
cheaper erfcc) against scipy.

The backends (the ``backend`` fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes),
fused and unfused, both forms, against the float64 reference on the same rounded inputs: drawn
shapes (ragged against every work-group and block), GEGLU rows longer than a block, the fused
kernel's accuracy over [-8, 8] and in the negative tail, the unfused jnp graph being the erfc form,
empty shapes. The unfused OpenCL graph is the op-by-op graph of an unfused framework: it computes
1 + erf(x / sqrt 2) as a node of its own, which cancels for x < 0, so its bound is absolute (a few
ulps of max |x|, ``matches_unfused``), the others' relative. Example counts per backend
(``given_for``): the OpenCL suite's for numpy and opencl, the JAX suite's for jax (its Pallas
kernels are interpreted per shape on a CPU). Backend-specific checks:
tests/opencl/test_opencl_gelu.py (launches, temporaries, the unfused graph's kernels),
tests/jax/test_jax_gelu.py (one pallas_call, jit).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import assert_close

from .helpers import (
    REL_TOL, STORAGE_FLOOR, assert_matches, check_fused_gelu_accuracy, check_low_precision_reference, given_for,
    random_array, rounded, scales, seeds,
)

# =========================================================================== the reference


@given(seed=seeds, scale=scales)
def test_gelu_matches_libm_erf(seed, scale):
    x = random_array(seed, (257,), scale=scale)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    assert_close(ops.gelu(x), expected, atol=1e-300, rtol=1e-13)


def test_gelu_keeps_relative_accuracy_for_negative_x():
    # x/2 (1 + erf(x/sqrt2)) cancels for x << 0; the reference must not
    x = np.array([-8.0, -10.0, -20.0])
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.all(expected < 0)
    assert_close(ops.gelu(x), expected, atol=0, rtol=1e-13)


def test_gelu_known_values():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    # Phi(1) = 0.8413447460685429, Phi(3) = 0.9986501019683699
    expected = np.array([-3 * (1 - 0.9986501019683699), -(1 - 0.8413447460685429), 0.0,
                         0.8413447460685429, 3 * 0.9986501019683699])
    assert_close(ops.gelu(x), expected, atol=1e-15, rtol=1e-14)


def test_gelu_tanh_form_is_within_its_known_error():
    x = np.linspace(-8, 8, 20001)
    err = np.abs(ops.gelu(x, approximate=True) - ops.gelu(x))
    assert err.max() < 5e-4          # the published bound of the tanh approximation
    assert err.max() > 1e-5          # ...and it really is a different function


@given(seed=seeds, rows=st.integers(1, 4), half=st.integers(1, 9), scale=scales)
def test_geglu_is_first_half_times_gelu_of_second(seed, rows, half, scale):
    x = random_array(seed, (rows, 3, 2 * half), scale=scale)
    a, b = x[..., :half], x[..., half:]
    expected = a * 0.5 * b * np.vectorize(math.erfc)(-b / math.sqrt(2))
    assert_close(ops.geglu(x), expected, atol=1e-300, rtol=1e-12)


@pytest.mark.parametrize("op", [ops.gelu, ops.geglu])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_low_precision_is_fp32_arithmetic_rounded_to_storage(op, dtype, tol):
    check_low_precision_reference(op, dtype, tol)


def test_jax_kernel_erfc_matches_scipy_to_float32_resolution():
    # Pallas-Triton has no erf/erfc lowering, so the JAX kernels carry Cephes' erfcf
    # (backends.jax.gelu.erfc); Abramowitz-Stegun 7.1.26 (1.5e-7 absolute on erf, relative garbage
    # in the tail) would fail the relative bound below.
    jax = pytest.importorskip("jax")
    special = pytest.importorskip("scipy.special")
    from backends.jax import gelu as jax_gelu

    x = np.concatenate([np.linspace(-10, 10, 400_001), np.nextafter(np.float32([1.0, 2.0]), 0.0),
                        [0.0, 1.0, 2.0, -1.0, -2.0]]).astype(np.float32)
    y = np.asarray(jax.jit(jax_gelu.erfc)(x)).astype(np.float64)
    exact = special.erfc(x.astype(np.float64))
    assert np.max(np.abs(y - exact)) < 2e-7
    # Relative accuracy where erfc is small (the GELU tail), wherever the value is a normal float32.
    normal = exact > np.finfo(np.float32).tiny
    assert np.max(np.abs(y[normal] - exact[normal]) / exact[normal]) < 1e-6
    assert np.all(y[x > 9.5] < 1e-38) and np.all(y[x < -4] == 2.0)


def test_jax_chebyshev_erfc_is_within_16bit_resolution():
    # the kernels' erfc in 16-bit storage (backends.jax.gelu.erfc_chebyshev, Numerical Recipes'
    # erfcc): 4e-6 relative where the value is a normal float32 (its docstring's numbers), 60x below
    # float16's rounding; tests/jax/test_jax_gelu.py checks the stored GELU value by value
    jax = pytest.importorskip("jax")
    special = pytest.importorskip("scipy.special")
    from backends.jax import gelu as jax_gelu

    x = np.linspace(-10, 10, 400_001).astype(np.float32)
    y = np.asarray(jax.jit(jax_gelu.erfc_chebyshev)(x)).astype(np.float64)
    exact = special.erfc(x.astype(np.float64))
    assert np.max(np.abs(y - exact)) < 4e-7
    normal = exact > np.finfo(np.float32).tiny
    assert np.max(np.abs(y[normal] - exact[normal]) / exact[normal]) < 5e-6
    assert np.max(np.abs(y - exact)[np.abs(x) < 1] / exact[np.abs(x) < 1]) < 5e-7


# =========================================================================== every backend


def matches_unfused(actual, expected, dtype, magnitude, name):
    """The unfused OpenCL graph computes 1 + erf(x/sqrt 2) (or 1 + tanh) as a node of its own,
    which cancels for negative x: its error is a few ulps of ``magnitude`` (max |x| for GELU,
    max |a b| for GEGLU) in absolute terms, not relative to a tiny output, plus a rounding or two
    at the dtype's subnormal floor (STORAGE_FLOOR). Every element is checked so."""
    tol = REL_TOL[np.dtype(dtype)]
    assert actual.dtype == dtype
    atol = tol * magnitude + 2 * STORAGE_FLOOR[np.dtype(dtype)]
    assert_close(actual, expected, atol=atol, rtol=20 * tol, name=name)


#: backends whose unfused GELU is the op-by-op graph with a literal 1 + erf (absolute bound);
#: the others' unfused graph evaluates the erfc form (relative bound, as the fused kernel)
OP_BY_OP_GRAPH = {"opencl"}
#: examples of the JAX backend per variant (its fused kernels are interpreted per shape on a CPU)
JAX_EXAMPLES = {True: 4, False: 8}


def check_unfused(backend, actual, expected, dtype, magnitude, name):
    if backend.name in OP_BY_OP_GRAPH:
        matches_unfused(actual, expected, dtype, magnitude, name)
    else:
        assert_matches(actual, expected, dtype, name=name)


def check_variant(backend, run, fused, expected, dtype, magnitude, name):
    """``run(fused)`` -> numpy output. The unfused variant against the reference (``check_unfused``);
    the fused one against the reference and against the unfused one (``matches_unfused``)."""
    y = run(fused)
    if not fused:
        check_unfused(backend, y, expected, dtype, magnitude, f"{name} unfused")
        return
    assert_matches(y, expected, dtype, name=f"{name} fused")
    matches_unfused(run(False), y.astype(np.float64), dtype, magnitude, f"{name}: unfused vs fused")


#: 0-D up to 4-D
gelu_shapes = st.lists(st.integers(1, 9), min_size=0, max_size=4).map(tuple)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_gelu_matches_reference(backend, dtype, fused):
    @given_for(backend, jax=JAX_EXAMPLES[fused], seed=seeds, shape=gelu_shapes, scale=scales,
               approximate=st.booleans())
    def check(seed, shape, scale, approximate):
        x, x64 = rounded(random_array(seed, shape, scale=scale), dtype)
        expected = ops.gelu(x64, approximate)
        def run(fused):
            return backend.to_numpy(backend.gelu(backend.asarray(x), approximate=approximate, fused=fused))

        check_variant(backend, run, fused, expected, dtype, np.max(np.abs(x64), initial=0.0),
                      f"gelu approximate={approximate}")

    check()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_geglu_matches_reference(backend, dtype, fused):
    @given_for(backend, jax=JAX_EXAMPLES[fused], seed=seeds,
               lead=st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple), features=st.integers(1, 70),
               scale=scales, approximate=st.booleans())
    def check(seed, lead, features, scale, approximate):
        if dtype == np.float16:
            scale = min(scale, 10.0)  # a * gelu(b) grows like scale^2: 1e3 would overflow fp16 (max 65504)
        x, x64 = rounded(random_array(seed, lead + (2 * features,), scale=scale), dtype)
        expected = ops.geglu(x64, approximate)
        # the reference is a * gelu(b) of the halves
        assert_close(expected, x64[..., :features] * ops.gelu(x64[..., features:], approximate),
                     atol=1e-15 * np.max(x64**2), rtol=1e-12)
        def run(fused):
            y = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=fused))
            assert y.shape == lead + (features,)
            return y

        check_variant(backend, run, fused, expected, dtype, np.max(np.abs(x64[..., :features] * x64[..., features:])),
                      f"geglu approximate={approximate}")

    check()


@pytest.mark.parametrize("shape", [(2, 2 * 1100), (3, 2 * 1024)])  # F ragged over nine JAX blocks; F one block
def test_geglu_long_rows(backend, shape):
    x, x64 = rounded(random_array(5, shape, scale=2.0), np.float32)
    for approximate in (False, True):
        y = backend.to_numpy(backend.geglu(backend.asarray(x), approximate=approximate, fused=True))
        assert_matches(y, ops.geglu(x64, approximate), np.float32, name=f"geglu {shape} approximate={approximate}")


#: relative error of the fused float32 GELU in the tail x < -2 (OpenCL: its libm erfc; JAX: Cephes'
#: erfcf; numpy: the reference's float32 erfc)
TAIL_REL_TOL = {"numpy": 1e-5, "opencl": 2e-5, "jax": 1e-5}


def test_fused_gelu_is_the_exact_erf_form_to_a_few_ulps(backend):
    check_fused_gelu_accuracy(backend, tail_rel_tol=TAIL_REL_TOL[backend.name])


@pytest.mark.backends("numpy", "jax")  # OpenCL's unfused graph cancels in the tail on purpose (see the module)
def test_unfused_gelu_is_the_erfc_form_and_approximate_the_tanh_form(backend):
    # the exact form to a few float32 ulps over [-10, 10] (1 + erf would cancel for x < 0), and the
    # two forms differ by up to 5e-4 (the reference's test): the float32 bound tells them apart
    x = np.linspace(-10, 10, 4001).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = backend.to_numpy(backend.gelu(backend.asarray(x), fused=False))
    approx = backend.to_numpy(backend.gelu(backend.asarray(x), approximate=True, fused=False))
    assert np.max(np.abs(exact - ops.gelu(x64))) < 4e-6
    assert np.max(np.abs(approx - ops.gelu(x64, approximate=True))) < 4e-6
    negative = x64 < -3
    np.testing.assert_allclose(exact[negative], ops.gelu(x64)[negative], rtol=1e-4)  # relative, where tiny
    with pytest.raises(AssertionError):
        assert_matches(approx, ops.gelu(x64), np.float32)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_gelu_and_geglu_keep_empty_shapes(backend, fused):
    assert backend.gelu(backend.asarray(np.ones((0, 3), np.float32)), fused=fused).shape == (0, 3)
    assert backend.geglu(backend.asarray(np.ones((2, 0), np.float32)), fused=fused).shape == (2, 0)

"""JAX GELU and GEGLU: each fused op is ONE pallas_call with no math outside it, for ragged
(padded) and block-aligned shapes, both forms; the check itself sees an unfused graph; the fused
ops jit through the backend. Accuracy on every backend: tests/test_gelu.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ..helpers import assert_one_pallas_call, random_array

pytestmark = pytest.mark.backends("jax")


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_and_geglu_are_one_pallas_call(backend, approximate):
    for shape in [(3, 7, 22), (2, 4096)]:  # ragged (padded) and block-aligned
        x = jnp.ones(shape, jnp.bfloat16)
        assert_one_pallas_call(lambda x: backend.gelu(x, approximate=approximate, fused=True), x)
        assert_one_pallas_call(lambda x: backend.geglu(x, approximate=approximate, fused=True), x)


def test_the_jaxpr_check_can_fail(backend):
    # the check itself sees an unfused graph: a jnp mean outside any kernel
    with pytest.raises(AssertionError):
        assert_one_pallas_call(lambda x: backend.gelu(x, fused=True) - jnp.mean(x), jnp.ones((4, 4)))


def test_gelu_and_geglu_jit_through_the_backend(backend):
    x = backend.asarray(random_array(6, (3, 10)).astype(np.float16))
    for name in ("gelu", "geglu"):
        op = getattr(backend, name)
        eager = backend.to_numpy(op(x, fused=True))
        np.testing.assert_array_equal(backend.to_numpy(jax.jit(lambda x: op(x, fused=True))(x)), eager)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_16bit_gelu_is_the_exact_gelu_within_one_rounding(dtype):
    """In 16-bit storage the fused kernels take the Chebyshev erfc (``default_erfc_form``): on every
    16-bit value in [-12, 12] the stored GELU is one of the two 16-bit neighbours of the exact
    (float64) GELU, or exactly it (or zero where that is below float32's normal range), and so is
    GEGLU's a * gelu(b); the float32-accurate Cephes form is kept for float32 storage."""
    from backends.jax import gelu as jax_gelu
    from reference import ops

    assert [jax_gelu.default_erfc_form(d) for d in (np.float32, np.float16, jnp.bfloat16)] == \
        ["cephes", "chebyshev", "chebyshev"]
    every = np.arange(2**16, dtype=np.uint16).view(np.float16 if dtype == np.float16 else jnp.bfloat16)
    values = np.unique(every[np.isfinite(every)].astype(np.float64))  # every finite 16-bit value
    x = values[np.abs(values) <= 12].astype(dtype)
    exact = ops.gelu(x.astype(np.float64))
    below = values[np.searchsorted(values, exact, side="right") - 1]
    above = values[np.searchsorted(values, exact, side="left")]

    flushed = np.abs(exact) < np.finfo(np.float32).tiny  # float32 arithmetic may flush subnormals to zero

    def neighbours_of_exact(y):
        y = np.asarray(y).astype(np.float64).ravel()
        return np.all(((below <= y) & (y <= above)) | (flushed & (y == 0)))

    gelu = jax_gelu.gelu_fused(jnp.asarray(x), False, True)
    assert neighbours_of_exact(gelu)
    ones = np.ones_like(x)
    geglu = jax_gelu.geglu_fused(jnp.asarray(np.stack([ones, x], axis=0).reshape(1, -1)), False, True)
    assert neighbours_of_exact(geglu)


def test_erfc_form_is_checked():
    from backends.jax import gelu as jax_gelu

    with pytest.raises(ValueError, match="erfc_form: expected None or one of"):
        jax_gelu.gelu_fused(jnp.ones(4, jnp.float16), False, True, erfc_form="tanh")

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

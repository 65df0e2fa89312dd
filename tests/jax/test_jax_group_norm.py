"""JAX GroupNorm: the fused Pallas kernel is ONE pallas_call with no math outside it (the paper's
"one GPU command"), it jits through the backend, and its block loop covers every slab length.

The jaxpr check counts the pallas_call primitives of the jitted op and allows only layout
primitives (views, the ragged pad and crop) outside it. Accuracy on every backend:
tests/test_group_norm.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.jax import pallas_util

from ..helpers import assert_one_pallas_call, random_array

pytestmark = pytest.mark.backends("jax")


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("shape, groups", [((2, 6, 17, 19), 2),   # slab 969: padded to 1024 and masked
                                           ((1, 8, 4096), 2)])    # slab 16384: four blocks, no pad
def test_group_norm_is_one_pallas_call(backend, shape, groups, silu):
    x = jnp.ones(shape, jnp.float32)
    w = jnp.ones(shape[1], jnp.float32)
    assert_one_pallas_call(lambda x, w: backend.group_norm(x, groups, w, w, fused=True, silu=silu), x, w)
    assert_one_pallas_call(lambda x: backend.group_norm(x, groups, fused=True, silu=silu), x)


def test_group_norm_jits_through_the_backend(backend):
    x = backend.asarray(random_array(3, (2, 6, 5, 7)).astype(np.float32))
    w = backend.asarray(random_array(4, (6,)).astype(np.float32))
    eager = backend.to_numpy(backend.group_norm(x, 3, w, w, fused=True, silu=True))
    jitted = jax.jit(lambda x, w: backend.group_norm(x, 3, w, w, fused=True, silu=True))
    np.testing.assert_array_equal(backend.to_numpy(jitted(x, w)), eager)


@given(length=st.integers(1, 300_000), max_block=st.sampled_from([1024, 4096]))
def test_choose_block_covers_the_length_with_a_power_of_two(length, max_block):
    block, padded = pallas_util.choose_block(length, max_block)
    assert block & (block - 1) == 0 and block <= max_block and padded % block == 0
    assert length <= padded < length + block
    if length % max_block == 0:
        assert (block, padded) == (max_block, length)  # SD's sizes: the largest block, no padding

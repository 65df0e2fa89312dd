"""Helpers shared by the test modules: seeded arrays and hypothesis strategies.

Arrays always come from a seeded generator (never from raw float strategies, never zeros);
hypothesis draws the seed, the shape and the scale.
"""

import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

#: True under the thorough profile: tests may draw larger shapes.
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "thorough"

seeds = st.integers(min_value=0, max_value=2**32 - 1)
#: Input scales across six orders of magnitude (kernels must not assume unit-scale data).
scales = st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3])


def random_array(seed: int, shape, scale: float = 1.0, dtype=np.float64, offset: float = 0.0):
    """Normal(offset, scale^2) values from a seeded generator."""
    rng = np.random.default_rng(seed)
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)



def examples(n: int | None = None):
    """Hypothesis settings for a slower test: ``n`` examples under the ``ci`` profile (10 n under
    ``thorough``); None keeps the profile's count."""
    return settings() if n is None else settings(max_examples=10 * n if THOROUGH else n)

"""Matrix products: ``linear`` (x W^T + b over the last axis), in the reference and on every backend.

The reference (reference/gemm.py) against the sum written out. The backends (the ``backend``
fixture: numpy, opencl, jax; ``dtype``: each one's storage dtypes) against the float64 reference on
the same rounded inputs: drawn batch shapes (none to two lead axes, SD-like (2, rows) batches),
ragged in- and out-features against OpenCL's GEMM tiles, with and without bias, unit-size or
1/sqrt(k)-scaled weights; and float32 products computed in float32, not TF32 or bfloat16 (JAX
on a GPU would use TF32 unless told HIGHEST). Example counts per backend (``given_for``): the
OpenCL suite's for numpy and opencl, the JAX suite's for jax. The OpenCL GEMM's launch count:
tests/opencl/test_opencl_runtime.py.
"""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference import ops
from reference.numerics import assert_close, relative_frobenius_error

from .helpers import assert_matches, given_for, random_array, rounded, scales_for, seeds, to_device


@given(seed=seeds, n=st.integers(1, 7), fin=st.integers(1, 9), fout=st.integers(1, 9))
def test_linear_is_x_wt_plus_b(seed, n, fin, fout):
    x = random_array(seed, (2, n, fin))
    w, b = random_array(seed + 1, (fout, fin)), random_array(seed + 2, (fout,))
    expected = np.array([[[sum(x[i, j, k] * w[o, k] for k in range(fin)) + b[o] for o in range(fout)]
                          for j in range(n)] for i in range(2)])
    assert_close(ops.linear(x, w, b), expected, atol=1e-12, rtol=1e-12)


lead_shapes = st.one_of(st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple),
                        st.tuples(st.just(2), st.integers(1, 40)))


def test_linear_matches_reference(backend, dtype):
    @given_for(backend, jax=8, seed=seeds, lead=lead_shapes, k=st.integers(1, 70), out=st.integers(1, 40),
               bias=st.booleans(), unit_weights=st.booleans(), scale=scales_for(dtype))
    def check(seed, lead, k, out, bias, unit_weights, scale):
        x, x64 = rounded(random_array(seed, lead + (k,), scale=scale), dtype)
        w, w64 = rounded(random_array(seed + 1, (out, k), scale=1.0 if unit_weights else 1 / math.sqrt(k)), dtype)
        b, b64 = rounded(random_array(seed + 2, (out,), scale=scale), dtype) if bias else (None, None)
        y = backend.linear(backend.asarray(x), backend.asarray(w), to_device(backend, b))
        assert_matches(backend.to_numpy(y), ops.linear(x64, w64, b64), dtype, name="linear")

    check()


def test_float32_linear_is_not_tf32(backend):
    # Operands with 16+ significant bits: a TF32 (10-bit) or bf16 pass would be ~1e-4 off.
    x = (1.0 + random_array(0, (8, 64), scale=1e-3)).astype(np.float32)
    w = (1.0 + random_array(1, (16, 64), scale=1e-3)).astype(np.float32)
    y = backend.to_numpy(backend.linear(backend.asarray(x), backend.asarray(w)))
    assert relative_frobenius_error(y, ops.linear(x.astype(np.float64), w.astype(np.float64))) < 1e-6

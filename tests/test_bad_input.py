"""Bad input raises a clear error that names the argument and what was expected: in the reference
(its validators, reference/_checks.py), and through every backend's ops (the ``backend`` fixture),
which validate with the same validators in the ``Backend`` base class, so the message is the same
on every backend as on numpy; plus each backend's own refusals (its array type, its storage
dtypes).
"""

import numpy as np
import pytest

from backends.numpy_backend import NumpyBackend
from reference import attention, ops, winograd

x4 = np.ones((1, 6, 5, 5), np.float32) * 0.5
w33 = np.ones((2, 6, 3, 3), np.float32) * 0.25
q = np.ones((1, 2, 5, 8), np.float32)


@pytest.mark.parametrize("call,exc,words", [
    (lambda: ops.group_norm(x4, 4), ValueError, ["num_groups", "C=6", "not divisible"]),
    (lambda: ops.group_norm(x4, 3, weight=np.ones(5, np.float32)), ValueError, ["weight", "(6,)"]),
    (lambda: ops.group_norm(x4.astype(np.int32), 3), TypeError, ["x", "int32", "float32"]),
    (lambda: ops.group_norm(x4.tolist(), 3), TypeError, ["x", "numpy.ndarray"]),
    (lambda: ops.group_norm(x4, 3, weight=np.ones(6)), TypeError, ["dtypes differ", "weight=float64"]),
    (lambda: ops.geglu(np.ones((2, 5))), ValueError, ["x", "even"]),
    (lambda: ops.softmax(np.ones((2, 5)), axis=2), ValueError, ["axis"]),
    (lambda: ops.linear(np.ones((2, 5)), np.ones((3, 4))), ValueError, ["weight", "(out_features, 5)"]),
    (lambda: ops.conv2d(x4, np.ones((2, 5, 3, 3), np.float32)), ValueError, ["w", "6 input channels"]),
    (lambda: ops.conv2d(x4, w33, stride=0), ValueError, ["stride"]),
    (lambda: ops.conv2d(x4[0], w33), ValueError, ["x", "4 dimensions"]),
    (lambda: winograd.conv2d_winograd(x4, np.ones((2, 6, 5, 5), np.float32)), ValueError, ["w", "3x3", "(5, 5)"]),
    (lambda: winograd.conv2d_winograd(x4, w33, stride=2), ValueError, ["stride", "1"]),
    (lambda: winograd.conv2d_winograd(x4, w33, m=0), ValueError, ["m", "positive"]),
    (lambda: winograd.conv2d_winograd(x4.astype(np.int64), w33), TypeError, ["x", "int64"]),
    (lambda: winograd.winograd_matrices(4, points=(0, 1, -1, 2)), ValueError, ["points", "5", "got 4"]),
    (lambda: winograd.winograd_matrices(4, points=(0, 1, -1, 2, 2)), ValueError, ["points", "distinct"]),
    (lambda: winograd.winograd_matrices(4, points="nope"), ValueError, ["points", "unknown", "lavin"]),
    (lambda: winograd.winograd_matrices(6, points="tflite"), ValueError, ["points", "tflite", "F(6,3)"]),
    (lambda: winograd.winograd_matrices(4, points="tflite", exact=True), ValueError, ["points", "exact=False"]),
    (lambda: attention.attention(q, np.ones((1, 2, 7, 4), np.float32), q), ValueError, ["k", "(1, 2, M, 8)"]),
    (lambda: attention.attention(q, q, np.ones((1, 2, 4, 8), np.float32)), ValueError, ["v", "match k"]),
    (lambda: attention.attention(q, q.astype(np.float64), q), TypeError, ["dtypes differ"]),
    (lambda: attention.attention(q[0], q, q), ValueError, ["q", "4 dimensions"]),
    (lambda: attention.attention_partial_softmax(q, q, q, block=0), ValueError, ["block", "positive"]),
    (lambda: attention.attention_flash(q, q, q, block_k=-1), ValueError, ["block_k", "positive"]),
    (lambda: winograd.relative_frobenius_error(np.ones(3), np.zeros(3)), ValueError, ["zeros"]),
])
def test_bad_input_is_named(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# ----------------------------------------------------------------------------- through every backend

x6 = np.full((1, 6, 4, 4), 0.5, np.float32)
h4 = np.ones((2, 3, 4, 4), np.float32)
h3 = np.ones((2, 3, 4), np.float32)

#: (id, call(backend, array) -> None, exception, words the message must contain); ``array`` converts
#: a host array to the backend's
BACKEND_CASES = [
    ("group_norm groups", lambda be, a: be.group_norm(a(x6), 4), ValueError,
     ["num_groups", "C=6", "not divisible by num_groups=4"]),
    ("group_norm zero groups", lambda be, a: be.group_norm(a(x6), 0), ValueError, ["num_groups", "positive int"]),
    ("group_norm weight", lambda be, a: be.group_norm(a(x6), 3, a(np.ones(5, np.float32))), ValueError,
     ["weight", "(6,)"]),
    ("group_norm fused", lambda be, a: be.group_norm(a(x6), 3, fused="yes"), TypeError,
     ["fused", "True, False or None"]),
    ("layer_norm bias", lambda be, a: be.layer_norm(a(h3), None, a(np.ones(3, np.float32))), ValueError,
     ["bias", "(4,)"]),
    ("linear weight", lambda be, a: be.linear(a(x6), a(np.ones((3, 5), np.float32))), ValueError,
     ["weight: expected shape (out_features, 4)"]),
    ("geglu odd", lambda be, a: be.geglu(a(np.ones((2, 3), np.float32)), fused=False), ValueError, ["x", "even size"]),
    ("softmax axis", lambda be, a: be.softmax(a(np.ones((2, 5), np.float32)), axis=2), ValueError,
     ["axis", "out of range"]),
    ("add shapes", lambda be, a: be.add(a(h4), a(h3)), ValueError,
     ["b: expected the shape of a (2, 3, 4, 4), got (2, 3, 4)"]),
    ("add dtypes", lambda be, a: be.add(a(h4), a(h4.astype(np.float16))), TypeError,
     ["dtypes differ", "a=float32", "b=float16"]),
    ("add_broadcast v", lambda be, a: be.add_broadcast(a(h4), a(np.ones((3, 2), np.float32))), ValueError,
     ["v: expected shape (2, 3)"]),
    ("add_broadcast v 1-D", lambda be, a: be.add_broadcast(a(h4), a(np.ones(6, np.float32))), ValueError,
     ["v", "2 dimensions"]),
    ("mul_scalar string", lambda be, a: be.mul_scalar(a(h4), "2"), TypeError, ["s: expected a real number", "'2'"]),
    ("mul_scalar bool", lambda be, a: be.mul_scalar(a(h4), True), TypeError, ["s: expected a real number"]),
    ("mul_scalar array", lambda be, a: be.mul_scalar(a(h4), np.ones(1, np.float32)), TypeError,
     ["s: expected a real number", "array"]),
    ("upsample 0", lambda be, a: be.upsample_nearest2d(a(x6), 0), ValueError, ["scale_factor", "positive int"]),
    ("upsample True", lambda be, a: be.upsample_nearest2d(a(x6), True), ValueError, ["scale_factor", "positive int"]),
    ("upsample 2.0", lambda be, a: be.upsample_nearest2d(a(x6), 2.0), ValueError, ["scale_factor", "positive int"]),
    ("concat shapes", lambda be, a: be.concat([a(np.ones((1, 2, 3, 3), np.float32)),
                                               a(np.ones((1, 2, 4, 3), np.float32))]),
     ValueError, ["arrays[1]: shape (1, 2, 4, 3) does not match"]),
    ("concat empty", lambda be, a: be.concat([]), ValueError, ["arrays", "non-empty"]),
    ("reshape count", lambda be, a: be.reshape(a(h3), (4, 4)), ValueError,
     ["shape: expected non-negative sizes with 24 elements in all"]),
    ("reshape -1", lambda be, a: be.reshape(a(h3), (-1, 6)), ValueError, ["shape: expected non-negative sizes"]),
    ("reshape int", lambda be, a: be.reshape(a(h3), 24), TypeError, ["shape: expected a tuple of ints"]),
    ("transpose repeated", lambda be, a: be.transpose(a(h3), (0, 0, 1)), ValueError,
     ["axes: expected a permutation of (0, 1, 2) for x of shape (2, 3, 4)"]),
    ("transpose short", lambda be, a: be.transpose(a(h3), (1, 0)), ValueError, ["axes: expected a permutation"]),
    ("transpose out of range", lambda be, a: be.transpose(a(h3), (0, 1, 3)), ValueError,
     ["axes: expected a permutation"]),
    ("transpose None", lambda be, a: be.transpose(a(h3), None), TypeError, ["axes: expected a tuple of ints"]),
]


@pytest.mark.parametrize("call, exc, words", [case[1:] for case in BACKEND_CASES],
                         ids=[case[0] for case in BACKEND_CASES])
def test_backend_ops_name_the_bad_argument_as_numpy_does(backend, call, exc, words):
    with pytest.raises(exc) as info:
        call(backend, backend.asarray)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    with pytest.raises(exc) as on_numpy:
        call(NumpyBackend(), np.asarray)
    assert message == str(on_numpy.value)  # the same validator, the same words


def int_array(backend):
    """A (2, 3) int32 array of the backend's array type (the backends' asarray refuses to make one)."""
    host = np.ones((2, 3), np.int32)
    if backend.name == "opencl":
        import pyopencl.array as cla

        return cla.to_device(backend.rt.queue, host)
    if backend.name == "jax":
        import jax.numpy as jnp

        return jnp.asarray(host)
    return host


def test_backend_ops_refuse_integer_arrays(backend):
    with pytest.raises(TypeError, match="x: unsupported dtype int32"):
        backend.softmax(int_array(backend))
    with pytest.raises(TypeError, match="x: unsupported dtype int32"):
        backend.gelu(int_array(backend))


#: the message of an op given a host array (or, on numpy, a list) instead of the backend's array
WRONG_ARRAY = {"numpy": r"x: expected a numpy.ndarray, got list$",
               "opencl": r"x: expected a pyopencl.Array, got ndarray \(convert it with the backend's asarray\)",
               "jax": r"x: expected a jax\..*Array, got ndarray \(convert it with the backend's asarray\)"}


@pytest.mark.parametrize("op, args", [("reshape", ((6, 4),)), ("transpose", ((1, 0, 2),)), ("silu", ()),
                                      ("gelu", ()), ("layer_norm", ())])
def test_backend_ops_take_the_backends_arrays_only(backend, op, args):
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=WRONG_ARRAY[backend.name]):
        getattr(backend, op)(x.tolist() if backend.name == "numpy" else x, *args)


#: the storage dtypes each device backend keeps (numpy computes float64 too)
STORAGE_REFUSAL = {"opencl": "x: the opencl backend stores float32 or float16, got float64",
                   "jax": "x: the jax backend stores float32, float16 or bfloat16, got float64"}


@pytest.mark.backends("opencl", "jax")
def test_unsupported_storage_dtype_is_named(backend):
    with pytest.raises(TypeError, match=STORAGE_REFUSAL[backend.name]):
        backend.asarray(np.ones(3))

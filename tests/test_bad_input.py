"""Bad input raises a clear error that names the argument and what was expected: in the reference
(its validators, reference/_checks.py), and through every backend's ops (the ``backend`` fixture),
which validate with the same validators in the ``Backend`` base class, so the message is the same
on every backend as on numpy; plus each backend's own refusals (its array type, its storage
dtypes).
"""

import gc
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
    (lambda: ops.group_norm(x4, 3, eps=-1e-5), ValueError, ["eps", "finite number >= 0", "-1e-05"]),
    (lambda: ops.group_norm(x4, 3, eps=True), TypeError, ["eps", "finite number >= 0", "True"]),
    (lambda: ops.group_norm(x4, True), ValueError, ["num_groups", "positive int", "True"]),
    (lambda: ops.layer_norm(x4, eps=float("nan")), ValueError, ["eps", "finite number >= 0", "nan"]),
    (lambda: ops.layer_norm(x4, eps="1e-5"), TypeError, ["eps", "finite number >= 0", "'1e-5'"]),
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
    ("group_norm bool groups", lambda be, a: be.group_norm(a(x6), True), ValueError,
     ["num_groups: expected a positive int, got True"]),
    ("group_norm eps negative", lambda be, a: be.group_norm(a(x6), 3, eps=-1e-5), ValueError,
     ["eps: expected a finite number >= 0, got -1e-05"]),
    ("group_norm eps nan", lambda be, a: be.group_norm(a(x6), 3, eps=float("nan")), ValueError,
     ["eps: expected a finite number >= 0, got nan"]),
    ("group_norm eps inf", lambda be, a: be.group_norm(a(x6), 3, eps=float("inf")), ValueError,
     ["eps: expected a finite number >= 0, got inf"]),
    ("group_norm eps bool", lambda be, a: be.group_norm(a(x6), 3, eps=True), TypeError,
     ["eps: expected a finite number >= 0, got True"]),
    ("group_norm eps string", lambda be, a: be.group_norm(a(x6), 3, eps="1e-5"), TypeError,
     ["eps: expected a finite number >= 0, got '1e-5'"]),
    ("layer_norm eps negative", lambda be, a: be.layer_norm(a(h3), eps=-1.0), ValueError,
     ["eps: expected a finite number >= 0, got -1.0"]),
    ("layer_norm eps nan", lambda be, a: be.layer_norm(a(h3), eps=np.float32("nan")), ValueError,
     ["eps: expected a finite number >= 0, got"]),
    ("layer_norm eps inf", lambda be, a: be.layer_norm(a(h3), eps=-float("inf")), ValueError,
     ["eps: expected a finite number >= 0, got -inf"]),
    ("layer_norm eps bool", lambda be, a: be.layer_norm(a(h3), eps=np.bool_(False)), TypeError,
     ["eps: expected a finite number >= 0, got"]),
    ("layer_norm eps string", lambda be, a: be.layer_norm(a(h3), eps="0"), TypeError,
     ["eps: expected a finite number >= 0, got '0'"]),
    ("conv2d tile 3 default method", lambda be, a: be.conv2d(a(x6), a(np.ones((2, 6, 3, 3), np.float32)), tile=3),
     ValueError, ["tile: expected one of (2, 4, 6)", "got 3"]),
    ("conv2d tile 3 ineligible layer", lambda be, a: be.conv2d(a(x6), a(np.ones((2, 6, 1, 1), np.float32)), tile=3),
     ValueError, ["tile: expected one of (2, 4, 6)", "got 3"]),
    ("conv2d tile 3 winograd", lambda be, a: be.conv2d(a(x6), a(np.ones((2, 6, 3, 3), np.float32)),
                                                       method="winograd", tile=3),
     ValueError, ["tile: expected one of (2, 4, 6), got 3"]),
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
    ("upsample_conv2d 0", lambda be, a: be.upsample_conv2d(a(x6), a(np.ones((2, 6, 3, 3), np.float32)), scale_factor=0),
     ValueError, ["scale_factor", "positive int"]),
    ("upsample_conv2d w", lambda be, a: be.upsample_conv2d(a(x6), a(np.ones((2, 5, 3, 3), np.float32))),
     ValueError, ["w: expected 6 input channels"]),
    ("upsample_conv2d small", lambda be, a: be.upsample_conv2d(a(x6), a(np.ones((2, 6, 11, 3), np.float32)),
                                                               padding=1, method="direct"),
     ValueError, ["x: the padded input (x upsampled 2x) 10x10 is smaller than the kernel 11x3"]),
    ("upsample_conv2d winograd 1x1", lambda be, a: be.upsample_conv2d(a(x6), a(np.ones((2, 6, 1, 1), np.float32)),
                                                                      method="winograd"),
     ValueError, ["w: Winograd F(m x m, 3 x 3) needs a 3x3 kernel"]),
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


# ----------------------------------------------------------------------------------- empty dimensions

#: The rule for empty dimensions of a convolution: not bad input. The sum over an empty set is 0,
#: so every backend and method computes the defined answer, as torch does: an empty batch (N = 0)
#: or no output channels (O = 0) give an empty output; no input channels (C = 0) give the bias
#: broadcast over the output (zeros without one). (Attention refuses empty dims instead: a softmax
#: over M = 0 keys is 0 / 0; check_qkv says so.)
EMPTY_CONVS = [("C=0", (2, 0, 5, 6), (3, 0, 3, 3)), ("N=0", (0, 2, 5, 6), (3, 2, 3, 3)),
               ("O=0", (2, 2, 5, 6), (0, 2, 3, 3)), ("C=0 N=0", (0, 0, 5, 6), (3, 0, 3, 3))]


@pytest.mark.parametrize("method, tile", [("direct", None), ("winograd", 2), ("winograd", 4), ("winograd", 6)])
@pytest.mark.parametrize("x_shape, w_shape", [case[1:] for case in EMPTY_CONVS], ids=[case[0] for case in EMPTY_CONVS])
def test_conv2d_with_empty_dimensions_is_the_empty_sum(backend, x_shape, w_shape, method, tile):
    o = w_shape[0]
    bias = np.arange(1, o + 1, dtype=np.float32)
    expected_shape = (x_shape[0], o, x_shape[2], x_shape[3])  # padding 1
    for b in (bias, None):
        y = backend.conv2d(backend.asarray(np.ones(x_shape, np.float32)), backend.asarray(np.ones(w_shape, np.float32)),
                           None if b is None else backend.asarray(b), padding=1, method=method, tile=tile)
        y = backend.to_numpy(y)
        expected = np.broadcast_to((np.zeros(o, np.float32) if b is None else b)[None, :, None, None], expected_shape)
        assert y.shape == expected_shape and y.dtype == np.float32
        np.testing.assert_array_equal(y, expected)


# ----------------------------------------------------------------------------------- OpenCL: int32 indexing

#: Every OpenCL op as (id, call(backend, a) -> None, the argument the error names, the tensor it
#: names beyond the argument itself or None); ``a`` uploads a float32 host array of a shape.
#: Each input here has at most LIMIT elements except the one meant to trip the guard, so the op
#: must check that tensor (an input, its output, or a temporary) before allocating or launching.
LIMIT = 1000
GUARDED = [
    ("group_norm fused", lambda be, a: be.group_norm(a((2, 4, 16, 16)), 2, fused=True), "x", None),
    ("group_norm unfused", lambda be, a: be.group_norm(a((2, 4, 16, 16)), 2, fused=False), "x", None),
    ("layer_norm", lambda be, a: be.layer_norm(a((8, 130))), "x", None),
    ("gelu fused", lambda be, a: be.gelu(a((1001,)), fused=True), "x", None),
    ("gelu unfused", lambda be, a: be.gelu(a((1001,)), fused=False), "x", None),
    ("geglu fused", lambda be, a: be.geglu(a((1, 1002)), fused=True), "x", None),  # 501 outputs, 1002 inputs
    ("geglu unfused", lambda be, a: be.geglu(a((1, 1002)), fused=False), "x", None),
    ("silu", lambda be, a: be.silu(a((1001,))), "x", None),
    ("quick_gelu", lambda be, a: be.quick_gelu(a((1001,))), "x", None),
    ("softmax", lambda be, a: be.softmax(a((7, 143))), "x", None),
    ("attention q", lambda be, a: be.attention(a((1, 1, 126, 8)), a((1, 1, 4, 8)), a((1, 1, 4, 8)), method="flash"),
     "q", None),
    ("attention k", lambda be, a: be.attention(a((1, 1, 4, 8)), a((1, 1, 126, 8)), a((1, 1, 126, 4)), method="flash"),
     "k", None),
    ("attention v", lambda be, a: be.attention(a((1, 1, 4, 8)), a((1, 1, 100, 8)), a((1, 1, 100, 11)),
                                               method="flash"), "v", None),
    ("attention output", lambda be, a: be.attention(a((1, 1, 100, 2)), a((1, 1, 2, 2)), a((1, 1, 2, 11)),
                                                    method="flash"), "q", "the output"),
    *[(f"attention scores {method}", lambda be, a, method=method: be.attention(
        a((1, 1, 40, 8)), a((1, 1, 40, 8)), a((1, 1, 40, 8)), method=method), "q, k", "the score matrix")
      for method in ("naive", "partial_softmax")],
    ("conv2d direct x", lambda be, a: be.conv2d(a((1, 2, 23, 23)), a((1, 2, 3, 3)), method="direct"), "x", None),
    ("conv2d direct w", lambda be, a: be.conv2d(a((1, 2, 5, 5)), a((56, 2, 3, 3)), method="direct"), "w", None),
    ("conv2d direct output", lambda be, a: be.conv2d(a((1, 1, 8, 8)), a((20, 1, 1, 1)), method="direct"),
     "x", "the output"),
    ("winograd x", lambda be, a: be.conv2d(a((1, 2, 23, 23)), a((1, 2, 3, 3)), method="winograd", tile=2), "x", None),
    ("winograd w", lambda be, a: be.conv2d(a((1, 2, 5, 5)), a((56, 2, 3, 3)), method="winograd", tile=4), "w", None),
    ("winograd U", lambda be, a: be.conv2d(a((1, 2, 4, 4)), a((20, 2, 3, 3)), padding=1, method="winograd", tile=6),
     "w", "Winograd transform U"),  # 64 * 20 * 2 = 2560 transformed weights from 360
    ("winograd V", lambda be, a: be.conv2d(a((1, 4, 12, 12)), a((1, 4, 3, 3)), padding=1, method="winograd", tile=2),
     "x", "Winograd transform V"),   # 16 * 4 * 36 tiles = 2304 transformed inputs from 576
    ("winograd M", lambda be, a: be.conv2d(a((1, 1, 4, 4)), a((20, 1, 3, 3)), padding=1, method="winograd", tile=2),
     "x", "Winograd products M"),    # 16 * 20 * 4 tiles = 1280 products; V 64, U 320
    ("linear x", lambda be, a: be.linear(a((1001, 1)), a((1, 1))), "x", None),
    ("linear weight", lambda be, a: be.linear(a((1, 600)), a((2, 600))), "weight", None),
    ("linear output", lambda be, a: be.linear(a((40, 2)), a((40, 2))), "x", "the output"),
    ("upsample", lambda be, a: be.upsample_nearest2d(a((1, 1, 20, 20)), 2), "x", "the upsampled output"),
    ("add", lambda be, a: be.add(a((1001,)), a((1001,))), "a", None),
    ("add_broadcast", lambda be, a: be.add_broadcast(a((1, 2, 501)), a((1, 2))), "x", None),
    ("mul_scalar", lambda be, a: be.mul_scalar(a((1001,)), 2.0), "x", None),
    ("concat input", lambda be, a: be.concat([a((1, 1001)), a((1, 1))], axis=1), "arrays[0]", None),
    ("concat output", lambda be, a: be.concat([a((1, 600)), a((1, 600))], axis=1), "arrays", "the concatenated output"),
    ("transpose", lambda be, a: be.transpose(a((11, 91)), (1, 0)), "x", None),
]


@pytest.mark.backends("opencl")
@pytest.mark.parametrize("call, name, what", [case[1:] for case in GUARDED], ids=[case[0] for case in GUARDED])
def test_opencl_ops_refuse_tensors_beyond_int32_indexing(backend, monkeypatch, call, name, what):
    """With the limit lowered to LIMIT elements (the same helper guards 2**31 - 1), each op refuses
    the tensor past it by name, before it allocates or launches anything."""
    from backends.opencl import runtime

    assert runtime.INT32_LIMIT == 2**31 - 1
    uploads = {}

    def upload(shape):
        if shape not in uploads:
            uploads[shape] = backend.asarray(np.full(shape, 0.5, np.float32))
        return uploads[shape]

    call(backend, upload)  # within the real limit: it runs (and uploads the inputs)
    backend.synchronize()
    monkeypatch.setattr(runtime, "INT32_LIMIT", LIMIT)
    gc.collect()  # arrays of earlier tests held in reference cycles must not leave during the call below
    before = backend.rt.in_use_bytes
    with backend.measure() as counted, pytest.raises(ValueError) as info:
        call(backend, upload)
    message = str(info.value)
    if what is None:
        assert message.startswith(f"{name}: "), message
    else:
        assert message.startswith(f"{name} (") and what in message.split(":")[0], message
    assert f"exceed the int32 indexing of the OpenCL kernels (at most {LIMIT})" in message
    assert counted.launches == 0 and counted.temp_bytes == 0 and counted.cache_bytes == 0
    assert backend.rt.in_use_bytes == before  # nothing allocated


def test_int32_guard_at_the_real_limit():
    pytest.importorskip("pyopencl")
    from backends.opencl.runtime import check_int32_indexing

    assert check_int32_indexing("x", (2**31 - 1,)) == 2**31 - 1
    assert check_int32_indexing("x", 2**31 - 1) == 2**31 - 1
    with pytest.raises(ValueError, match=r"^x: 2147483648 elements exceed the int32 indexing"):
        check_int32_indexing("x", (2**16, 2**15))
    with pytest.raises(ValueError, match=r"^w \(its Winograd transform U\): 2147483648 elements"):
        check_int32_indexing("w", 2**31, "its Winograd transform U")

"""Bad input raises a clear error that names the argument and what was expected."""

import numpy as np
import pytest

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

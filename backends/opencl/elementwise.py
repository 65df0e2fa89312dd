"""The remaining ops of the SD network on OpenCL: SiLU, quick GELU, elementwise arithmetic,
nearest upsampling, and layout (concatenation, reshape, transpose). Host side of
kernels/elementwise.cl.

The math (reference/elementwise.py defines it): silu(x) = x * sigmoid(x), quick_gelu(x) =
x * sigmoid(1.702 x); add, add_broadcast (x + v[:, :, None, None]) and mul_scalar; nearest
upsampling y[n, c, i, j] = x[n, c, i // s, j // s]; concat, reshape and transpose as NumPy's.

Kernel plans: silu, quick_gelu, upsample_nearest2d, add, add_broadcast, mul_scalar: 1 launch each,
no temporaries, one work-item per output element in work-groups of ``LOCAL`` items (the global
size rounded up, a bounds check for the ragged last group). concat: one ``copy_into_slice`` launch
per input. reshape: a view of x's buffer, no copy and no launch (every array of the backend is
C-contiguous with offset 0, so any reshape is a view). transpose: one launch, output from
rt.empty, no temporaries.

Transpose plan. First the permutation is simplified: axes of size 1 are dropped, and input axes
that stay adjacent and in order in the output are merged (NCHW -> NHWC, (0, 2, 3, 1), moves
(N, C, H*W) by (0, 2, 1); the head split (0, 2, 1, 3) of a (1, N, H, d) tensor moves (N, H, d) by
(1, 0, 2); a permutation that keeps every axis in place becomes a plain copy). What remains (at
most 4 axes, else ValueError) is padded with leading size-1 axes to 4 and runs as one of two
kernels:

    ``permute``        the innermost axis stays innermost: one work-item per output element
                       reads X at the permuted strides; reads and writes are both coalesced.
    ``permute_tiled``  the innermost axis moves (NCHW -> NHWC is (0, 2, 3, 1)): TILE x TILE tiles
                       spanned by the input's and the output's innermost axes go through __local
                       memory, so reads and writes are both coalesced; the other two axes are a
                       batch index.

Element counts must stay below 2^31 (the kernels index with int).
"""

from __future__ import annotations

import functools
import math

from .runtime import Runtime, c_strides, check_int32_indexing, check_int32_tensors

FILE = "elementwise.cl"
#: work-items per group of the elementwise kernels and of ``permute`` (the global size is rounded up to it)
LOCAL = 256
#: tile side of ``permute_tiled`` (work-groups of TILE * TILE items, __local tile of TILE x (TILE + 1) floats)
TILE = 16


def elementwise_launch(rt: Runtime, file: str, name: str, n: int, dtype, *args) -> None:
    """Launch the elementwise kernel ``name`` of ``file`` over n items in work-groups of LOCAL
    (nothing for an empty tensor)."""
    if n:
        rt.launch(rt.kernel(file, name, dtype), (n,), (LOCAL,), *args)


def _elementwise(rt: Runtime, name: str, n: int, dtype, *args) -> None:
    elementwise_launch(rt, FILE, name, n, dtype, *args)


# ----------------------------------------------------------------------------------- SiLU, quick GELU, resize, arithmetic


def silu(rt: Runtime, x):
    """x * sigmoid(x), one launch."""
    check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    silu_into(rt, x, y)
    return y


def silu_into(rt: Runtime, x, y) -> None:
    """SiLU of x written into y (same shape and dtype; y may be x: in place)."""
    n = check_int32_indexing("x", x.size)
    _elementwise(rt, "silu", n, x.dtype, x, y, n)


def quick_gelu(rt: Runtime, x):
    """CLIP's x * sigmoid(1.702 x), one launch."""
    n = check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    _elementwise(rt, "quick_gelu", n, x.dtype, x, y, n)
    return y


def upsample_nearest2d(rt: Runtime, x, scale_factor: int):
    """NCHW nearest upsampling: y[n, c, i, j] = x[n, c, i // s, j // s], one launch."""
    nb, c, h, w = x.shape
    s = int(scale_factor)
    check_int32_tensors(("x", x.shape), ("x", (nb, c, h * s, w * s), "the upsampled output"))
    y = rt.empty((nb, c, h * s, w * s), x.dtype)
    if y.size:
        rt.launch(rt.kernel(FILE, "upsample_nearest2d", x.dtype), (w * s, h * s, nb * c), (16, 16, 1),
                  x, y, h, w, s)
    return y


def add(rt: Runtime, a, b):
    """a + b for two arrays of one shape and dtype, one launch."""
    n = check_int32_indexing("a", a.size)
    y = rt.empty(a.shape, a.dtype)
    _elementwise(rt, "add", n, a.dtype, a, b, y, n)
    return y


def add_broadcast(rt: Runtime, x, v):
    """x + v[:, :, None, None]: v of shape (N, C) added at every spatial position of x
    (N, C, *spatial) (the timestep-embedding add of SD's ResNet blocks), one launch."""
    n = check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    spatial = n // max(1, v.size)
    _elementwise(rt, "add_broadcast", n, x.dtype, x, v, y, spatial, n)
    return y


def mul_scalar(rt: Runtime, x, s: float):
    """s * x for a Python scalar s, one launch (computed in float32)."""
    n = check_int32_indexing("x", x.size)
    y = rt.empty(x.shape, x.dtype)
    _elementwise(rt, "scale_shift", n, x.dtype, x, y, n, float(s), 0.0)
    return y


# ----------------------------------------------------------------------------------- layout


def concat(rt: Runtime, arrays, axis: int):
    """Concatenate along ``axis`` (the UNet's skip connections join channels): one
    ``copy_into_slice`` launch per input, no temporaries."""
    first = arrays[0]
    total = sum(int(a.shape[axis]) for a in arrays)
    out_shape = first.shape[:axis] + (total,) + first.shape[axis + 1:]
    check_int32_tensors(*((f"arrays[{i}]", a.size) for i, a in enumerate(arrays)),
                        ("arrays", out_shape, "the concatenated output"))
    y = rt.empty(out_shape, first.dtype)
    inner = math.prod(first.shape[axis + 1:])
    offset = 0
    for a in arrays:
        n = a.size
        _elementwise(rt, "copy_into_slice", n, a.dtype, a, y, n, int(a.shape[axis]), inner, total, offset)
        offset += int(a.shape[axis])
    return y


def reshape(rt: Runtime, x, shape):
    """x with ``shape``: a view, no copy, no launch."""
    return rt.view(x, shape)


def simplify_permutation(shape, axes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The smallest (shape', axes') moving the same elements as (shape, axes): axes of size 1
    dropped, input axes that stay adjacent and in order in the output merged into one.
    E.g. (2, 3, 4, 5) with (0, 2, 3, 1) -> (2, 3, 20) with (0, 2, 1)."""
    kept = [a for a in axes if shape[a] != 1]
    rank = {a: i for i, a in enumerate(sorted(kept))}
    sizes = [shape[a] for a in sorted(kept)]
    runs: list[list[int]] = []  # groups of (renumbered) input axes, in output order
    for a in (rank[a] for a in kept):
        if runs and a == runs[-1][-1] + 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    order = sorted(range(len(runs)), key=lambda i: runs[i][0])  # the runs in input order
    new_shape = tuple(math.prod(sizes[a] for a in runs[i]) for i in order)
    position = {run: p for p, run in enumerate(order)}
    return new_shape, tuple(position[i] for i in range(len(runs)))


def transpose(rt: Runtime, x, axes):
    """numpy.transpose(x, axes) into a new C-contiguous array:
    one launch (none for an empty array)."""
    check_int32_indexing("x", x.size)
    out = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    if x.size == 0:
        return out
    name, defines, global_size, local_size, scalars = permute_plan(tuple(x.shape), tuple(axes))
    rt.launch(rt.kernel(FILE, name, x.dtype, defines), global_size, local_size, x, out, *scalars)
    return out


@functools.lru_cache(maxsize=1024)
def permute_plan(shape: tuple, axes: tuple) -> tuple:
    """(kernel name, its defines, global size, local size, scalar arguments) of the transpose of a
    C-contiguous ``shape`` by ``axes``, once per (shape, axes): the permutation simplified to at
    most 4 groups of axes, then ``permute`` where the innermost axis stays, else ``permute_tiled``."""
    size = math.prod(shape)
    groups, perm = simplify_permutation(shape, axes)
    if len(groups) > 4:
        raise ValueError(f"axes: the opencl transpose moves at most 4 groups of adjacent axes; {axes} on shape "
                         f"{shape} needs {len(groups)}; split it into two transposes")
    pad = 4 - len(groups)
    shape = (1,) * pad + groups
    perm = tuple(range(pad)) + tuple(a + pad for a in perm)
    in_strides = c_strides(shape, 1)  # element strides (every extent >= 1 here)
    y_shape = tuple(shape[a] for a in perm)
    if perm[3] == 3:
        return _permute(size, y_shape, tuple(in_strides[a] for a in perm))
    return _permute_tiled(y_shape, perm, in_strides)


def _permute(size: int, y_shape, strides) -> tuple:
    """The innermost axis stays: one work-item per output element."""
    return "permute", None, (size,), (LOCAL,), (size, *y_shape[1:], *strides)


def _permute_tiled(y_shape, perm, in_strides) -> tuple:
    """The innermost axis moves: TILE x TILE tiles of (output axis 3, output axis j) through
    __local memory, where j is the output axis that input axis 3 becomes."""
    j = perm.index(3)
    k, l = (i for i in range(3) if i != j)
    out_strides = c_strides(y_shape, 1)
    groups = -(-y_shape[3] // TILE) * -(-y_shape[j] // TILE) * y_shape[k] * y_shape[l]
    return "permute_tiled", {"TILE": TILE}, (groups * TILE * TILE,), (TILE * TILE,), (
        y_shape[3], y_shape[j], y_shape[l],
        in_strides[perm[3]], in_strides[perm[k]], in_strides[perm[l]],
        out_strides[j], out_strides[k], out_strides[l])

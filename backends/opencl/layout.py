"""Host side of kernels/layout.cl: reshape and transpose (the SD network's head split/merge and
its NCHW <-> token moves).

    reshape(x, shape)   the same elements in C order with another shape: a view of x's buffer,
                        no copy and no launch (every array of the backend is C-contiguous with
                        offset 0, so any reshape is a view).
    transpose(x, axes)  numpy.transpose(x, axes), materialized C-contiguous: one launch, output
                        from rt.empty, no temporaries.

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

import math

from .runtime import Runtime

SOURCE = "layout.cl"
#: work-items per group of ``permute`` (the global size is rounded up to it)
LOCAL = 256
#: tile side of ``permute_tiled`` (work-groups of TILE * TILE items, __local tile of TILE x (TILE + 1) floats)
TILE = 16


def reshape(rt: Runtime, x, shape):
    """x with ``shape`` (validated by the caller): a view, no copy, no launch."""
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


def _c_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for s in reversed(shape):
        strides.append(step)
        step *= s
    return tuple(reversed(strides))


def transpose(rt: Runtime, x, axes):
    """numpy.transpose(x, axes) (axes validated by the caller) into a new C-contiguous array:
    one launch (none for an empty array)."""
    out = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    if x.size == 0:
        return out
    if x.size >= 2**31:
        raise ValueError(f"x: {x.size} elements exceed the int32 indexing of the transpose kernels; split the tensor")
    shape, perm = simplify_permutation(tuple(x.shape), tuple(axes))
    if len(shape) > 4:
        raise ValueError(f"axes: the opencl transpose moves at most 4 groups of adjacent axes; {tuple(axes)} on shape "
                         f"{tuple(x.shape)} needs {len(shape)}; split it into two transposes")
    pad = 4 - len(shape)
    shape = (1,) * pad + shape
    perm = tuple(range(pad)) + tuple(a + pad for a in perm)
    in_strides = _c_strides(shape)
    y_shape = tuple(shape[a] for a in perm)
    if perm[3] == 3:
        _permute(rt, x, out, y_shape, tuple(in_strides[a] for a in perm))
    else:
        _permute_tiled(rt, x, out, y_shape, perm, in_strides)
    return out


def _permute(rt: Runtime, x, out, y_shape, strides) -> None:
    """The innermost axis stays: one work-item per output element."""
    kernel = rt.kernel(SOURCE, "permute", x.dtype)
    rt.launch(kernel, (x.size,), (LOCAL,), x, out, x.size, *y_shape[1:], *strides)


def _permute_tiled(rt: Runtime, x, out, y_shape, perm, in_strides) -> None:
    """The innermost axis moves: TILE x TILE tiles of (output axis 3, output axis j) through
    __local memory, where j is the output axis that input axis 3 becomes."""
    j = perm.index(3)
    k, l = (i for i in range(3) if i != j)
    out_strides = _c_strides(y_shape)
    groups = -(-y_shape[3] // TILE) * -(-y_shape[j] // TILE) * y_shape[k] * y_shape[l]
    kernel = rt.kernel(SOURCE, "permute_tiled", x.dtype, {"TILE": TILE})
    rt.launch(kernel, (groups * TILE * TILE,), (TILE * TILE,), x, out,
              y_shape[3], y_shape[j], y_shape[l],
              in_strides[perm[3]], in_strides[perm[k]], in_strides[perm[l]],
              out_strides[j], out_strides[k], out_strides[l])

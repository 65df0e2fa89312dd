"""The matrix core on OpenCL: a register-tiled GEMM (kernels/gemm.cl) with its tile sizes chosen
per device and shape from a measured table. Used by the linear layers, the Winograd batched
stage (winograd.py), attention's two products (attention.py, ``attention_product``) and, with an
im2col loader, the direct convolution (winograd.py).

    C[b] = alpha * A[b] (m x k) @ B[b] (k x n)  (+ bias over columns)

``linear`` is one GEMM launch with W read transposed through its strides (no transposed copy);
with a split-K tile (shapes with few output tiles, such as the time embedding's 2 rows), two
launches and a float32 (splits, 1, rows, out) temporary.

Tiles. A ``GemmTile`` is the kernel's compile-time blocking: a work-group of (bm/tm) * (bn/tn)
items computes a bm x bn tile of C, each item a tm x tn block of accumulators in registers,
walking K bk at a time through double-buffered __local slabs (the kernel's comment has the
layout). ``TILES`` are the candidates; which one a call uses is looked up in ``gemm_tiles.json``,
written by ``python -m experiments.gemm_tiles`` on a device: for every GEMM and convolution
shape of SD 1.4 and every candidate, the median device time, and the fastest candidate per
shape. A call takes the fastest tile of the measured shape of the same kind and storage dtype
nearest to its own (distance: the sum of |log| ratios of m, n, k and batch); a device with no
measurements gets ``DEFAULT_TILE``. ``tile=`` overrides the choice (the tests and the tuner).

Vector loads. Each global load of an item reads ``vector_width`` adjacent elements along the
operand's unit stride (float4 / float2; with fp16 storage one 8- or 4-byte word of halves,
converted in registers) where the layout allows it: every vector aligned and wholly inside or
outside the matrix. Else scalar loads, the same kernel otherwise. ``vectors=False`` forces scalar loads (the tests and the tuner).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .runtime import Runtime, check_int32_tensors

FILE = "gemm.cl"
#: the measured tile table (experiments/gemm_tiles.py writes it)
TABLE_PATH = Path(__file__).with_name("gemm_tiles.json")


@dataclass(frozen=True)
class GemmTile:
    """Compile-time blocking of gemm.cl: a bm x bn tile of C per work-group, bk-deep slabs,
    tm x tn accumulators per item, ``pad`` floats after each __local slab row, and K split into
    ``splits`` ranges (float32 partial sums, added by a second launch) where C has few tiles."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    splits: int = 1
    pad: int = 4

    def __post_init__(self):
        for name in ("tm", "tn"):
            if getattr(self, name) not in (1, 2, 4, 8):
                raise ValueError(f"{name}: expected 1, 2, 4 or 8 accumulators per item, got {getattr(self, name)}")
        if self.bm % self.tm or self.bn % self.tn:
            raise ValueError(f"tile {self.name}: bm must be a multiple of tm and bn of tn")
        if (self.bm * self.bk) % self.threads or (self.bk * self.bn) % self.threads:
            raise ValueError(f"tile {self.name}: each slab must split evenly over the {self.threads} items")
        if not 1 <= self.splits <= 64:
            raise ValueError(f"splits: expected 1 to 64 ranges of K, got {self.splits}")
        if self.pad % 4:
            raise ValueError(f"pad: expected a multiple of 4 (float4-aligned __local rows), got {self.pad}")

    @property
    def name(self) -> str:
        split = f"/k{self.splits}" if self.splits > 1 else ""
        return f"{self.bm}x{self.bn}x{self.bk}/{self.tm}x{self.tn}{split}"

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def local_bytes(self) -> int:
        return 2 * 4 * self.bk * (self.bm + self.pad + self.bn + self.pad)

    def defines(self) -> dict:
        return {"BM": self.bm, "BN": self.bn, "BK": self.bk, "TM": self.tm, "TN": self.tn, "PAD": self.pad,
                "SPLITS": self.splits}

    @classmethod
    def parse(cls, name: str) -> "GemmTile":
        """The tile named like ``GemmTile.name`` ("128x64x8/8x4", split K: "32x32x8/4x4/k4")."""
        try:
            block, acc, *split = name.split("/")
            bm, bn, bk = (int(s) for s in block.split("x"))
            tm, tn = (int(s) for s in acc.split("x"))
            if split and (len(split) > 1 or not split[0].startswith("k")):
                raise ValueError
            splits = int(split[0][1:]) if split else 1
        except ValueError:
            raise ValueError(f"tile: expected a name like '128x64x8/8x4' or '32x32x8/4x4/k4', got {name!r}") from None
        return cls(bm, bn, bk, tm, tn, splits)

    def groups(self, m: int, n: int, batch: int = 1) -> int:
        """Work-groups of a launch on an m x n (x batch) product, K splits included."""
        return -(-m // self.bm) * -(-n // self.bn) * batch * self.splits


#: the candidates the tuner measures: from 256-item 128 x 128 tiles down to narrow ones for the
#: small-N Winograd products and the 2-row linears of the time embedding; and split-K versions of
#: the small ones, for shapes with few tiles of C (the tuner tries those only where the unsplit
#: grid has fewer than SPLIT_BELOW work-groups)
TILES = tuple(GemmTile.parse(name) for name in (
    "128x128x8/8x8", "128x128x16/8x8", "128x64x8/8x4", "128x64x16/8x4", "64x128x8/4x8", "64x64x8/4x4",
    "64x64x16/4x4", "128x32x8/8x4", "32x128x8/4x8", "128x16x8/8x2", "16x128x8/2x8", "32x32x8/4x4",
    "64x64x16/4x4/k2", "64x64x16/4x4/k4", "32x32x8/4x4/k2", "32x32x8/4x4/k4", "32x32x8/4x4/k8",
    "128x16x8/8x2/k2", "128x16x8/8x2/k4", "16x128x8/2x8/k4", "16x128x8/2x8/k8",
))
SPLIT_BELOW = 512
#: work-group size of the split-K reductions
REDUCE_WG = 64
DEFAULT_TILE = GemmTile.parse("64x64x8/4x4")
KINDS = ("gemm", "conv", "attention")
#: widths of the vector loads, widest first
VECTOR_WIDTHS = (4, 2)


class _Table(dict):
    """The tile table, hashed by identity (so ``_nearest_tile`` remembers its answers per table:
    a new table after ``_table.cache_clear()`` is asked afresh)."""

    __hash__ = object.__hash__
    __eq__ = object.__eq__


@functools.lru_cache(maxsize=None)
def _table() -> _Table:
    """{device name: [(kind, dtype, m, n, k, batch, GemmTile), ...]} from ``TABLE_PATH``."""
    path = TABLE_PATH
    if not path.exists():
        return _Table()
    data = json.loads(path.read_text())
    table = _Table()
    for device, entries in data["devices"].items():
        table[device] = [(e["kind"], e["dtype"], e["m"], e["n"], e["k"], e["batch"], GemmTile.parse(e["tile"]))
                         for e in entries]
    return table


def choose_tile(rt: Runtime, kind: str, dtype, m: int, n: int, k: int, batch: int = 1) -> GemmTile:
    """The measured tile for a GEMM of this kind ("gemm" | "conv"), storage dtype and shape on
    rt's device: the fastest tile of the nearest measured shape (module docstring). Each
    question is answered once per table (the search over the entries took a few hundred
    microseconds, per call, of the host time of a network's forward pass)."""
    return _nearest_tile(_table(), rt.device_name, kind, dtype, m, n, k, batch)


@functools.lru_cache(maxsize=4096)
def _nearest_tile(table: "_Table", device: str, kind: str, dtype, m: int, n: int, k: int, batch: int) -> GemmTile:
    entries = table.get(device)
    if not entries:
        return DEFAULT_TILE
    dtype = np.dtype(dtype).name
    same = [e for e in entries if e[0] == kind and e[1] == dtype] or [e for e in entries if e[0] == kind] or entries

    def distance(e):
        return sum(abs(math.log(max(a, 1) / max(b, 1))) for a, b in zip((m, n, k, batch), e[2:6]))

    return min(same, key=distance)[6]


def vector_width(strides, extents, slab, per_item: int) -> int:
    """How many adjacent elements each global load of an operand reads: the widest of
    ``VECTOR_WIDTHS`` (else 1) along its unit stride that divides the matrix's extent along it
    (a vector is wholly inside or outside), every other stride (each vector starts aligned), the
    slab's side along it and the item's share of the slab (``per_item``). ``strides`` are the
    (batch, row, col) element strides, ``extents`` the (rows, cols) of the matrix and ``slab`` the
    staged (rows, cols); the unit stride is the column's where it is 1, else the row's."""
    _, row_stride, col_stride = strides
    axis = 1 if col_stride == 1 else 0 if row_stride == 1 else None
    if axis is None:
        return 1
    others = [strides[0], (row_stride, col_stride)[1 - axis]]
    for width in VECTOR_WIDTHS:
        if extents[axis] % width == 0 and slab[axis] % width == 0 and per_item % width == 0 and all(
                s % width == 0 for s in others):
            return width
    return 1


def _layout(tile: GemmTile, m: int, n: int, k: int, a_strides, b_strides, vectors: bool) -> dict:
    """The defines of an operand layout: which stride of A and B is the unit one, and their
    vector widths (``vector_width``; 1 with ``vectors=False``)."""
    a_items, b_items = tile.bm * tile.bk // tile.threads, tile.bk * tile.bn // tile.threads
    va = vector_width(a_strides, (m, k), (tile.bm, tile.bk), a_items) if vectors else 1
    vb = vector_width(b_strides, (k, n), (tile.bk, tile.bn), b_items) if vectors else 1
    return {"A_K_UNIT": a_strides[2] == 1, "B_N_UNIT": b_strides[2] == 1, "VA": va, "VB": vb}


def _check_tile(rt: Runtime, tile: GemmTile) -> GemmTile:
    if not isinstance(tile, GemmTile):
        raise TypeError(f"tile: expected a GemmTile, got {type(tile).__name__}")
    if tile.threads > rt.max_work_group_size or tile.local_bytes > rt.local_mem_size:
        raise ValueError(f"tile: {tile.name} needs {tile.threads} items and {tile.local_bytes} bytes of local "
                         f"memory; {rt.device.name} allows {rt.max_work_group_size} and {rt.local_mem_size}")
    return tile


def gemm_batched(rt: Runtime, a, b, c, m: int, n: int, k: int, batch: int,
                 a_strides, b_strides, c_strides, bias=None, alpha: float = 1.0, tile: GemmTile | None = None,
                 reduce: bool = True, vectors: bool = True):
    """For every batch index, C = alpha * A (m x k) @ B (k x n) (+ bias over columns): one launch,
    or with a split-K tile two (the products into a float32 (splits, batch, m, n) temporary, then
    ``gemm_splitk_reduce``).

    ``*_strides`` are (batch, row, col) element strides of each operand, so A^T is A with its row
    and column strides swapped. All three arrays share one storage dtype. ``tile``: the blocking
    (default: ``choose_tile``). ``reduce=False`` (Winograd, whose output transform adds the
    partials itself): with a split-K tile, return the partials and leave C alone; else None.
    ``vectors=False``: scalar loads whatever the layout."""
    check_int32_tensors(("a", a.size), ("b", b.size), ("c", c.size))
    tile = tile or choose_tile(rt, "gemm", c.dtype, m, n, k, batch)
    plan = _gemm_plan(rt, c.dtype, m, n, k, batch, tuple(a_strides), tuple(b_strides), vectors, tile)
    partial = None
    if plan.tile.splits > 1:
        check_int32_tensors(("c", (plan.tile.splits, batch, m, n), "the split-K partial sums (splits, batch, M, N)"))
        partial = rt.temp((plan.tile.splits, batch, m, n), np.float32)
    bias_arg = bias if bias is not None else rt.dummy(c.dtype)
    rt.launch(plan.kernel, plan.global_size, plan.local_size, a, b, c, bias_arg, bias is not None, m, n, k,
              *a_strides, *b_strides, *c_strides, float(alpha), partial if partial is not None else rt.dummy(np.float32))
    if partial is None or not reduce:
        return partial
    rt.launch(plan.reducer, (n, m, batch), (min(REDUCE_WG, n), 1, 1), partial, c, bias_arg, bias is not None,
              m, n, *c_strides, float(alpha))
    return None


@dataclass(frozen=True)
class _GemmPlan:
    """What a ``gemm_batched`` call launches: its tile, the product's kernel and sizes, and the
    split-K reduction's kernel (None unless the tile splits K)."""

    tile: GemmTile
    kernel: object
    global_size: tuple
    local_size: tuple
    reducer: object


@functools.lru_cache(maxsize=4096)
def _gemm_plan(rt: Runtime, dtype, m: int, n: int, k: int, batch: int, a_strides: tuple, b_strides: tuple,
               vectors: bool, tile: GemmTile) -> _GemmPlan:
    """The plan of one GEMM shape, layout and tile, made once (the vector widths, the defines and
    the kernel lookup took a good part of a linear layer's host time when made per call)."""
    tile = _check_tile(rt, tile)
    defines = {**tile.defines(), **_layout(tile, m, n, k, a_strides, b_strides, vectors)}
    kernel = rt.kernel(FILE, "gemm_batched", dtype, defines)
    groups = (-(-n // tile.bn), -(-m // tile.bm), batch * tile.splits)
    reducer = rt.kernel(FILE, "gemm_splitk_reduce", dtype, defines) if tile.splits > 1 else None  # same program
    return _GemmPlan(tile, kernel, (groups[0] * tile.threads, groups[1], groups[2]), (tile.threads, 1, 1), reducer)


def conv2d_implicit_gemm(rt: Runtime, x, w, b, y, stride, padding, tile: GemmTile | None = None,
                         vectors: bool = True) -> None:
    """y = conv2d(x, w) + b as one launch of the implicit GEMM: M = O, N = N*Ho*Wo, K = C*kh*kw,
    the im2col matrix computed by the loader (never stored). A split-K tile adds a float32
    (splits, O, N*Ho*Wo) temporary and a second launch (``conv2d_splitk_reduce``). The weights
    are read with vector loads where K allows; the im2col loads are scalar."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = y.shape[2:]
    pixels = n * ho * wo
    tile = _check_tile(rt, tile or choose_tile(rt, "conv", x.dtype, o, pixels, c * kh * kw))
    partial = None
    if tile.splits > 1:
        check_int32_tensors(("x", (tile.splits, o, pixels), "the split-K partial sums (splits, O, N*Ho*Wo)"))
        partial = rt.temp((tile.splits, o, pixels), np.float32)
    k = c * kh * kw
    va = vector_width((0, k, 1), (o, k), (tile.bm, tile.bk), tile.bm * tile.bk // tile.threads) if vectors else 1
    defines = {**tile.defines(), "A_K_UNIT": True, "B_N_UNIT": True, "VA": va, "VB": 1,  # im2col loads: scalar
               "KH": kh, "KW": kw, "SH": stride[0], "SW": stride[1]}
    kernel = rt.kernel(FILE, "conv2d_implicit_gemm", x.dtype, defines)
    groups = (-(-pixels // tile.bn), -(-o // tile.bm), tile.splits)
    bias_arg = b if b is not None else rt.dummy(x.dtype)
    rt.launch(kernel, (groups[0] * tile.threads, groups[1], groups[2]), (tile.threads, 1, 1),
              x, w, bias_arg, b is not None, y, n, c, h, wd, o, ho, wo, padding[0], padding[1],
              partial if partial is not None else rt.dummy(np.float32))
    if partial is not None:
        reducer = rt.kernel(FILE, "conv2d_splitk_reduce", x.dtype, defines)  # same program
        rt.launch(reducer, (pixels, o), (min(REDUCE_WG, pixels), 1), partial, bias_arg, b is not None, y,
                  o, ho * wo, pixels)


#: attention's products in gemm.cl, each the build ATTENTION = SCORES (1), PV (2) or PV_SOFTMAX (3)
ATTENTION_BUILDS = {"attention_scores": 1, "attention_pv": 2, "attention_pv_softmax": 3}


def attention_product(rt: Runtime, name: str, dtype, m: int, n: int, k: int, batch: int, a_strides, b_strides,
                      causal: bool, tile: GemmTile | None = None, vectors: bool = True):
    """The kernel, global and local size of one of attention's products (``ATTENTION_BUILDS``),
    an m x n product over k per batch*head, on the matrix core; attention.py passes its arguments.
    The tile is the table's "attention" entry nearest the shape (``choose_tile``), never split
    along K: a split tile's blocking is used unsplit."""
    tile = tile or choose_tile(rt, "attention", dtype, m, n, k, batch)
    tile = _check_tile(rt, replace(tile, splits=1))
    defines = {**tile.defines(), **_layout(tile, m, n, k, a_strides, b_strides, vectors),
               "ATTENTION": ATTENTION_BUILDS[name], "CAUSAL": bool(causal)}
    groups = (-(-n // tile.bn), -(-m // tile.bm), batch)
    return rt.kernel(FILE, name, dtype, defines), (groups[0] * tile.threads, groups[1], batch), (tile.threads, 1, 1)


def linear(rt: Runtime, x, weight, bias=None):
    """y = x W^T + b over the last axis of x, W (out, in): one GEMM launch and no temporaries, or
    with a split-K tile the partial sums and their reduction (``gemm_batched``)."""
    k = x.shape[-1]
    rows = math.prod(x.shape[:-1])
    n = weight.shape[0]
    check_int32_tensors(("x", x.shape), ("weight", weight.shape), ("x", (rows, n), "the output (..., out_features)"))
    y = rt.empty(x.shape[:-1] + (n,), x.dtype)
    if y.size == 0:
        return y
    gemm_batched(rt, x, weight, y, m=rows, n=n, k=k, batch=1,
                 a_strides=(0, k, 1), b_strides=(0, 1, k), c_strides=(0, n, 1), bias=bias)
    return y

"""OpenCL attention: what each variant launches and stores (the paper's point), the flash plan, and
the softmax op's one launch.

Naive launches 3 kernels and holds two N x M float32 temporaries (A and P), the partially fused
softmax 3 kernels with A and the N x 2 statistics, flash one kernel and nothing; causal masking
changes none of this. The flash plan picks the key block from the head dim so that a
work-group's __local memory fits. The softmax op is one launch of the naive attention's
softmax_rows kernel, over the last axis only. The accuracy of every variant, on every backend, is
checked in tests/test_attention.py.
"""

import numpy as np
import pytest
from hypothesis import strategies as st

from backends.opencl import attention as ocl_attention
from backends.opencl import gemm
from reference import attention as ref_attention
from reference.numerics import relative_frobenius_error

from ..helpers import attention_inputs, given_for, random_array, seeds

pytestmark = pytest.mark.backends("opencl")

METHODS = ("naive", "partial_softmax", "flash")


@pytest.mark.parametrize("method", METHODS)
def test_launches_and_temporaries(backend, method):
    b, h, n, m, d, dv = 2, 3, 19, 23, 8, 5
    (q, k, v), _ = attention_inputs(0, (b, h, n, m, d), np.float16, dv=dv)
    args = [backend.asarray(x) for x in (q, k, v)]
    with backend.measure() as counted:
        out = backend.attention(*args, method=method)
    scores, stats = ((b, h, n, m), np.float32), ((b, h, n, 2), np.float32)
    expected = {
        "naive": (["attention_scores", "softmax_rows", "attention_pv"], [scores, scores]),
        "partial_softmax": (["attention_scores", "softmax_stats", "attention_pv_softmax"], [scores, stats]),
        "flash": (["flash_attention"], []),
    }[method]
    assert counted.kernels == expected[0] and counted.launches == len(expected[0])
    assert counted.temp_buffers == expected[1]
    assert counted.temp_bytes == sum(4 * np.prod(shape) for shape, _ in expected[1])
    assert out.shape == (b, h, n, dv) and out.dtype == np.float16


@pytest.mark.parametrize("method", METHODS)
def test_causal_launches_and_temporaries_are_unchanged(backend, method):
    b, h, n, m, d = 1, 2, 21, 17, 8
    args = [backend.asarray(x) for x in attention_inputs(1, (b, h, n, m, d), np.float32)[0]]
    counts = []
    for causal in (False, True):
        with backend.measure() as counted:
            backend.attention(*args, method=method, causal=causal)
        counts.append((counted.kernels, counted.temp_buffers, counted.temp_bytes))
    assert counts[0] == counts[1]
    assert len(counts[1][0]) == (1 if method == "flash" else 3)


@pytest.mark.parametrize("tile", ["128x16x8/8x2", "16x128x8/2x8/k4"])
def test_causal_products_on_non_square_tiles(backend, monkeypatch, tile):
    """The matrix core's products on a tall and a wide tile (a split tile's blocking is used
    unsplit): which score tiles lie wholly right of the diagonal, and where the P V products
    stop, depend on both tile sides. Causal, ragged N and M, against float64."""
    tile = gemm.GemmTile.parse(tile)
    monkeypatch.setattr(gemm, "choose_tile", lambda *args: tile)
    (q, k, v), inputs64 = attention_inputs(2, (1, 2, 150, 140, 12), np.float32)
    expected = ref_attention.attention(*inputs64, causal=True)
    for method in ("naive", "partial_softmax"):
        with backend.measure() as counted:
            out = backend.attention(*(backend.asarray(x) for x in (q, k, v)), method=method, causal=True)
        assert counted.launches == 3, method
        assert relative_frobenius_error(backend.to_numpy(out), expected) < 1e-5, method


@pytest.mark.parametrize("d, block_k, chunk", [(40, 64, 40), (80, 64, 40), (160, 32, 56), (512, 64, 64)])
def test_flash_plan_fits_local_memory(d, block_k, chunk):
    plan = ocl_attention.flash_plan(d, d, local_mem_size=48 * 1024)
    assert (plan.block_k, plan.chunk) == (block_k, chunk)
    assert plan.local_bytes <= ocl_attention.FLASH_LOCAL_BUDGET == 48 * 1024
    assert plan.chunk % 4 == 0 and plan.chunk <= 64 and plan.chunk * -(-d // plan.chunk) >= d
    assert plan.block_k % 16 == 0 and plan.block_k % plan.value_rows == 0 and plan.value_rows % 4 == 0
    assert plan.rows_per_item * (2 if d > 256 else 1) == 4  # at most 64 accumulator registers at dv = 512
    # a smaller device shrinks the blocks; one that cannot hold the smallest is told so
    smaller = ocl_attention.flash_plan(d, d, local_mem_size=plan.local_bytes - 1)
    assert smaller.local_bytes < plan.local_bytes
    with pytest.raises(ValueError, match="use method='partial_softmax'"):
        ocl_attention.flash_plan(d, d, local_mem_size=4 * d)


# --------------------------------------------------------------------------- the softmax op


def test_softmax_is_one_launch_without_temporaries(backend, dtype):
    # the softmax_rows kernel of the naive attention, in the tensor's storage dtype
    @given_for(backend, seed=seeds, lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
               cols=st.integers(1, 300))
    def check(seed, lead, cols):
        x = backend.asarray(random_array(seed, lead + (cols,)).astype(dtype))
        with backend.measure() as counted:
            y = backend.softmax(x)
        assert counted.launches == 1 and counted.kernels == ["softmax_rows"] and counted.temp_bytes == 0
        assert y.dtype == dtype

    check()


def test_softmax_runs_over_the_last_axis_only(backend):
    x = backend.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="last axis only"):
        backend.softmax(x, axis=0)

"""Block sizes, warps and pipeline stages of the JAX backend's Pallas FlashAttention on the issue's
shapes, against torch SDPA in the same run, and JAX's own Mosaic GPU FlashAttention 3 kernel as a
yardstick of what the other Pallas lowering reaches (``python -m experiments.probes.jax_flash_blocks
[--dtypes float16] [--stages 2 3] [--mosaic]``).

For each (B, H, N, M, d), storage dtype and (block_q, block_k, num_warps, num_stages) candidate:
the kernel's relative error against the float64 reference on batch 0, heads 0-1 (every candidate
must be correct to count), its time per call (``JaxBackend.time`` with ``args``: one program of R
calls on distinct input copies, back-to-back, median of 10) and its rate (4 B H N M d flops).
torch's ``scaled_dot_product_attention`` on the same inputs is timed from a CUDA graph of
back-to-back calls (``TorchCUDA.time``). The blocks ``flash_blocks`` picks for the shape are marked
``default``; ``--layouts`` 1 and 2 time the kernel on (B, H, N, d) and on (B, N, H, d) arrays (the
layout the backend hands it inside the network, marked ``(B,N,H,d)``).

``--mosaic``: ``jax.experimental.pallas.ops.gpu.attention_mgpu`` (JAX's FlashAttention 3 for
Hopper: warp-specialized, TMA copies, wgmma) on the shapes it accepts (head dim padded to a
multiple of 64, N a multiple of 2 block_q, M of block_kv), q pre-scaled and in its (B, N, H, d)
layout outside the timed call. It is a reference point for the lowering, not one of our kernels.

``--hopper``: our Mosaic GPU kernel (backends/jax/attention_hopper.py) on the shapes it accepts,
in (B, N, H, d) as the network hands it over, for (block_q, block_k) in HOPPER_BLOCKS, head dims
padded to a multiple of 64 or of 16 (``head_dim_multiple``: 40 -> 64 or 48) and ``--hopper-stages``
K/V slots; its default blocks are marked ``default``, and where they pad the head dim, a second row
times the kernel alone on operands padded beforehand (what the pad and the crop cost). ``--triton
default`` times only the Triton kernel's default blocks (in both layouts), ``--triton none`` skips it.
"""

import argparse
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from backends import get_backend
from backends.jax import attention as jax_attention
from backends.jax import attention_hopper
from backends.jax.pallas_util import pad_last
from experiments.peers import TorchCUDA
from reference import attention as ref_attention

SHAPES = ((2, 8, 4096, 4096, 40), (2, 8, 4096, 77, 40), (2, 8, 1024, 1024, 80), (2, 8, 256, 256, 160))
BLOCKS = ((64, 64), (128, 64), (128, 32), (128, 128))
WARPS = (4, 8)
#: (block_q, block_kv) of the Mosaic GPU kernel
MOSAIC_BLOCKS = ((64, 64), (64, 128), (128, 64), (128, 128))


def relative_error(out, expected) -> float:
    out = np.asarray(out, dtype=np.float64)
    return float(np.linalg.norm(out - expected) / np.linalg.norm(expected))


def mosaic_rows(backend, shape, q, k, v, expected, sdpa_ms, dtype_name):
    """JAX's Mosaic GPU FlashAttention 3 on one shape: one row per block candidate it accepts."""
    from jax.experimental.pallas.ops.gpu import attention_mgpu

    b, h, n, m, d = shape
    d_pad = -(-d // 64) * 64
    flops = 4 * b * h * n * m * d
    # (B, N, H, d_pad) with q pre-scaled: the kernel computes softmax(q k^T) v
    layout = lambda x: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, 0), (0, d_pad - d)))
    jq = layout((jnp.asarray(q, jnp.float32) * d ** -0.5).astype(q.dtype))
    jk, jv = layout(jnp.asarray(k)), layout(jnp.asarray(v))
    for block_q, block_kv in MOSAIC_BLOCKS:
        if n % (2 * block_q) or m % block_kv:
            continue
        config = attention_mgpu.TuningConfig(block_q=block_q, block_kv=block_kv, max_concurrent_steps=2)
        fn = jax.jit(lambda q, k, v, c=config: attention_mgpu.attention(q, k, v, c))
        label = f"| {shape} | {dtype_name} | mosaic FA3 {block_q} | {block_kv} | 3 WG | 2 |"
        timed_row(backend, label, fn, (jq, jk, jv), lambda out: np.swapaxes(out[:1, :, :2, :d], 1, 2), expected,
                  flops, sdpa_ms)


def timed_row(backend, label, fn, inputs, head_rows, expected, flops, sdpa_ms):
    """One candidate's table row: its error on ``head_rows(output)`` (batch 0, heads 0-1 in
    (B, H, N, d)) against ``expected``, its device time and rate, or why the lowering refused it."""
    try:
        out = np.asarray(head_rows(fn(*inputs)), dtype=np.float64)
    except Exception as exc:  # a candidate the lowering refuses
        print(f"{label} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | | |", flush=True)
        return
    ms = backend.time(fn, repeats=10, args=inputs).device_median * 1e3
    ratio = f"{sdpa_ms / ms:.2f}x" if sdpa_ms else ""
    print(f"{label} {relative_error(out, expected):.2e} | {ms:.4f} | {flops / ms * 1e-9:.0f} | {ratio} |", flush=True)


#: (block_q, block_k) candidates of our Mosaic GPU kernel, and its head-dim paddings
HOPPER_BLOCKS = ((64, 64), (64, 128), (128, 64), (128, 128))
HOPPER_MULTIPLES = (64, 16)


def hopper_rows(backend, shape, heads_last, expected, sdpa_ms, dtype_name, stages_list):
    """Our Mosaic GPU kernel (attention_hopper.py) on one shape: one row per candidate it accepts."""
    b, h, n, m, d = shape
    flops = 4 * b * h * n * m * d
    q, k, v = heads_last
    for (block_q, block_k), multiple, stages in itertools.product(HOPPER_BLOCKS, HOPPER_MULTIPLES, stages_list):
        if attention_hopper.why_not(q.shape, k.shape, v.shape, q.dtype, False, 2, block_q, block_k, stages, multiple):
            continue
        d_pad = attention_hopper.padded_head_dim(d, multiple)
        default = (attention_hopper.default_blocks(n, d_pad, stages) == (block_q, block_k)
                   and (multiple, stages) == (attention_hopper.HEAD_DIM_MULTIPLE, attention_hopper.STAGES))
        label = (f"| {shape} | {dtype_name} | hopper {block_q}{' default' if default else ''} | {block_k} | "
                 f"3 WG, d_pad {d_pad} | {stages} |")
        fn = jax.jit(lambda q, k, v, bq=block_q, bk=block_k, mu=multiple, st=stages:
                     attention_hopper.attention_flash_hopper(q, k, v, d ** -0.5, 2, bq, bk, st, mu))
        timed_row(backend, label, fn, (q, k, v), lambda out: out.swapaxes(1, 2)[:1, :2], expected, flops, sdpa_ms)
        if default and d_pad != d:  # what the head-dim pad and crop cost: the kernel alone on padded operands
            padded = [pad_last(x, d_pad) for x in (q, k, v)]
            fn = jax.jit(lambda q, k, v: attention_hopper.attention_flash_hopper(q, k, v, d ** -0.5, 2))
            label = label.replace(" default", " default, kernel only (operands pre-padded)")
            timed_row(backend, label, fn, padded, lambda out: out.swapaxes(1, 2)[:1, :2, :, :d], expected, flops,
                      sdpa_ms)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--stages", nargs="+", type=int, default=[2], help="Triton pipeline stages to try")
    parser.add_argument("--mosaic", action="store_true", help="also JAX's Mosaic GPU FlashAttention 3")
    parser.add_argument("--layouts", nargs="+", type=int, default=[1, 2], choices=[1, 2],
                        help="flash's heads_axis: 1 reads (B, H, N, d), 2 reads (B, N, H, d) in place")
    parser.add_argument("--hopper", action="store_true", help="also our Mosaic GPU kernel (attention_hopper.py)")
    parser.add_argument("--hopper-stages", nargs="+", type=int, default=[2], help="its K/V slots to try")
    parser.add_argument("--triton", choices=["sweep", "default", "none"], default="sweep",
                        help="the Triton kernel: every candidate, its default blocks only, or none")
    args = parser.parse_args(argv)
    backend = get_backend("jax")
    torch_peer, why = TorchCUDA.start()
    print(f"{backend.device_info()['name']}; torch: {why or torch_peer.describe()}")
    print("| shape | dtype | block_q | block_k | warps | stages | rel. error | ms | TFLOP/s | vs SDPA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for (b, h, n, m, d), dtype_name in itertools.product(SHAPES, args.dtypes):
        dtype = jnp.dtype(dtype_name)
        q, k, v = (rng.standard_normal(shape).astype(np.float32)
                   for shape in ((b, h, n, d), (b, h, m, d), (b, h, m, d)))
        q, k, v = (x.astype(dtype) for x in (q, k, v))  # rounded to the storage dtype once
        expected = ref_attention.attention(*(x[:1, :2].astype(np.float64) for x in (q, k, v)))
        flops = 4 * b * h * n * m * d
        sdpa_ms = None
        if torch_peer is not None:
            tq, tk, tv = (torch_peer.asarray(x) for x in (q, k, v))
            sdpa = torch_peer.time(lambda: torch_peer.F.scaled_dot_product_attention(tq, tk, tv), repeats=20)
            sdpa_ms = sdpa.device_median * 1e3
            print(f"| {(b, h, n, m, d)} | {dtype_name} | SDPA | | | | | {sdpa_ms:.4f} | {flops / sdpa_ms * 1e-9:.0f} | "
                  f"1.00x |", flush=True)
        jq, jk, jv = (jnp.asarray(x) for x in (q, k, v))
        default = jax_attention.flash_blocks(n, m, jax_attention.padded_dim(d), tensor_cores=True)
        heads_last = [x.swapaxes(1, 2) for x in (jq, jk, jv)]  # (B, N, H, d), as the network hands them over
        candidates = itertools.product(BLOCKS, WARPS, args.stages, args.layouts)
        if args.triton != "sweep":
            candidates = [((bq, bk), w, jax_attention.FLASH_STAGES, a) for a in args.layouts
                          for bq, bk, w in [default]] if args.triton == "default" else []
        for (block_q, block_k), warps, stages, heads_axis in candidates:
            fn = jax.jit(lambda q, k, v, bq=block_q, bk=block_k, w=warps, s=stages, a=heads_axis:
                         jax_attention.attention_flash(q, k, v, d ** -0.5, False, block_q=bq, block_k=bk, num_warps=w,
                                                       num_stages=s, heads_axis=a))
            mark = " default" if (block_q, block_k, warps, stages) == (*default, jax_attention.FLASH_STAGES) else ""
            mark += " (B,N,H,d)" if heads_axis == 2 else ""
            label = f"| {(b, h, n, m, d)} | {dtype_name} | {block_q}{mark} | {block_k} | {warps} | {stages} |"
            inputs = (jq, jk, jv) if heads_axis == 1 else heads_last
            head_rows = lambda out, a=heads_axis: (out if a == 1 else out.swapaxes(1, 2))[:1, :2]  # noqa: E731
            timed_row(backend, label, fn, inputs, head_rows, expected, flops, sdpa_ms)
        if args.hopper:
            hopper_rows(backend, (b, h, n, m, d), heads_last, expected, sdpa_ms, dtype_name, args.hopper_stages)
        if args.mosaic:
            mosaic_rows(backend, (b, h, n, m, d), q, k, v, expected, sdpa_ms, dtype_name)


if __name__ == "__main__":
    main()

"""Block sizes and warps of the JAX backend's Pallas FlashAttention on the issue's shapes, against
torch SDPA in the same run (``python -m experiments.probes.jax_flash_blocks [--dtypes float16]``).

For each (B, H, N, M, d), storage dtype and (block_q, block_k, num_warps) candidate: the kernel's
relative error against the float64 reference on batch 0, heads 0-1 (every candidate must be
correct to count), its time per call (``JaxBackend.time``'s device estimate: back-to-back calls,
median of 10 samples) and its rate (4 B H N M d flops). torch's ``scaled_dot_product_attention``
on the same inputs is timed by CUDA events (``TorchCUDA.time``). The blocks ``flash_blocks`` picks for
the shape are marked ``default`` (the runs before c7ad900 marked ``block_sizes``' choice).
"""

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from backends import get_backend
from backends.jax import attention as jax_attention
from experiments.peers import TorchCUDA
from reference import attention as ref_attention

SHAPES = ((2, 8, 4096, 4096, 40), (2, 8, 4096, 77, 40), (2, 8, 1024, 1024, 80), (2, 8, 256, 256, 160))
BLOCKS = ((64, 64), (128, 64), (128, 32), (64, 32), (128, 128))
WARPS = (4, 8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    args = parser.parse_args(argv)
    backend = get_backend("jax")
    torch_peer, why = TorchCUDA.start()
    print(f"{backend.device_info()['name']}; torch: {why or torch_peer.describe()}")
    print("| shape | dtype | block_q | block_k | warps | rel. error | ms | TFLOP/s | vs SDPA |")
    print("|---|---|---|---|---|---|---|---|---|")
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
            sdpa_ms = sorted(sdpa.device)[len(sdpa.device) // 2] * 1e3
            print(f"| {(b, h, n, m, d)} | {dtype_name} | SDPA | | | | {sdpa_ms:.4f} | {flops / sdpa_ms * 1e-9:.0f} | 1.00x |")
        jq, jk, jv = (jnp.asarray(x) for x in (q, k, v))
        default = jax_attention.flash_blocks(n, m, jax_attention.padded_dim(d), tensor_cores=True)[:2]
        for (block_q, block_k), warps in itertools.product(BLOCKS, WARPS):
            fn = jax.jit(lambda q, k, v, bq=block_q, bk=block_k, w=warps: jax_attention.attention_flash(
                q, k, v, d ** -0.5, False, block_q=bq, block_k=bk, num_warps=w))
            try:
                out = np.asarray(fn(jq, jk, jv)[:1, :2], dtype=np.float64)
            except Exception as exc:  # a candidate the compiler refuses (e.g. shared memory)
                print(f"| {(b, h, n, m, d)} | {dtype_name} | {block_q} | {block_k} | {warps} | "
                      f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} | | | |")
                continue
            error = np.linalg.norm(out - expected) / np.linalg.norm(expected)
            timing = backend.time(lambda: fn(jq, jk, jv), repeats=10)
            ms = timing.device_median * 1e3
            mark = " default" if (block_q, block_k) == default else ""
            ratio = f"{sdpa_ms / ms:.2f}x" if sdpa_ms else ""
            print(f"| {(b, h, n, m, d)} | {dtype_name} | {block_q}{mark} | {block_k} | {warps} | {error:.2e} | "
                  f"{ms:.4f} | {flops / ms * 1e-9:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

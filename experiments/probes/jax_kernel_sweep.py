"""The JAX backend's Pallas kernels against XLA and torch on SD 1.4's shapes, with their tuning
knobs swept, timed by a device-bound timer (``python -m experiments.probes.jax_kernel_sweep
[--families group_norm group_norm_nhwc gelu attention] [--dtypes float32 float16]``).

Families and candidates (each checked against the float64 reference before it is timed; a
candidate the compiler refuses prints ``failed``):

    group_norm  GroupNorm+SiLU, 32 groups, the benchmark's six shapes: XLA (our unfused jnp),
                torch F.group_norm + F.silu, the fused "one_launch" form, the "split" form with
                ``split_parts``' rule (blocks of 4096 and 1024) and with 4x fewer and more parts
    group_norm_nhwc  the same shapes stored channels-last, as inside the networks on a GPU: XLA, and
                the "channels_last" form with each statistics kernel (``group_norm.CL_STATS``) at the
                rule's parts and blocks, 4x fewer and more parts, and blocks of 2048 and 8192
    gelu        GEGLU (exact GELU, diffusers' feed-forward) on the benchmark's four shapes: XLA,
                torch, and the Pallas kernel with each erfc form (``gelu.ERFC_FORMS``) at blocks of 1024,
                and with blocks 2048 and 4096 (default warps, and 4) at its dtype's default form
    attention   naive (jnp), partial_softmax (its statistics in a kernel of their own, the paper's, and in
                the scores kernel), flash and torch SDPA on the issue's shapes

The timer (``JaxBackend.time`` with ``args``; this probe introduced it): back-to-back calls of one
jitted op would measure the host's dispatch for a kernel of a few microseconds, so one jitted
program runs the op on R distinct copies of the inputs (R chosen so that the copies hold >= 256
MiB, at most 64): one dispatch for R kernels, and distinct copies so that XLA cannot merge the
calls and the L2 cache does not hold the next call's input. Per-call time = program time / R,
the median of 10 samples of back-to-back programs. torch's time is CUDA events between back-to-back calls
(``TorchCUDA.time``). GB/s = (inputs read once + output written once) / time; the copy row is
XLA's ``x * 2`` (read and write the same bytes) on the largest input, in this run.
"""

from __future__ import annotations

import argparse
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from backends.jax import attention as jax_attention
from backends.jax import gelu as jax_gelu
from backends.jax import group_norm as jax_group_norm
from backends.jax.backend import JaxBackend
from experiments.peers import TorchCUDA
from reference import attention as ref_attention
from reference import gelu as ref_gelu
from reference import group_norm as ref_group_norm
from reference.elementwise import silu

GN_SHAPES = ((2, 320, 64, 64), (2, 640, 32, 32), (2, 1280, 16, 16), (1, 512, 128, 128), (1, 256, 256, 256),
             (1, 128, 512, 512))
GEGLU_SHAPES = ((2, 4096, 2560), (2, 1024, 5120), (2, 256, 10240), (2, 64, 10240))
ATTENTION_SHAPES = ((2, 8, 4096, 4096, 40), (2, 8, 4096, 77, 40), (2, 8, 1024, 1024, 80), (2, 8, 1024, 77, 80),
                    (2, 8, 256, 256, 160), (1, 1, 4096, 4096, 512))
GROUPS, EPS = 32, 1e-5
COPY_BYTES = 256 << 20
#: --smoke: tiny shapes in interpret mode, to check the probe itself on a CPU
SMOKE = {"GN_SHAPES": ((1, 64, 8, 8),), "GEGLU_SHAPES": ((1, 8, 64),), "ATTENTION_SHAPES": ((1, 2, 32, 32, 40),),
         "COPY_BYTES": 1 << 16, "INTERPRET": True}
INTERPRET = False


def device_ms(fn, args, repeats: int = 10) -> float:
    """Median device milliseconds per call of fn(*args): ``JaxBackend.time`` with ``args``, R
    calls on distinct copies per program."""
    return JaxBackend().time(fn, repeats=repeats, warmup=1, args=args).device_median * 1e3


def torch_ms(torch_peer, fn) -> float:
    return torch_peer.time(fn, repeats=20).device_median * 1e3


def relative_error(y, expected) -> float:
    y = np.asarray(jnp.asarray(y, jnp.float32), dtype=np.float64)
    return float(np.linalg.norm(y - expected) / np.linalg.norm(expected))


def row(*cells) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def attempt(label_cells, check, time_fn, nbytes=None, flops=None, peer_ms=None):
    """Check, then time, one candidate and print its row; a failure prints the exception."""
    try:
        error = check()
        ms = time_fn()
    except Exception as exc:  # a candidate the compiler refuses: shared memory, registers, lowering
        row(*label_cells, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}", "", "", "")
        return None
    rate = f"{nbytes / ms * 1e-6:.0f} GB/s" if nbytes else f"{flops / ms * 1e-9:.0f} TFLOP/s"
    versus = f"{peer_ms / ms:.2f}x" if peer_ms else ""
    row(*label_cells, f"{error:.2e}", f"{ms:.4f}", rate, versus)
    return ms


def copy_row(dtypes) -> None:
    print(f"\n## copy (XLA x * 2, {4 * COPY_BYTES >> 20} MiB read and written)\n")
    row("dtype", "ms", "GB/s")
    row("---", "---", "---")
    for dtype in dtypes:
        x = jnp.ones((4 * COPY_BYTES) // jnp.dtype(dtype).itemsize, dtype) * 1.5
        ms = device_ms(lambda x: x * 2, [x], repeats=10)
        row(dtype, f"{ms:.4f}", f"{2 * x.size * x.dtype.itemsize / ms * 1e-6:.0f}")


def group_norm_case(rng, shape, dtype, channels_last: bool):
    """([x, weight, bias] rounded to ``dtype``, x of ``shape`` (N, C, H, W) or stored (N, H, W, C)
    with ``channels_last``; and the float64 GroupNorm+SiLU of those values, in x's layout)."""
    n, c, h, w = shape
    host = [rng.standard_normal((n, h, w, c) if channels_last else shape).astype(np.float32),
            1 + 0.1 * rng.standard_normal(c).astype(np.float32), 0.1 * rng.standard_normal(c).astype(np.float32)]
    host = [a.astype(jnp.dtype(dtype)) for a in host]
    x64, w64, b64 = (a.astype(np.float64) for a in host)
    if channels_last:
        x64 = np.moveaxis(x64, -1, 1)
    expected = silu(ref_group_norm.group_norm(x64, GROUPS, w64, b64, EPS))
    return host, np.moveaxis(expected, 1, -1) if channels_last else expected


def group_norm_family(dtypes, torch_peer, rng) -> None:
    print("\n## GroupNorm+SiLU (32 groups)\n")
    row("shape", "dtype", "candidate", "rel. error", "ms", "rate", "vs XLA")
    row(*["---"] * 7)
    for shape, dtype in itertools.product(GN_SHAPES, dtypes):
        c = shape[1]
        host, expected = group_norm_case(rng, shape, dtype, channels_last=False)
        x, w, b = (jnp.asarray(a) for a in host)
        nbytes = 2 * x.size * x.dtype.itemsize
        label = (shape, dtype)
        xla = attempt(label + ("XLA (jnp unfused)",),
                      lambda: relative_error(jax_group_norm.group_norm(x, GROUPS, w, b, EPS, True), expected),
                      lambda: device_ms(lambda x, w, b: jax_group_norm.group_norm(x, GROUPS, w, b, EPS, True), [x, w, b]),
                      nbytes)
        if torch_peer is not None:
            tx, tw, tb = (torch_peer.asarray(a) for a in host)
            attempt(label + ("torch F.group_norm+F.silu",),
                    lambda: relative_error(torch_peer.to_numpy(torch_peer.group_norm_silu(tx, tw, tb, GROUPS, EPS)),
                                           expected),
                    lambda: torch_ms(torch_peer, lambda: torch_peer.group_norm_silu(tx, tw, tb, GROUPS, EPS)),
                    nbytes, peer_ms=xla)
        length = c // GROUPS * math.prod(shape[2:])
        rule = jax_group_norm.split_parts(shape[0] * GROUPS, length)
        candidates = [("one_launch", None, 4096), ("split", None, 4096), ("split", None, 1024)]
        candidates += [("split", p, 4096) for p in (rule // 4, rule * 4) if p >= 1 and length // p >= 256]
        for form, parts, max_block in candidates:
            def fused(x, w, b, form=form, parts=parts, max_block=max_block):
                return jax_group_norm.group_norm_fused(x, GROUPS, w, b, EPS, True, INTERPRET, form=form, parts=parts,
                                                       max_block=max_block)
            name = f"{form} block<={max_block}" + (f" parts={parts or rule}{' (rule)' if parts is None else ''}"
                                                   if form == "split" else "")
            attempt(label + (name,), lambda: relative_error(fused(x, w, b), expected),
                    lambda: device_ms(fused, [x, w, b]), nbytes, peer_ms=xla)


def group_norm_nhwc_family(dtypes, torch_peer, rng) -> None:
    """GroupNorm+SiLU on activations stored channels-last, as XLA stores them around its 16-bit
    NHWC convolutions inside the networks: x is an (N, H, W, C) array, each candidate views it as
    NCHW and back (transposes XLA cancels against the kernel's (N, HW, C) view)."""
    print("\n## GroupNorm+SiLU on channels-last activations (32 groups)\n")
    row("shape (N, C, H, W)", "dtype", "candidate", "rel. error", "ms", "rate", "vs XLA")
    row(*["---"] * 7)
    for shape, dtype in itertools.product(GN_SHAPES, dtypes):
        n, c, h, w = shape
        host, expected = group_norm_case(rng, shape, dtype, channels_last=True)
        x, wt, b = (jnp.asarray(a) for a in host)
        nbytes = 2 * x.size * x.dtype.itemsize
        label = (shape, dtype)

        def channels_last(norm):
            return lambda x, wt, b: jnp.moveaxis(norm(jnp.moveaxis(x, -1, 1), wt, b), 1, -1)

        unfused = channels_last(lambda x, wt, b: jax_group_norm.group_norm(x, GROUPS, wt, b, EPS, True))
        xla = attempt(label + ("XLA (jnp unfused)",), lambda: relative_error(jax.jit(unfused)(x, wt, b), expected),
                      lambda: device_ms(unfused, [x, wt, b]), nbytes)
        _, _, rule, _ = jax_group_norm._cl_geometry(n, h * w, c, None, jax_group_norm.NORM_BLOCK)
        candidates = [(stats, None, jax_group_norm.NORM_BLOCK) for stats in jax_group_norm.CL_STATS]
        candidates += [(stats, parts, jax_group_norm.NORM_BLOCK) for stats in jax_group_norm.CL_STATS
                       for parts in (rule // 4, rule * 4) if parts >= 1]
        candidates += [(stats, None, block) for stats in jax_group_norm.CL_STATS for block in (2048, 8192)]
        for stats, parts, block in candidates:
            fused = channels_last(lambda x, wt, b, stats=stats, parts=parts, block=block: jax_group_norm.group_norm_fused(
                x, GROUPS, wt, b, EPS, True, INTERPRET, form="channels_last", parts=parts, max_block=block, stats=stats))
            name = f"channels_last stats={stats} block<={block} parts={parts or rule}{' (rule)' if parts is None else ''}"
            attempt(label + (name,), lambda: relative_error(jax.jit(fused)(x, wt, b), expected),
                    lambda: device_ms(fused, [x, wt, b]), nbytes, peer_ms=xla)


def gelu_family(dtypes, torch_peer, rng) -> None:
    print("\n## GEGLU (exact GELU)\n")
    row("shape", "dtype", "candidate", "rel. error", "ms", "rate", "vs XLA")
    row(*["---"] * 7)
    for shape, dtype in itertools.product(GEGLU_SHAPES, dtypes):
        host = rng.standard_normal(shape).astype(np.float32).astype(jnp.dtype(dtype))
        x = jnp.asarray(host)
        expected = ref_gelu.geglu(host.astype(np.float64))
        nbytes = x.size * x.dtype.itemsize * 3 // 2
        label = (shape, dtype)
        xla = attempt(label + ("XLA (jnp unfused)",), lambda: relative_error(jax_gelu.geglu(x), expected),
                      lambda: device_ms(jax_gelu.geglu, [x]), nbytes)
        if torch_peer is not None:
            tx = torch_peer.asarray(host)
            attempt(label + ("torch chunk, a*F.gelu(gate)",),
                    lambda: relative_error(torch_peer.to_numpy(torch_peer.geglu(tx)), expected),
                    lambda: torch_ms(torch_peer, lambda: torch_peer.geglu(tx)), nbytes, peer_ms=xla)
        candidates = [(1024, None, form) for form in jax_gelu.ERFC_FORMS]  # the erfc each storage dtype could take
        candidates += [(max_block, warps, None) for max_block, warps in [(2048, None), (4096, None), (4096, 4)]]
        for max_block, warps, form in candidates:
            def fused(x, max_block=max_block, warps=warps, form=form):
                return jax_gelu.geglu_fused(x, False, INTERPRET, max_block=max_block, num_warps=warps, erfc_form=form)
            name = (f"Pallas block<={max_block} warps={warps or 'rule'} "
                    f"erfc={form or jax_gelu.default_erfc_form(dtype)}{'' if form else ' (default)'}")
            attempt(label + (name,), lambda: relative_error(fused(x), expected), lambda: device_ms(fused, [x]),
                    nbytes, peer_ms=xla)


def attention_family(dtypes, torch_peer, rng) -> None:
    print("\n## attention\n")
    row("shape (B, H, N, M, d)", "dtype", "candidate", "rel. error", "ms", "rate", "vs SDPA")
    row(*["---"] * 7)
    for (b, h, n, m, d), dtype in itertools.product(ATTENTION_SHAPES, dtypes):
        host = [rng.standard_normal(s).astype(np.float32).astype(jnp.dtype(dtype)) for s in ((b, h, n, d), (b, h, m, d), (b, h, m, d))]
        q, k, v = (jnp.asarray(a) for a in host)
        expected = ref_attention.attention(*(a[:1, :2].astype(np.float64) for a in host))
        flops = 4 * b * h * n * m * d
        label = ((b, h, n, m, d), dtype)
        sdpa = None
        if torch_peer is not None:
            tq, tk, tv = (torch_peer.asarray(a) for a in host)
            sdpa = attempt(label + ("torch SDPA",),
                           lambda: relative_error(torch_peer.to_numpy(torch_peer.attention(tq, tk, tv))[:1, :2], expected),
                           lambda: torch_ms(torch_peer, lambda: torch_peer.attention(tq, tk, tv)), flops=flops)
        candidates = [(method, "reduction") for method in jax_attention.METHODS]
        candidates.insert(2, ("partial_softmax", "scores"))
        for method, stats in candidates:
            def fn(q, k, v, method=method, stats=stats):  # flash reads (B, H, N, d) in place, as JaxBackend's op
                return jax_attention.attention(q, k, v, d ** -0.5, method, INTERPRET, partial_softmax_stats=stats,
                                               flash_heads_axis=1)
            name = f"{method} (stats in the scores kernel)" if stats == "scores" else method
            attempt(label + (name,), lambda: relative_error(fn(q, k, v)[:1, :2], expected),
                    lambda: device_ms(fn, [q, k, v]), flops=flops, peer_ms=sdpa)
        # flash on (B, N, H, d) operands, as the network hands them over (the row above reads the
        # op's (B, H, N, d) in place; before 2026-12-08 it swapped them into this layout, by copies)
        kernel = jax_attention.flash_kernel_for(q, k, v, False, "auto", INTERPRET)
        heads_last = [jnp.asarray(x.swapaxes(1, 2)) for x in (q, k, v)]

        def flash_in_place(q, k, v, kernel=kernel):
            return jax_attention.attention_flash_heads_last(q, k, v, d ** -0.5, INTERPRET, False, kernel)
        attempt(label + (f"flash on (B, N, H, d) operands ({kernel} kernel)",),
                lambda: relative_error(flash_in_place(*heads_last).swapaxes(1, 2)[:1, :2], expected),
                lambda: device_ms(flash_in_place, heads_last), flops=flops, peer_ms=sdpa)


FAMILIES = {"group_norm": group_norm_family, "group_norm_nhwc": group_norm_nhwc_family, "gelu": gelu_family,
            "attention": attention_family}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes in interpret mode (checks the probe on a CPU)")
    args = parser.parse_args(argv)
    if args.smoke:
        globals().update(SMOKE)
    torch_peer, why = TorchCUDA.start()
    print(f"{jax.devices()[0].device_kind}; jax {jax.__version__}; torch: {why or torch_peer.describe()}")
    copy_row(args.dtypes)
    rng = np.random.default_rng(0)
    for family in args.families:
        dtypes = [d for d in args.dtypes if family != "attention" or d != "float32"] or args.dtypes
        FAMILIES[family](dtypes, torch_peer, rng)


if __name__ == "__main__":
    main()

"""Nearest 2x upsampling followed by a 3x3 convolution (SD's ``Upsample2D``), in three forms
(``python -m experiments.probes.jax_upsample_conv [--dtypes float16 float32]``).

Why: the VAE decoder's three upsampler convolutions hold about 28% of its products, and on the H100
the decoder's `best` missed a third of diffusers' time by 3.5% (2026-12-07). Each output phase (row
and column parity) of the 3x3 convolution of the upsampled image reads only 2 x 2 pixels of x:
4/9 of the products, and no upsampled image (the math: reference/upsample_conv.py). Forms timed:

- ``upsample, conv3x3``: the two ops (``JaxBackend(upsample_conv="upsample")``, the default:
  repeat, then one cuDNN convolution);
- ``phases, one conv``: ``JaxBackend(upsample_conv="phases")`` (backends/jax/upsample_conv.py):
  one 2x2 convolution of x padded by 1 with the four phases' kernels stacked as 4*O output
  channels ((H+1) x (W+1) outputs), each phase sliced at its offset and interleaved;
- ``phases, kernels given``: the same, with the phase kernels formed before the timed calls, as a
  network program forms them once with its weights (``JaxBackend(derived_weights="once")``,
  backends/jax/layouts.py); the two forms above form them in every call;
- ``phases, four convs``: one 2x2 convolution per phase, each with its own padding, interleaved;
- torch: ``F.interpolate(scale_factor=2, mode="nearest")`` then ``F.conv2d`` (diffusers' form).

Each row: the relative Frobenius error against the two ops on the same rounded inputs (float32 at
``Precision.HIGHEST`` on the device; float64 with ``--smoke``), and the device
time (``JaxBackend.time``, median). The rows take NCHW and give NCHW, as the networks' ops do; XLA picks
the layouts inside.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from backends.jax import upsample_conv
from backends.jax.backend import JaxBackend
from backends.jax.gemm import product_options
from experiments.peers import TorchCUDA
from reference import ops
from reference.numerics import relative_frobenius_error
from reference.sd.checkpoint import storage_dtype

#: (N, C, H, W) of the decoder's three upsamplers (output 2H x 2W, C -> C), at batch 2: twice the
#: decoder's work per image (experiments.sd_latency decodes one latent), as call 26 ran them
SHAPES = ((2, 512, 64, 64), (2, 512, 128, 128), (2, 256, 256, 256))
DN = ("NCHW", "OIHW", "NCHW")


def backend_form(form):
    """JaxBackend's ``upsample_conv2d`` in one of its forms (backends/jax/upsample_conv.py), as a
    function of (x, w, b, k): k, the phase kernels formed beforehand, is not read."""
    backend = JaxBackend(upsample_conv=form)
    return lambda x, w, b, k: backend.upsample_conv2d(x, w, b, 2, padding=1, method="direct")


def phases_kernels_given(x, w, b, k):
    """The phases in one convolution with their kernels k formed beforehand (``phase_kernels(w)``)."""
    return upsample_conv.upsample_conv2d_phases(x, w, b, kernels=k)


def phases_four_convs(x, w, b, k):
    """The phases as four 2x2 convolutions of H x W outputs, each with its own padding (this probe's only)."""
    n, _, h, wd = x.shape
    k = upsample_conv.phase_kernels(w).reshape(2, 2, *w.shape[:2], 2, 2)
    pad = ((1, 0), (0, 1))  # phase 0 reads rows i - 1 and i, phase 1 rows i and i + 1
    rows = [jnp.stack([lax.conv_general_dilated(x, k[a, c], (1, 1), (pad[a], pad[c]), dimension_numbers=DN,
                                                **product_options(x.dtype)) for c in (0, 1)], axis=-1)
            for a in (0, 1)]
    y = jnp.stack(rows, axis=3).reshape(n, w.shape[0], 2 * h, 2 * wd)
    return (y.astype(jnp.float32) + b.astype(jnp.float32)[:, None, None]).astype(x.dtype)


FORMS = {"upsample, conv3x3": backend_form("upsample"), "phases, one conv": backend_form("phases"),
         "phases, kernels given": phases_kernels_given, "phases, four convs": phases_four_convs}


def exact(x, w, b, smoke: bool) -> np.ndarray:
    """The two ops on the rounded inputs: in float64 by the NumPy reference with ``--smoke``, else
    on the device in float32 (``Precision.HIGHEST``, whose error is far below 16-bit rounding), not a
    float64 convolution of the decoder's shapes on the host."""
    if smoke:
        return ops.upsample_conv2d(*(np.asarray(a, np.float64) for a in (x, w, b)))
    f32 = (jnp.asarray(a, jnp.float32) for a in (x, w, b))
    return np.asarray(jax.jit(FORMS["upsample, conv3x3"])(*f32, None), np.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "float32"])
    parser.add_argument("--shapes", type=int, default=len(SHAPES), help="the first N of SHAPES")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, no torch, no timing (CPU)")
    args = parser.parse_args(argv)
    backend = JaxBackend()
    shapes = ((1, 8, 5, 6),) if args.smoke else SHAPES[:args.shapes]
    torch_peer, why = (None, "--smoke") if args.smoke else TorchCUDA.start()
    print(f"{jax.devices()[0].device_kind}; jax {jax.__version__}; torch: {why or 'yes'}\n")
    print("| (N, C, H, W) -> 2H x 2W | dtype | form | rel. error | ms | vs upsample, conv3x3 |\n|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in shapes:
        c = shape[1]
        x64 = rng.standard_normal(shape)
        w64 = rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)
        b64 = rng.standard_normal(c)
        for name in args.dtypes:
            dtype = storage_dtype(name)
            x, w, b = (a.astype(dtype) for a in (x64, w64, b64))
            ref = exact(x, w, b, args.smoke)
            xs, ws, bs = (jnp.asarray(a) for a in (x, w, b))
            ks = jax.jit(upsample_conv.phase_kernels)(ws)
            base_ms = None
            for form, fn in FORMS.items():
                fn = jax.jit(fn)
                error = relative_frobenius_error(np.asarray(fn(xs, ws, bs, ks), np.float64), ref)
                ms = float("nan") if args.smoke else backend.time(fn, repeats=args.repeats, args=(xs, ws, bs, ks)).device_median * 1e3
                base_ms = base_ms or ms
                print(f"| {shape} | {name} | {form} | {error:.2e} | {ms:.4f} | {base_ms / ms:.2f}x |", flush=True)
            if torch_peer is not None:
                tf = torch_peer.torch.nn.functional
                tx, tw, tb = (torch_peer.asarray(a) for a in (x, w, b))
                run = lambda: tf.conv2d(tf.interpolate(tx, scale_factor=2.0, mode="nearest"), tw, tb, padding=1)
                error = relative_frobenius_error(np.asarray(torch_peer.to_numpy(run()), np.float64), ref)
                ms = torch_peer.time(run, repeats=args.repeats).device_median * 1e3
                print(f"| {shape} | {name} | torch (interpolate, conv2d) | {error:.2e} | {ms:.4f} | {base_ms / ms:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()

"""How XLA runs the 16-bit convolutions and matrix products on a GPU: the output dtype and the
precision flag of ``lax.conv_general_dilated`` / ``lax.dot_general`` against the time and the
kernel XLA picks (``python -m experiments.probes.jax_conv_dtypes [--dtypes float16 bfloat16]``).

Why: SD 1.4 with bfloat16 storage ran 3.7x slower than with float16 on the H200 (UNet 59.8
against 16.1 ms, decoder 92.5 against 9.4, 2026-12-04), and Winograd made it faster, so the
direct convolution is the suspect. For each storage dtype and shape, four forms of the same
product: float32 output (``preferred_element_type``: the accumulation type stated) or the storage
dtype's, each with ``Precision.HIGHEST`` or the default precision; and torch (cuDNN / cuBLAS) as
the peer. Each row: the relative Frobenius error against the float32 HIGHEST product of the same rounded
inputs (float32's own error, about 1e-7, is far below 16-bit rounding), the device
time (``JaxBackend.time`` with ``args``), and the optimized HLO's library calls with the element
types they read and write (an ``f32`` where the storage is 16-bit means an upcast copy).

The convolutions also run with a bias in both of ``conv2d_direct``'s forms (``bias_form=`` separate or
epilogue, winograd.CONV_BIAS): does XLA fold the bias into cuDNN's call (a
``__cudnn$convBiasActivationForward``), and what does that save against the separate pass?
"""

from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from backends.jax import winograd
from backends.jax.backend import JaxBackend
from experiments.peers import TorchCUDA
from reference.sd.checkpoint import storage_dtype

#: conv3x3 (N, C, H, W) -> O, stride 1, padding 1: a UNet level and a decoder level of SD 1.4
CONV_SHAPES = (((2, 320, 64, 64), 320), ((1, 256, 256, 256), 256))
#: linear (rows, in) -> out: the UNet's first feed-forward at 64 x 64
LINEAR_SHAPES = (((8192, 320), 2560),)
FORMS = {"f32 out, HIGHEST": (jnp.float32, lax.Precision.HIGHEST), "f32 out, default": (jnp.float32, None),
         "storage out, HIGHEST": (None, lax.Precision.HIGHEST), "storage out, default": (None, None)}


def library_calls(fn, *args) -> str:
    """The custom calls (cuDNN, cuBLAS) and Triton fusions of fn's optimized HLO, each with the
    element types on its line."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    calls = []
    for line in text.splitlines():
        target = (re.search(r'custom_call_target="([^"]+)"', line) or re.search(r'"kind":"(__triton[^"]*)"', line)
                  or re.search(r"= \S+ (convolution|dot)\(", line))
        if target:
            types = sorted(set(re.findall(r"\b(f32|f16|bf16)\[", line)))
            calls.append(f"{target.group(1)} ({'/'.join(types)})")
    return "; ".join(dict.fromkeys(calls)) or "no library call"


def conv(form):
    out, precision = FORMS[form]

    def fn(x, w):
        y = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=precision, preferred_element_type=out)
        return y.astype(x.dtype)
    return fn


def conv_with_bias(form):
    def fn(x, w, b):
        return winograd.conv2d_direct(x, w, b, (1, 1), (1, 1), bias_form=form)
    return fn


def linear(form):
    out, precision = FORMS[form]

    def fn(x, w):
        y = lax.dot_general(x, w, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=out)
        return y.astype(x.dtype)
    return fn


def relative_error(ours, exact) -> float:
    ours = np.asarray(ours, np.float64)
    return float(np.linalg.norm(ours - exact) / np.linalg.norm(exact))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    args = parser.parse_args(argv)
    backend, (torch_peer, why) = JaxBackend(), TorchCUDA.start()
    if torch_peer is None:
        raise SystemExit(f"torch: {why} (this probe compares with cuDNN and cuBLAS)")
    tf = torch_peer.torch.nn.functional
    print(f"{jax.devices()[0].device_kind}; jax {jax.__version__}\n")
    print("| op | shape | dtype | form | rel. error | ms | library calls (element types) |\n|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    cases = [("conv3x3", (x, (o, x[1], 3, 3)), conv, tf.conv2d) for x, o in CONV_SHAPES] + \
            [("linear", (x, (o, x[1])), linear, tf.linear) for x, o in LINEAR_SHAPES]
    for op, (x_shape, w_shape), make, torch_fn in cases:
        x64 = rng.standard_normal(x_shape)
        w64 = rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))
        for name in args.dtypes:
            dtype = storage_dtype(name)
            x, w = x64.astype(dtype), w64.astype(dtype)
            xs, ws = (jnp.asarray(a) for a in (x, w))
            exact = np.asarray(make("f32 out, HIGHEST")(xs.astype(jnp.float32), ws.astype(jnp.float32)), np.float64)
            label = f"| {op} | {x_shape} -> {w_shape[0]} | {name}"
            for form in FORMS:
                fn = jax.jit(make(form))
                error = relative_error(fn(xs, ws), exact)
                ms = backend.time(fn, repeats=10, args=(xs, ws)).device_median * 1e3
                print(f"{label} | {form} | {error:.2e} | {ms:.4f} | {library_calls(make(form), xs, ws)} |", flush=True)
            tx, tw = torch_peer.asarray(x), torch_peer.asarray(w)
            kwargs = {"padding": 1} if op == "conv3x3" else {}
            error = relative_error(torch_peer.to_numpy(torch_fn(tx, tw, **kwargs)), exact)
            ms = torch_peer.time(lambda: torch_fn(tx, tw, **kwargs), repeats=20).device_median * 1e3
            print(f"{label} | torch | {error:.2e} | {ms:.4f} | cuDNN / cuBLAS |", flush=True)
            if op != "conv3x3":
                continue
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            bs = jnp.asarray(b)
            exact_b = exact + np.asarray(b, np.float64)[None, :, None, None]
            for form in winograd.CONV_BIAS:
                fn = jax.jit(conv_with_bias(form))
                error = relative_error(fn(xs, ws, bs), exact_b)
                ms = backend.time(fn, repeats=10, args=(xs, ws, bs)).device_median * 1e3
                print(f"{label} | + bias, {form} | {error:.2e} | {ms:.4f} | "
                      f"{library_calls(conv_with_bias(form), xs, ws, bs)} |", flush=True)
            tb = torch_peer.asarray(b)
            error = relative_error(torch_peer.to_numpy(torch_fn(tx, tw, tb, padding=1)), exact_b)
            ms = torch_peer.time(lambda: torch_fn(tx, tw, tb, padding=1), repeats=20).device_median * 1e3
            print(f"{label} | + bias, torch | {error:.2e} | {ms:.4f} | cuDNN / cuBLAS |", flush=True)


if __name__ == "__main__":
    main()

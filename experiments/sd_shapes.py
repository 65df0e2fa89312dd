"""Every op call of one SD 1.4 UNet iteration and one VAE decode, by shape: traced, not listed by hand.

    python -m experiments.sd_shapes        # the table: distinct calls per op, with counts

``ShapeTracer`` is a ``Backend`` whose arrays (``ShapeOnly``) hold only a shape and a dtype. Its
op implementations compute the output shape and record the call: (op, variant, input shapes,
weight shapes, keyword arguments). Running the network's module tree on it, with every
parameter a ``ShapeOnly`` of its checkpoint shape (``Model.build(config).parameter_shapes()``),
lists exactly the calls the real network makes, through the same validators, in no time and no
memory. The benchmark (``experiments/kernels.py``) takes its convolution and linear shapes from
here.

Traced: the UNet (SD14_UNET) at batch 2 (classifier-free guidance), 64 x 64 latents and 77 text
tokens, and the VAE decoder (SD14_VAE) at batch 1, 64 x 64 latents -> 512 x 512 pixels. The
module trees are called directly (``UNet2DConditionModel.build(config)(run, ...)``); the ``Model``
wrappers around them only move inputs to the backend, compute the timestep sinusoid on the host
(here: a ``ShapeOnly`` of its shape) and, for the decoder, divide the latents by the scaling
factor (one ``mul_scalar``, left out here).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from backends.base import Backend
from reference.sd.layers import Run
from reference.sd.unet import SD14_UNET, UNet2DConditionModel
from reference.sd.vae import SD14_VAE, VAEDecoder

#: the traced workload: SD 1.4 at 512 x 512, two UNet batches (text and empty prompt)
UNET_BATCH, LATENT_SIDE, TEXT_TOKENS = 2, 64, 77
VAE_BATCH = 1


@dataclass(frozen=True)
class ShapeOnly:
    """An array that is only a shape and a dtype (what the validators look at)."""

    shape: tuple[int, ...]
    dtype: np.dtype = np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Call:
    """One op call: ``inputs`` are the activations' shapes, ``weights`` the parameters' shapes
    (None for an absent bias), ``kwargs`` the other arguments, sorted by name."""

    op: str
    variant: str
    inputs: tuple
    weights: tuple = ()
    kwargs: tuple = ()

    def kwarg(self, name):
        return dict(self.kwargs)[name]


def _shape(x):
    return None if x is None else tuple(x.shape)


def conv_output_shape(x_shape, w_shape, stride, padding) -> tuple[int, int, int, int]:
    """(N, O, H', W') of a convolution of x (N, C, H, W) with w (O, C, kh, kw)."""
    (kh, kw), (sh, sw), (ph, pw) = w_shape[2:], stride, padding
    return (x_shape[0], w_shape[0], (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1)


class ShapeTracer(Backend):
    """A backend that computes output shapes and records every call in ``calls`` (in order).

    Variants are resolved as on any backend (``Optimizations.none()`` by default: unfused,
    naive attention, direct convolution); shapes do not depend on them."""

    name = "shape_tracer"
    array_type = ShapeOnly

    def __init__(self, optimizations=None):
        super().__init__(optimizations)
        self.calls: list[Call] = []

    def _record(self, op, variant, inputs, out_shape, weights=(), **kwargs) -> ShapeOnly:
        self.calls.append(Call(op, variant, tuple(_shape(x) for x in inputs), tuple(_shape(w) for w in weights),
                               tuple(sorted(kwargs.items()))))
        return ShapeOnly(tuple(int(s) for s in out_shape), inputs[0].dtype)

    def asarray(self, x):
        return x if isinstance(x, ShapeOnly) else ShapeOnly(tuple(np.shape(x)), np.asarray(x).dtype)

    def to_numpy(self, x):
        raise TypeError("a ShapeTracer array has no values, only a shape")

    # -- the ops: output shapes -----------------------------------------------------------------

    def _group_norm(self, x, num_groups, weight, bias, eps, *, fused, silu):
        return self._record("group_norm", "fused" if fused else "unfused", [x], x.shape, [weight, bias],
                            num_groups=num_groups, silu=silu)

    def _layer_norm(self, x, weight, bias, eps):
        return self._record("layer_norm", "", [x], x.shape, [weight, bias])

    def _gelu(self, x, approximate, *, fused):
        return self._record("gelu", "fused" if fused else "unfused", [x], x.shape, approximate=approximate)

    def _geglu(self, x, approximate, *, fused):
        return self._record("geglu", "fused" if fused else "unfused", [x], x.shape[:-1] + (x.shape[-1] // 2,),
                            approximate=approximate)

    def _silu(self, x):
        return self._record("silu", "", [x], x.shape)

    def _quick_gelu(self, x):
        return self._record("quick_gelu", "", [x], x.shape)

    def _softmax(self, x, axis):
        return self._record("softmax", "", [x], x.shape, axis=axis)

    def _attention(self, q, k, v, scale, method, *, causal):
        return self._record("attention", method, [q, k, v], q.shape[:3] + v.shape[3:], causal=causal)

    def _conv2d_direct(self, x, w, b, stride, padding):
        return self._record("conv2d", "direct", [x], conv_output_shape(x.shape, w.shape, stride, padding), [w, b],
                            stride=stride, padding=padding)

    def _conv2d_winograd(self, x, w, b, padding, tile):
        return self._record("conv2d", f"winograd{tile}", [x], conv_output_shape(x.shape, w.shape, (1, 1), padding),
                            [w, b], stride=(1, 1), padding=padding)

    def _linear(self, x, weight, bias):
        return self._record("linear", "", [x], x.shape[:-1] + (weight.shape[0],), [weight, bias])

    def _upsample_nearest2d(self, x, scale_factor):
        n, c, h, w = x.shape
        return self._record("upsample_nearest2d", "", [x], (n, c, h * scale_factor, w * scale_factor),
                            scale_factor=scale_factor)

    def _add(self, a, b):
        return self._record("add", "", [a, b], a.shape)

    def _add_broadcast(self, x, v):
        return self._record("add_broadcast", "", [x, v], x.shape)

    def _mul_scalar(self, x, s):
        return self._record("mul_scalar", "", [x], x.shape)

    def _concat(self, arrays, axis):
        shape = list(arrays[0].shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        return self._record("concat", "", arrays, shape, axis=axis)

    def _reshape(self, x, shape):
        return self._record("reshape", "", [x], shape)

    def _transpose(self, x, axes):
        return self._record("transpose", "", [x], tuple(x.shape[a] for a in axes))


# -- the SD 1.4 networks, traced ----------------------------------------------------------------


def _shape_only_parameters(module) -> dict:
    return {name: ShapeOnly(shape) for name, shape in module.parameter_shapes().items()}


def trace_unet() -> list[Call]:
    """The calls of one SD 1.4 UNet evaluation (batch 2, 64 x 64 latents, 77 text tokens)."""
    config = {**UNet2DConditionModel.DEFAULTS, **SD14_UNET}
    module = UNet2DConditionModel.build(config)
    tracer = ShapeTracer()
    sample = ShapeOnly((UNET_BATCH, config["in_channels"], LATENT_SIDE, LATENT_SIDE))
    sinusoid = ShapeOnly((UNET_BATCH, config["block_out_channels"][0]))
    context = ShapeOnly((UNET_BATCH, TEXT_TOKENS, config["cross_attention_dim"]))
    module(Run(tracer, _shape_only_parameters(module)), sample, sinusoid, context)
    return tracer.calls


def trace_vae_decoder() -> list[Call]:
    """The calls of one SD 1.4 VAE decode (batch 1, 64 x 64 latents -> 512 x 512)."""
    config = {**VAEDecoder.DEFAULTS, **SD14_VAE}
    module = VAEDecoder.build(config)
    tracer = ShapeTracer()
    latents = ShapeOnly((VAE_BATCH, config["latent_channels"], LATENT_SIDE, LATENT_SIDE))
    module(Run(tracer, _shape_only_parameters(module)), latents)
    return tracer.calls


def sd14_calls() -> dict[str, Counter]:
    """{network: Counter of distinct ``Call``s -> how often each runs per evaluation}."""
    return {"unet": Counter(trace_unet()), "vae_decoder": Counter(trace_vae_decoder())}


def is_conv3x3_stride1(call: Call) -> bool:
    return call.op == "conv2d" and call.weights[0][2:] == (3, 3) and call.kwarg("stride") == (1, 1)


def conv3x3_shapes() -> list[tuple[int, int, int, int, int]]:
    """Every distinct 3x3 stride-1 convolution of the UNet and the VAE decoder, as
    (N, C, H, W, O): input shape and output channels (padding 1 in all of them); UNet first,
    each network in order of first call."""
    shapes = []
    for calls in sd14_calls().values():
        for call in calls:
            if is_conv3x3_stride1(call):
                shape = call.inputs[0] + (call.weights[0][0],)
                if shape not in shapes:
                    shapes.append(shape)
    return shapes


def linear_shapes() -> list[tuple[int, int, int]]:
    """Every distinct linear layer of the UNet, as (rows, in, out), rows = the product of the
    input's leading axes (batch * tokens); in order of first call."""
    shapes = []
    for call in sd14_calls()["unet"]:
        if call.op == "linear":
            out_features, in_features = call.weights[0]
            shape = (math.prod(call.inputs[0][:-1]), in_features, out_features)
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def attention_shapes() -> list[tuple[int, int, int, int, int, int]]:
    """Every distinct attention of the UNet and the VAE decoder, as (B, H, N, M, d, dv): queries
    (B, H, N, d), keys (B, H, M, d), values (B, H, M, dv); in order of first call."""
    shapes = []
    for calls in sd14_calls().values():
        for call in calls:
            if call.op == "attention":
                (b, h, n, d), (_, _, m, _), (_, _, _, dv) = call.inputs
                if (b, h, n, m, d, dv) not in shapes:
                    shapes.append((b, h, n, m, d, dv))
    return shapes


def matrix_flops(call: Call) -> int:
    """The useful floating-point operations of one call's products (2 per multiply-add): a
    direct convolution's 2 N O C kh kw H' W', a linear layer's 2 rows in out, attention's
    2 B H N M (d + dv) for Q K^T and P V; 0 for the other ops (elementwise and normalizations,
    bound by memory). Winograd's fewer multiplications are not counted: this is the network's
    work, the same for every variant, so that time / work compares variants."""
    if call.op == "conv2d":
        w_shape = call.weights[0]
        output = conv_output_shape(call.inputs[0], w_shape, call.kwarg("stride"), call.kwarg("padding"))
        return 2 * math.prod(output) * math.prod(w_shape[1:])  # each output: C kh kw multiply-adds
    if call.op == "linear":
        out_features, in_features = call.weights[0]
        return 2 * math.prod(call.inputs[0][:-1]) * in_features * out_features
    if call.op == "attention":
        (b, h, n, d), (_, _, m, _), (_, _, _, dv) = call.inputs
        return 2 * b * h * n * m * (d + dv)
    return 0


def network_flops(network: str) -> dict[str, int]:
    """{op: useful FLOPs of its products per evaluation} of "unet" or "vae_decoder" (``matrix_flops``)."""
    work: dict[str, int] = {}
    for call, count in sd14_calls()[network].items():
        if flops := matrix_flops(call):
            work[call.op] = work.get(call.op, 0) + flops * count
    return work


def _describe(call: Call) -> str:
    parts = [" x ".join(str(s) for s in call.inputs)]
    if call.weights:
        parts.append("w " + ", ".join("-" if w is None else str(w) for w in call.weights))
    parts += [f"{k}={v}" for k, v in call.kwargs]
    return "  ".join(parts)


def main() -> None:
    for network, calls in sd14_calls().items():
        work = network_flops(network)
        print(f"# {network}: {sum(calls.values())} calls, {len(calls)} distinct; products "
              f"{sum(work.values()) / 1e9:.1f} GFLOP (" + ", ".join(f"{op} {f / 1e9:.1f}" for op, f in work.items()) + ")")
        by_op: dict[str, list] = {}
        for call, count in calls.items():
            by_op.setdefault(call.op, []).append((call, count))
        for op, entries in by_op.items():
            print(f"\n{op}: {sum(c for _, c in entries)} calls, {len(entries)} distinct")
            for call, count in entries:
                print(f"  {count:4d}x  {_describe(call)}")
        print()
    print("# 3x3 stride-1 convolutions (N, C, H, W, O):", len(conv3x3_shapes()))
    print("# UNet linear layers (rows, in, out):", len(linear_shapes()))
    print("# attentions (B, H, N, M, d, dv):", len(attention_shapes()))


if __name__ == "__main__":
    main()

"""How long the JAX backend takes to trace SD 1.4's UNet and decoder, before any lowering or
compiling (``python -m experiments.probes.jax_trace_time [--configs none paper]``); no GPU needed.

A network program (``backends/jax/layouts.py``) traces its network once to find the derived
weights the ops ask for (Winograd's transformed filters, the upsamplers' phase kernels) and, where
they ask for some, a second time with them as inputs; only that trace is lowered and compiled. This
probe times both traces per configuration, so the second one's share of a first call is known.
The weights are zeros: a trace reads shapes and dtypes, never values. The Pallas kernels are traced
as for a GPU (``interpret=False``), which needs no GPU until lowering.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from backends import get_backend
from backends.optimizations import Optimizations
from experiments import sd_latency
from reference.sd.checkpoint import storage_dtype
from reference.sd.layers import timestep_embedding
from reference.sd.unet import UNet2DConditionModel
from reference.sd.vae import VAEDecoder

COMPONENTS = {"unet": UNet2DConditionModel, "decoder": VAEDecoder}


def program_inputs(name: str, model, data) -> tuple:
    """The backend arrays ``model``'s network program takes (what ``model(*data)`` passes it)."""
    if name == "decoder":
        return tuple(model.to_backend([data[0]]))
    module, (sample, timestep, context) = model.module, data
    sinusoid = timestep_embedding(np.full((sample.shape[0],), float(timestep)), module.time_proj_dim,
                                  module.flip_sin_to_cos, module.freq_shift)
    return tuple(model.to_backend([sample, sinusoid, context]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["none", "paper"])
    parser.add_argument("--upsample-conv", nargs="+", default=["upsample", "phases"])
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    dtype = storage_dtype(args.dtype)
    configs = sd_latency.component_configs(tiny=False)
    data = sd_latency.inputs(configs, args.batch, dtype)
    print(f"SD 1.4, batch {args.batch}, {args.dtype}\n")
    print("| network | config | upsample_conv | first trace s | derived weights asked | second trace s |\n"
          "|---|---|---|---|---|---|")
    for name, cls in COMPONENTS.items():
        shapes = cls.build({**cls.DEFAULTS, **configs[name]}).parameter_shapes()
        zeros = {key: np.zeros(shape, dtype) for key, shape in shapes.items()}
        for config in args.configs:
            for form in args.upsample_conv:
                backend = get_backend("jax", optimizations=getattr(Optimizations, config)(), interpret=False,
                                      upsample_conv=form)
                model = cls(configs[name], zeros, backend=backend, dtype=dtype, source="zeros (shapes only)")
                program, inputs = model._forward, program_inputs(name, model, data[name])
                start = time.perf_counter()
                _, asked = program.trace(model.params, {}, inputs)
                first = time.perf_counter() - start
                start = time.perf_counter()
                program.trace(model.params, asked, inputs)
                second = time.perf_counter() - start
                print(f"| {name} | {config} | {form} | {first:.2f} | {len(asked)} | {second:.2f} |", flush=True)


if __name__ == "__main__":
    main()

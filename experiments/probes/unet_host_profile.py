"""Where the host time of one SD 1.4 UNet iteration goes on the OpenCL backend: cProfile of one
warm call, its launches, the sum of their device times and the wall time
(``python -m experiments.probes.unet_host_profile [--tiny] [--config paper]``)."""

import argparse
import cProfile
import pstats

import numpy as np

from backends import get_backend
from experiments import sd_latency
from reference.sd.checkpoint import random_parameters


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--config", default="paper", choices=list(sd_latency.CONFIGS))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    configs = sd_latency.component_configs(args.tiny)
    name, cls = sd_latency.COMPONENTS[1]
    assert name == "unet"
    params = random_parameters(cls.build({**cls.DEFAULTS, **configs[name]}).parameter_shapes(), seed=0)
    data = sd_latency.inputs(configs, 2, np.float32)
    backend = get_backend("opencl", optimizations=sd_latency.CONFIGS[args.config])
    model = cls(configs[name], params, backend=backend, dtype=np.float32, source="random parameters")
    sd_latency.timed_call(backend, model, data[name])  # kernel builds
    counted = sd_latency.counted_call(backend, model, data[name])
    print(f"{args.config} unet: {counted['launches']} launches, device {counted['device_s'] * 1e3:.1f} ms, "
          f"wall {counted['wall_s'] * 1e3:.1f} ms")
    profile = cProfile.Profile()
    profile.enable()
    sd_latency.timed_call(backend, model, data[name])
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

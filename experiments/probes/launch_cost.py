"""What one launch costs the host on the OpenCL backend, layer by layer
(``python -m experiments.probes.launch_cost [--unet tiny|full]``).

One small kernel (elementwise.cl's ``add`` on 256 floats: its device time is negligible) is
enqueued ``REPEATS`` times in a row and the host's wall time per call is the median of 5 rounds:

- ``enqueue``: ``cl.enqueue_nd_range_kernel`` with the arguments set once (the driver's own cost,
  with the event pyopencl makes), on the backend's profiling queue and on a queue without
  profiling;
- ``set_args + enqueue``: the arguments set on every call (what ``Runtime.launch`` does);
- ``Runtime.launch``: the runtime's launch (argument types fixed once, counters);
- ``backend.add``: the whole op (checks, a pool array, the launch).

``--unet tiny|full`` then times one SD UNet iteration: its device time, its wall time on the
profiling queue and on a queue without profiling, and its Python time alone (the driver's
``enqueue_nd_range_kernel`` replaced by a no-op), each also per launch.
"""

import argparse
import statistics
import time

import numpy as np
import pyopencl as cl

from backends import get_backend
from backends.opencl.runtime import Runtime

REPEATS = 2000
N = 256


def per_call_us(fn, rounds: int = 5) -> float:
    """Median over ``rounds`` of the host wall time per call of ``fn`` (called REPEATS times)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(REPEATS):
            fn()
        times.append((time.perf_counter() - start) / REPEATS)
    return statistics.median(times) * 1e6


def launch_costs(backend) -> dict:
    rt: Runtime = backend.rt
    a = rt.to_device(np.arange(N, dtype=np.float32))
    b = rt.to_device(np.ones(N, np.float32))
    y = rt.empty((N,), np.float32)
    kernel = rt.kernel("elementwise.cl", "add", np.float32)
    rt.launch(kernel, (N,), (N,), a, b, y, N)  # the argument types fixed once
    rt.finish()
    plain_queue = cl.CommandQueue(rt.context)

    def enqueue(queue):
        def call():
            cl.enqueue_nd_range_kernel(queue, kernel, (N,), (N,))
        return call

    def set_args_enqueue():
        kernel.set_args(a.data, b.data, y.data, N)
        cl.enqueue_nd_range_kernel(rt.queue, kernel, (N,), (N,))

    costs = {}
    kernel.set_args(a.data, b.data, y.data, N)
    for name, fn, queue in [("enqueue (profiling queue)", enqueue(rt.queue), rt.queue),
                            ("enqueue (queue without profiling)", enqueue(plain_queue), plain_queue),
                            ("set_args + enqueue", set_args_enqueue, rt.queue),
                            ("Runtime.launch", lambda: rt.launch(kernel, (N,), (N,), a, b, y, N), rt.queue),
                            ("backend.add (the whole op)", lambda: backend.add(a, b), rt.queue)]:
        costs[name] = per_call_us(fn)
        queue.finish()
    return costs


def unet_host_costs(size: str) -> dict:
    """One SD UNet iteration (batch 2, fp32, the paper's switches; ``size`` "tiny" or "full"):
    its launches and device seconds (a profiling queue), its wall seconds on a profiling queue and
    on a queue without profiling (median of 5 calls each), and the Python seconds of the call
    with the driver's enqueue replaced by a no-op."""
    from backends.opencl import runtime
    from experiments import sd_latency
    from reference.sd.checkpoint import random_parameters

    configs = sd_latency.component_configs(size == "tiny")
    name, cls = sd_latency.COMPONENTS[1]
    params = random_parameters(cls.build({**cls.DEFAULTS, **configs[name]}).parameter_shapes(), seed=0)
    costs = {}
    for profiling in (True, False):
        backend = get_backend("opencl", optimizations=sd_latency.CONFIGS["paper"], profiling=profiling)
        model = cls(configs[name], params, backend=backend, dtype=np.float32, source="random parameters")
        args = [backend.asarray(x) if isinstance(x, np.ndarray) else x
                for x in sd_latency.inputs(configs, 2, np.float32)[name]]
        backend.synchronize(model(*args))  # kernel builds, weight uploads
        walls = [sd_latency.timed_call(backend, model, args) for _ in range(5)]
        costs["wall_s (profiling queue)" if profiling else "wall_s (queue without profiling)"] = statistics.median(walls)
        if profiling:
            counted = sd_latency.counted_call(backend, model, args)
            costs["launches"], costs["device_s"] = counted["launches"], counted["device_s"]
            real = runtime.cl.enqueue_nd_range_kernel
            runtime.cl.enqueue_nd_range_kernel = lambda *args, **kwargs: None
            try:
                costs["python_s (enqueue a no-op)"] = statistics.median(
                    sd_latency.timed_call(backend, model, args) for _ in range(5))
            finally:
                runtime.cl.enqueue_nd_range_kernel = real
        del model
        backend.clear_caches()
    return costs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", choices=("tiny", "full"), help="also time one SD UNet iteration of this size")
    args = parser.parse_args(argv)
    backend = get_backend("opencl")
    print(f"{backend.rt}: host microseconds per call, median of 5 rounds of {REPEATS}")
    for name, us in launch_costs(backend).items():
        print(f"  {name:36s} {us:8.2f}")
    if args.unet:
        costs = unet_host_costs(args.unet)
        launches = costs.pop("launches")
        print(f"{args.unet} UNet iteration (batch 2, fp32, paper): {launches} launches")
        for name, seconds in costs.items():
            print(f"  {name:36s} {seconds * 1e3:8.2f} ms  {seconds / launches * 1e6:6.1f} us per launch")


if __name__ == "__main__":
    main()

"""Where the fused GEGLU's time goes on a GPU: the same vector kernel (gelu.cl's geglu, vectors
of 4, PER_ITEM per item) with the gate function swapped, on SD's (2, 4096, 2560) input
(``python -m experiments.probes.gelu_gate_cost``). Gates: OpenCL's erfc (the kernel's form),
OpenCL's erf (1 + erf, the form that cancels for negative x), exp alone, and none (a * b: the
copy floor of the same access pattern). Device time from profiling events, median of 20.
"""

import numpy as np
import pyopencl as cl

from backends.opencl import gelu
from backends.opencl.runtime import KERNEL_DIR, Runtime

GATES = {
    "erfc": "0.5f * v * erfc(-v * M_SQRT1_2_F)",
    "erf": "0.5f * v * (1.0f + erf(v * M_SQRT1_2_F))",
    "exp": "v * exp(-v)",
    "none": "v",
}


def main() -> None:
    rt = Runtime.for_device(None)
    rows, features = 2 * 4096, 1280
    for dtype in (np.float32, np.float16):
        x = rt.to_device(np.random.default_rng(0).standard_normal((rows, 2 * features)).astype(dtype))
        y = rt.empty((rows, features), dtype)
        per_item = gelu.PER_ITEM[np.dtype(dtype)]
        for name, gate in GATES.items():
            source = ((KERNEL_DIR / "common.h").read_text()
                      + f"\n#define GATE(v) ({gate})\n" + (KERNEL_DIR / "gelu.cl").read_text()
                      .replace("gelu_erf(v.s0)", "GATE(v.s0)").replace("gelu_erf(v.s1)", "GATE(v.s1)")
                      .replace("gelu_erf(v.s2)", "GATE(v.s2)").replace("gelu_erf(v.s3)", "GATE(v.s3)"))
            program = cl.Program(rt.context, source).build(options=[
                f"-DSTORAGE_HALF={int(dtype == np.float16)}", "-DVEC=4", f"-DPER_ITEM={per_item}", "-DWG=256"])
            kernel = cl.Kernel(program, "geglu")
            n_vec = rows * features // 4
            groups = -(-n_vec // (256 * per_item))
            times = []
            for _ in range(22):
                kernel.set_args(x.data, y.data, np.int32(features // 4), np.int32(n_vec), np.int32(0))
                event = cl.enqueue_nd_range_kernel(rt.queue, kernel, (groups * 256,), (256,))
                event.wait()
                times.append((event.profile.end - event.profile.start) * 1e-6)
            ms = float(np.median(times[2:]))
            nbytes = x.nbytes + y.nbytes
            print(f"geglu {np.dtype(dtype).name} gate={name:5s} {ms:.4f} ms  {nbytes / ms / 1e6:7.0f} GB/s")


if __name__ == "__main__":
    main()

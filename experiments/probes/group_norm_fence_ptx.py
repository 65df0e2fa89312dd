"""What the one-launch GroupNorm's synchronization compiles to on NVIDIA's OpenCL: the PTX lines
of its atomics and fences (``python -m experiments.probes.group_norm_fence_ptx``).

The kernel (backends/opencl/kernels/group_norm.cl, ``group_norm_fused``) orders a part's partial
statistics before its count with ``mem_fence(CLK_GLOBAL_MEM_FENCE)``; that orders them for
another SM only if it becomes a device-scope fence (``membar.gl`` / ``fence.*.gpu``), not a
block-scope one (``membar.cta``). The program binary of NVIDIA's OpenCL is PTX text.
"""

import re

import numpy as np

from backends.opencl.runtime import Runtime


def main() -> None:
    rt = Runtime.for_device(None)
    for dtype in (np.float32, np.float16):
        program = rt.program("group_norm.cl", dtype, {"WG": 256, "VEC": 4})
        ptx = program.binaries[0].decode(errors="replace")
        body = ptx[ptx.index(".entry group_norm_fused"):] if ".entry group_norm_fused" in ptx else ptx
        body = body[:body.find(".entry", 10)] if body.find(".entry", 10) > 0 else body
        lines = [line.strip() for line in body.splitlines() if re.search(r"membar|fence|atom\.|red\.", line)]
        print(f"{rt.device.name} {np.dtype(dtype).name}: {len(lines)} synchronization lines in group_norm_fused")
        for line in lines:
            print("   ", line)


if __name__ == "__main__":
    main()

"""How much host memory does loading a checkpoint take, against the file's size?

    python -m experiments.load_memory                       # SD 1.4's UNet, random weights (3.4 GB file)
    python -m experiments.load_memory --component vae --dtypes float32 float16
    python -m experiments.load_memory --folder ~/sd-v1-4/unet

Writes the component with random weights (SD 1.4's shapes, float32) to a temporary folder unless
``--folder`` names a real one, then loads it in a fresh process per (loader, dtype) and reports
the peak resident memory that process gained while loading (Linux's VmHWM), divided by the
file's size. Loaders: ours (``reference.sd.checkpoint.read_safetensors``: one tensor at a time,
each converted to the storage dtype as it is read) through ``from_pretrained`` on the numpy
backend, and safetensors' ``load_file`` (the whole file, then our conversion), which is what
the loader did before. A float32 model from a float32 file must hold 1.0x the file; the
question is how much more the loading needs on the way.

Things to try: ``--dtypes float16`` (the model holds half the file: is the peak still above
1x?), a real checkpoint in float16 (``--folder`` on a ``*.fp16`` variant), and the opencl
backend (the host copy is freed after the upload).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

COMPONENTS = {"unet": ("reference.sd.unet", "UNet2DConditionModel", "SD14_UNET"),
              "vae": ("reference.sd.vae", "VAEDecoder", "SD14_VAE"),
              "text_encoder": ("reference.sd.text_encoder", "TextEncoder", "SD14_TEXT_ENCODER")}

# Runs in a fresh interpreter, so that one measurement's peak does not hide the next one's.
_MEASURE = r"""
import importlib, json, sys, time
from pathlib import Path
import numpy as np

def peak_kib():
    return int(dict(line.split(":", 1) for line in open("/proc/self/status"))["VmHWM"].split()[0])

module, cls, folder, loader, dtype, backend_name = sys.argv[1:]
from backends import get_backend
from reference.sd.checkpoint import read_safetensors
model_class = getattr(importlib.import_module(module), cls)
folder, backend = Path(folder), get_backend(backend_name)
path = folder / model_class.WEIGHTS_NAME
before, start = peak_kib(), time.perf_counter()
if loader == "ours":
    model = model_class.from_pretrained(folder, backend=backend, dtype=dtype)
    params = {**model.params, **model.host_params}
else:
    from safetensors.numpy import load_file
    params = {k: v.astype(dtype, copy=False) for k, v in load_file(str(path)).items()}
growth, seconds = (peak_kib() - before) * 1024, time.perf_counter() - start
held = sum(int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize for p in params.values())
print(json.dumps({"peak_growth_bytes": growth, "seconds": seconds, "held_bytes": held,
                  "file_bytes": path.stat().st_size}))
"""


def write_random(component: str, folder: Path) -> Path:
    import importlib

    from backends import get_backend

    module, cls, config = COMPONENTS[component]
    module = importlib.import_module(module)
    getattr(module, cls).random(getattr(module, config), backend=get_backend("numpy")).save_pretrained(folder)
    return folder


def measure(component: str, folder: Path, loader: str, dtype: str, backend: str) -> dict:
    module, cls, _ = COMPONENTS[component]
    out = subprocess.run([sys.executable, "-c", _MEASURE, module, cls, str(folder), loader, dtype, backend],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.load_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--component", choices=sorted(COMPONENTS), default="unet")
    p.add_argument("--folder", type=Path, default=None, help="a component folder on disk (default: random weights)")
    p.add_argument("--dtypes", nargs="+", choices=["float32", "float16"], default=["float32", "float16"])
    p.add_argument("--loaders", nargs="+", choices=["ours", "safetensors"], default=["ours", "safetensors"])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    if not Path("/proc/self/status").exists():
        p.error("needs Linux's /proc/self/status (VmHWM) to read the peak memory")

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or write_random(args.component, Path(tmp) / args.component)
        rows = []
        print(f"{'loader':<12}{'dtype':<9}{'file GB':>8}{'held GB':>9}{'peak growth':>13}{'x file':>8}{'seconds':>9}")
        for dtype in args.dtypes:
            for loader in args.loaders:
                row = {"component": args.component, "loader": loader, "dtype": dtype, "backend": args.backend,
                       **measure(args.component, folder, loader, dtype, args.backend)}
                row["peak_over_file"] = row["peak_growth_bytes"] / row["file_bytes"]
                rows.append(row)
                print(f"{loader:<12}{dtype:<9}{row['file_bytes'] / 1e9:>8.2f}{row['held_bytes'] / 1e9:>9.2f}"
                      f"{row['peak_growth_bytes'] / 1e9:>11.2f} GB{row['peak_over_file']:>8.3f}{row['seconds']:>9.1f}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

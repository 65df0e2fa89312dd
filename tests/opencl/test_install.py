"""The installed package carries its OpenCL kernels: ``pip install`` of the repository into a fresh
folder, then, in a process that cannot see the repository, build and run a kernel from there.

Every .cl file is compiled with kernels/common.h in front (backends/opencl/runtime.py), so a wheel
without the header (pyproject's package-data listing ``*.cl`` only) imports fine and fails at the
first kernel build. The install runs pip on a copy of the repository's sources (so no build
folder or egg-info lands in the working tree), with ``--no-deps --no-build-isolation`` (no network,
the environment's setuptools), and the check runs with PYTHONPATH = the install folder and that
folder as the working directory. About 10 s on two cores.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("opencl")

REPO = Path(__file__).resolve().parents[2]
#: what is not part of the sources pip builds from
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".whl", ".hypothesis", ".pytest_cache", "__pycache__",
                                     "build", "*.egg-info", "tests", "out")

CHECK = r"""
import json, sys
from pathlib import Path
import numpy as np
import backends, reference
from backends.opencl import OpenCLBackend
from reference import elementwise, group_norm

target = Path(sys.argv[1]).resolve()
files = {name: str(Path(module.__file__).resolve())
         for name, module in (("backends", backends), ("reference", reference))}
be = OpenCLBackend(device=sys.argv[2], poison=True)
x = np.random.default_rng(0).standard_normal((2, 6, 7, 5)).astype(np.float32)
y = be.to_numpy(be.group_norm(be.asarray(x), 3, fused=True, silu=True))   # group_norm.cl, with common.h
expected = elementwise.silu(group_norm.group_norm(x.astype(np.float64), 3))
error = float(np.linalg.norm(y - expected) / np.linalg.norm(expected))
print(json.dumps({"files": files, "target": str(target), "error": error}))
"""


def run(command, cwd, env=None, timeout=120):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


#: setuptools builds wheels with its own bdist_wheel from 70.1 on, with the ``wheel`` package before
CAN_BUILD_WHEELS = ("import importlib.util as u, setuptools, sys; "
                    "sys.exit(not (u.find_spec('setuptools.command.bdist_wheel') or u.find_spec('wheel')))")


def require_build_tools():
    """pip, and a setuptools that can build a wheel, in this environment: without them the test
    cannot build, which is a broken test environment (they belong to the test extras), not a reason
    to skip."""
    for what, command in (("pip", [sys.executable, "-m", "pip", "--version"]),
                          ("setuptools", [sys.executable, "-c", "import setuptools"]),
                          ("setuptools' bdist_wheel (setuptools >= 70.1, or the wheel package)",
                           [sys.executable, "-c", CAN_BUILD_WHEELS])):
        done = run(command, cwd=REPO, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"{what} is missing from {sys.executable}'s environment; the install test needs it "
                        f"(add it to the test extras):\n{done.stderr}")


def device_index(device):
    import pyopencl as cl

    for i, platform in enumerate(cl.get_platforms()):
        for j, candidate in enumerate(platform.get_devices()):
            if candidate == device:
                return f"{i}:{j}"
    raise AssertionError(f"{device.name} is on no platform")


def test_installed_package_builds_its_kernels(backend, tmp_path):
    require_build_tools()
    sources, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(REPO, sources, ignore=NOT_SOURCES)
    install = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                   "--quiet", "--target", str(target), str(sources)], cwd=tmp_path)
    assert install.returncode == 0, f"pip install failed:\n{install.stdout}\n{install.stderr}"
    kernels = target / "backends" / "opencl" / "kernels"
    assert sorted(p.name for p in (REPO / "backends" / "opencl" / "kernels").iterdir() if p.suffix in (".cl", ".h")) \
        == sorted(p.name for p in kernels.iterdir()), "the wheel's kernels folder differs from the repository's"
    autotune = "backends/jax/autotune"  # XLA's committed autotuning results (JaxBackend's autotune_results)
    assert sorted(p.relative_to(REPO / autotune) for p in (REPO / autotune).rglob("*.pb")) \
        == sorted(p.relative_to(target / autotune) for p in (target / autotune).rglob("*.pb")), \
        "the wheel's autotuning results differ from the repository's"

    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("PYTHONHOME", None)
    done = run([sys.executable, "-c", CHECK, str(target), device_index(backend.rt.device)], cwd=target, env=env)
    assert done.returncode == 0, f"the installed package failed:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, file in result["files"].items():  # the installed copy ran, not the repository
        assert Path(file).is_relative_to(target.resolve()), f"{name} imported from {file}, not from {target}"
    assert result["error"] < 1e-5, result

"""The layering rule, read from the source: dependencies point down only,

    experiments/, paper_figures/  ->  reference/sd/ (the network)  ->  backends/  ->  reference/

so ``reference/`` (the network in reference/sd/ included) imports nothing from ``backends``: a
network receives the backend object it runs on. Above it, code uses a backend through its public
interface only: it imports ``backends``, ``backends.base`` or ``backends.optimizations``, never
one backend's own modules (``backends.opencl``, ``backends.jax``, ``backends.numpy_backend``), and
it does not branch on which backend it has (``backend.name == "jax"``): what differs between
backends is a method of ``Backend`` (``compile``, ``clear_caches``, ``memory_stats``, ...).

The checks parse each file with ``ast`` (nothing is imported or run):

- imports: every ``import a.b`` and ``from a.b import c`` at any nesting (inside functions too),
  relative imports resolved against the file's package; ``from a import b`` counts as importing
  ``a`` and ``a.b`` (b may be a module). Imports by string (``importlib.import_module``) are not seen.
- name branches: a comparison (``==``, ``!=``, ``in``, ...) between ``X.name`` and a string
  literal (or a tuple, list or set of them), where ``X`` is a name or attribute that contains
  "backend" (``backend``, ``self.backend``, ``pipe.backend``) or is ``be``. A heuristic: it looks
  at how the code spells a backend, not at types.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: backends' public modules; everything else under backends/ belongs to one backend
PUBLIC_BACKEND_MODULES = ("backends", "backends.base", "backends.optimizations")
PRIVATE_BACKEND_PACKAGES = ("backends.opencl", "backends.jax", "backends.numpy_backend")
#: files above the backends allowed to use one backend's own modules, and why
BACKEND_TOOLS = {"experiments/gemm_tiles.py": "the OpenCL backend's tile tuner: it measures that backend's own "
                                             "GEMM tiles (backends/opencl/gemm.py) at SD 1.4's shapes",
                 "experiments/probes/gelu_gate_cost.py": "a probe of the OpenCL backend's own GEGLU kernel with its "
                                                         "gate swapped (what the erfc costs)",
                 "experiments/probes/jax_flash_blocks.py": "a sweep of the JAX backend's own Pallas flash kernel "
                                                           "over block sizes, warps and pipeline stages",
                 "experiments/probes/jax_conv_dtypes.py": "XLA's 16-bit convolutions and products (lax calls) timed by JaxBackend.time",
                 "experiments/probes/jax_upsample_conv.py": "the JAX backend's two forms of the upsamplers "
                                                            "(backends/jax/upsample_conv.py) and a third, timed "
                                                            "against torch",
                 "experiments/probes/jax_kernel_sweep.py": "a sweep of the JAX backend's own Pallas kernels' "
                                                           "forms and blocks against XLA and torch",
                 "experiments/probes/launch_cost.py": "a probe of the OpenCL runtime's host cost per launch (its "
                                                      "queue, its launch, the driver's enqueue swapped for a no-op)",
                 "experiments/probes/group_norm_fence_ptx.py": "a probe of the PTX that the OpenCL backend's "
                                                               "one-launch GroupNorm compiles to",
                 "paper_figures/fusion.py": "evaluates the OpenCL backend's fused GroupNorm plan "
                                            "(group_norm.fused_plan, pure Python) on the real shapes for the "
                                            "H200 of the committed runs, where no backend is at hand"}


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; ``package`` (e.g. "reference.sd")
    resolves relative imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def names_a_backend(node: ast.AST) -> bool:
    """``backend``, ``self.backend``, ``pipe.backend``, ``be``: how this code base spells a backend."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "backend" in name.lower() or name == "be"


def is_backend_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "name" and names_a_backend(node.value)


def is_string_literal(node: ast.AST) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(is_string_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def backend_name_comparisons(tree: ast.AST) -> list[int]:
    """Lines that compare a backend's ``.name`` with a string literal."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(is_backend_name(o) for o in operands) and any(is_string_literal(o) for o in operands):
                lines.append(node.lineno)
    return lines


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


# -- the checks on small sources (so that a pass below means something) ------------------------


@pytest.mark.parametrize("source, package, expected", [
    ("import backends", "reference.sd", "backends"),
    ("from backends import get_backend", "reference.sd", "backends.get_backend"),
    ("def f():\n    from backends.opencl.conv import clear_winograd_cache", "experiments", "backends.opencl.conv"),
    ("from backends import opencl", "experiments", "backends.opencl"),
    ("from .checkpoint import read_json", "reference.sd", "reference.sd.checkpoint"),
    ("from ..numerics import relative_frobenius_error", "reference.sd", "reference.numerics"),
])
def test_imports_are_found(source, package, expected):
    assert expected in [module for _, module in imported_modules(ast.parse(source), package)]


@pytest.mark.parametrize("source, flagged", [
    ('if self.backend.name == "jax": pass', True),
    ('if backend.name != "opencl": pass', True),
    ('if be.name in ("jax", "opencl"): pass', True),
    ('ok = "numpy" == pipe.backend.name', True),
    ('if args.backend != "opencl": pass', False),  # a command-line choice, not a backend object
    ('if model.name == "unet": pass', False),
    ('if backend.name == other.name: pass', False),
])
def test_backend_name_comparisons_are_found(source, flagged):
    assert bool(backend_name_comparisons(ast.parse(source))) == flagged


# -- the rule on the code base -------------------------------------------------------------------


def test_reference_imports_nothing_from_backends():
    files = python_files("reference")
    assert any(path.name == "checkpoint.py" for path in files), "reference/sd/ not found"
    offenders = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
                 for path in files for line, module in imported_modules(parse(path), package_of(path))
                 if is_within(module, "backends")]
    assert not offenders, ("reference/ must not import backends (pass a backend object instead):\n"
                           + "\n".join(offenders))


def test_no_backend_private_modules_above_the_backends():
    offenders = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
                 for path in python_files("reference", "experiments", "paper_figures")
                 if str(path.relative_to(ROOT)) not in BACKEND_TOOLS
                 for line, module in imported_modules(parse(path), package_of(path))
                 if any(is_within(module, private) for private in PRIVATE_BACKEND_PACKAGES)]
    assert not offenders, (f"use the Backend interface, not one backend's modules (public: "
                           f"{', '.join(PUBLIC_BACKEND_MODULES)}):\n" + "\n".join(offenders))


def test_backend_tools_exist():
    """Each exception names a file that exists (a renamed tool must not leave a stale exemption)."""
    assert all((ROOT / path).exists() for path in BACKEND_TOOLS)


def test_no_branching_on_the_backend_name():
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for path in python_files("reference", "experiments", "paper_figures")
                 for line in backend_name_comparisons(parse(path))]
    assert not offenders, ("compares a backend's .name with a string; make the difference a Backend method "
                           "(compile, clear_caches, ...):\n" + "\n".join(offenders))

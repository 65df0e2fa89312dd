"""Models on disk: diffusers' folder layout, safetensors files, random weights.

A component folder holds ``config.json`` and one safetensors file (``unet/`` and ``vae/``:
``diffusion_pytorch_model.safetensors``; ``text_encoder/``: ``model.safetensors``), with the
parameter names of diffusers / transformers. ``Model`` is the base of the three networks:

    from backends import get_backend

    unet = UNet2DConditionModel.from_pretrained("sd-v1-4/unet", backend=get_backend("opencl"))
    unet = UNet2DConditionModel.random(config, seed=0, backend=get_backend("jax"))  # same shapes, no file
    unet.save_pretrained("tiny/unet")

A model runs on the backend object it is given (``backend=``, required, by keyword): the caller
chooses and configures it (name, ``Optimizations``, device), so nothing here imports ``backends``.

Loading is strict: a missing file, a missing tensor or a tensor of the wrong shape raises an
error naming the file and the tensor; tensors of parts we do not model (the VAE's encoder) are
listed per model in ``IGNORED_PREFIXES`` and skipped, any other unexpected tensor is an error.
"""

from __future__ import annotations

import json
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from .layers import Module, Run

FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64}


class CheckpointError(ValueError):
    """A checkpoint folder that does not match the model (missing file, tensor or shape)."""


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a diffusers-style config)")
    with open(path) as f:
        return json.load(f)


#: the methods that tell a backend object from anything else (duck typing, so that nothing here
#: imports ``backends``): host <-> device copies and ``compile``; the ops are checked as they are called
BACKEND_METHODS = ("asarray", "to_numpy", "compile")


def require_backend(backend):
    """``backend`` itself if it offers the op interface, else a TypeError saying what to pass.
    Duck-typed (the methods in ``BACKEND_METHODS``), so that this package imports no backend."""
    if isinstance(backend, str):
        raise TypeError(f"backend: expected a backend object such as backends.get_backend({backend!r}), "
                        f"got the string {backend!r}")
    missing = [method for method in BACKEND_METHODS if not callable(getattr(backend, method, None))]
    if missing:
        raise TypeError(f"backend: expected a backend object such as backends.get_backend('numpy'), got "
                        f"{type(backend).__name__} (it has no {', '.join(missing)})")
    return backend


def storage_dtype(dtype) -> np.dtype:
    """float32, float16 or float64, given as a numpy dtype or its name."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(FLOAT_DTYPES)}, got {dtype!r}")
    return np.dtype(FLOAT_DTYPES[name])


def random_parameters(shapes: dict, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random weights of the given shapes, deterministic per (seed, tensor name):

    - conv / linear weights and their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default);
    - embeddings (``*embedding*``): N(0, 0.02^2) (CLIP's initialization);
    - norm weights 1 + N(0, 0.1^2), norm biases N(0, 0.1^2): not exactly 1 and 0, so that a test
      notices a norm that ignores its affine parameters.
    """
    dtype = np.dtype(dtype)
    params = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        owner, _, leaf = name.rpartition(".")
        weight_shape = shapes.get(f"{owner}.weight", shape)
        if "embedding" in owner:
            x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        elif len(weight_shape) == 1:  # a norm's weight or bias
            x = 0.1 * rng.standard_normal(shape, dtype=np.float32) + (1.0 if leaf == "weight" else 0.0)
        else:
            bound = 1.0 / np.sqrt(np.prod(weight_shape[1:]))
            x = (2.0 * rng.random(shape, dtype=np.float32) - 1.0) * np.float32(bound)
        params[name] = x.astype(dtype, copy=False)
    return params


class Model(ABC):
    """A network: a config, a ``Module`` tree built from it, parameters on a backend object.

    Subclasses set ``WEIGHTS_NAME``, ``IGNORED_PREFIXES``, and implement the classmethod
    ``build(config)`` (the module tree, with the config's values checked) and ``forward(run, *inputs)``.
    """

    WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
    #: tensors of a checkpoint file this model does not use (e.g. the VAE's encoder)
    IGNORED_PREFIXES: tuple[str, ...] = ()
    #: default config values (diffusers' defaults for the keys we read)
    DEFAULTS: dict = {}
    #: parameters the forward pass reads on the host (kept as numpy arrays in ``host_params``)
    HOST_PARAMETERS: tuple[str, ...] = ()

    def __init__(self, config: dict, params: dict, *, backend, dtype=np.float32, source: str = "parameters"):
        self.backend = require_backend(backend)
        self.config = {**self.DEFAULTS, **config}
        self.module: Module = self.build(self.config)
        self.dtype = storage_dtype(dtype)
        params = {name: np.asarray(p).astype(self.dtype, copy=False)
                  for name, p in self.check_parameters(params, source).items()}
        self.host_params = {name: params.pop(name) for name in self.HOST_PARAMETERS}
        self.params = {name: self.backend.asarray(p) for name, p in params.items()}
        self._forward = self._compile()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def build(cls, config: dict) -> Module:
        """The module tree of a config."""

    @abstractmethod
    def forward(self, run: Run, *inputs):
        """The forward pass on ``run.backend`` with ``run.params``."""

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.module.parameter_shapes()

    def check_parameters(self, params: dict, source: str) -> dict:
        """The parameters the module tree needs, checked by name and shape; ``source`` names the
        file in error messages."""
        shapes = self.parameter_shapes()
        missing = [name for name in shapes if name not in params]
        if missing:
            raise CheckpointError(f"{source}: missing tensor {missing[0]!r} (expected shape {shapes[missing[0]]})"
                                  + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        for name, shape in shapes.items():
            if tuple(params[name].shape) != shape:
                raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(params[name].shape)}, "
                                      f"the config expects {shape}")
        unexpected = [n for n in params if n not in shapes and not n.startswith(self.IGNORED_PREFIXES)]
        if unexpected:
            raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]!r}"
                                  + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
                                  + f"; does config.json match the weights of {type(self).__name__}?")
        return {name: params[name] for name in shapes}

    def _compile(self):
        """The forward pass as a function of (params, *inputs), prepared by ``backend.compile``:
        one ``jax.jit`` on JAX (parameters are an argument, not constants), op by op elsewhere."""
        def forward(params, *inputs):
            return self.forward(Run(self.backend, params), *inputs)

        return self.backend.compile(forward)

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def random(cls, config: dict, seed: int = 0, *, backend, dtype=np.float32):
        """The model with random weights of the checkpoint's shapes (latency work without a download)."""
        require_backend(backend)
        shapes = cls.build({**cls.DEFAULTS, **config}).parameter_shapes()
        return cls(config, random_parameters(shapes, seed, np.float32), backend=backend, dtype=dtype,
                   source="random parameters")

    @classmethod
    def from_pretrained(cls, folder, *, backend, dtype=np.float32, variant: str | None = None):
        """Load ``config.json`` and the safetensors weights of a diffusers component folder.
        ``variant="fp16"`` reads ``*.fp16.safetensors`` as diffusers does."""
        require_backend(backend)
        from safetensors.numpy import load_file

        folder = Path(folder)
        config = read_json(folder / "config.json")
        name = cls.WEIGHTS_NAME if variant is None else cls.WEIGHTS_NAME.replace(".safetensors", f".{variant}.safetensors")
        path = folder / name
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
            hint = f"; the folder has {', '.join(present)} (choose it with variant=)" if present else \
                "; convert .bin weights to safetensors first" if list(folder.glob("*.bin")) else ""
            raise FileNotFoundError(f"{path}: no such weights file{hint}")
        params = cls.rename_legacy(load_file(str(path)))
        return cls(config, params, backend=backend, dtype=dtype, source=str(path))

    @classmethod
    def rename_legacy(cls, params: dict) -> dict:
        """Map older checkpoint names to the current ones (only the VAE has any)."""
        return params

    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` and the weights (float32 unless the model holds float16)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "config.json", "w") as f:
            json.dump(self.config, f, indent=2, sort_keys=True)
        out_dtype = np.float16 if self.dtype == np.float16 else np.float32
        tensors = {name: np.ascontiguousarray(self.backend.to_numpy(p).astype(out_dtype))
                   for name, p in self.params.items()}
        tensors.update({name: np.ascontiguousarray(p.astype(out_dtype)) for name, p in self.host_params.items()})
        save_file(tensors, str(folder / self.WEIGHTS_NAME))
        return folder

    # -- calling -------------------------------------------------------------------------------

    def to_backend(self, inputs):
        return [x if x is None or not isinstance(x, np.ndarray) else self.backend.asarray(x.astype(self.dtype, copy=False))
                for x in inputs]

    def __repr__(self):
        n = sum(int(np.prod(s)) for s in self.parameter_shapes().values())
        return f"{type(self).__name__}({n / 1e6:.1f}M parameters, {self.dtype}, {self.backend!r})"


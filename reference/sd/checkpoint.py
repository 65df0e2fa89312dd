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
listed per model in ``IGNORED_PREFIXES`` and skipped, any other unexpected tensor is an error. So
is a file that is truncated or not safetensors, and a tensor that is not floating point, holds
NaN or Inf, or overflows the storage dtype it is loaded into (``read_safetensors``). The config
is checked too (``Model.check_config``): every key we read by type, keys of other architectures
only at the value that means SD 1.x, unknown keys refused by name.

Host memory while loading: ``read_safetensors`` reads one tensor at a time straight into its
array (``numpy.fromfile``; safetensors' own numpy reader maps the whole file, whose pages then
count as resident next to the arrays), converting it to the storage dtype at once, so the peak
is about the parameters' size in that dtype plus one tensor.
"""

from __future__ import annotations

import difflib
import json
import math
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, NamedTuple

import ml_dtypes
import numpy as np

from .layers import Module, Run

FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float64": np.float64}


class CheckpointError(ValueError):
    """A checkpoint folder that does not match the model (missing file, tensor or shape)."""


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a diffusers-style config)")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


#: safetensors dtype names -> numpy dtypes (the floating ones a checkpoint may hold)
SAFETENSORS_FLOATS = {"F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
                      "BF16": np.dtype(ml_dtypes.bfloat16)}
#: the largest header a safetensors file may declare (the format's own limit)
SAFETENSORS_MAX_HEADER = 100_000_000


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(tensor name -> {"dtype", "shape", "data_offsets"}, offset of the data) of a safetensors
    file: 8 bytes of little-endian header size, then the JSON header, then the raw data. A file
    that does not parse so raises CheckpointError naming it."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors file ({size} bytes, shorter than the 8-byte header size)")
        header_size = int.from_bytes(prefix, "little")
        if not 0 < header_size <= min(SAFETENSORS_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (its first 8 bytes declare a header of "
                                  f"{header_size} bytes in a file of {size})")
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not a safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    data_start = 8 + header_size
    for name, entry in header.items():
        begin, end = entry.get("data_offsets", (-1, -1)) if isinstance(entry, dict) else (-1, -1)
        if not 0 <= begin <= end or data_start + end > size:
            raise CheckpointError(f"{path}: tensor {name!r} lies past the end of the file ({size} bytes): "
                                  "the file is truncated or damaged")
    return header, data_start


def read_safetensors(path, dtype) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, converted to the storage ``dtype``, one tensor at a time
    (see the module docstring on memory). A tensor that is not floating point, is not finite, or
    overflows ``dtype`` (finite in the file, infinite after the conversion) raises CheckpointError
    naming the file and the tensor."""
    path, dtype = Path(path), np.dtype(dtype)
    header, data_start = read_safetensors_header(path)
    tensors = {}
    with open(path, "rb") as f:
        for name, entry in header.items():
            stored = SAFETENSORS_FLOATS.get(entry["dtype"])
            if stored is None:
                raise CheckpointError(f"{path}: tensor {name!r} is {entry['dtype']}, expected a floating-point tensor "
                                      f"({', '.join(SAFETENSORS_FLOATS)})")
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = entry["data_offsets"]
            if end - begin != math.prod(shape) * stored.itemsize:
                raise CheckpointError(f"{path}: tensor {name!r} declares shape {shape} of {entry['dtype']} but "
                                      f"holds {end - begin} bytes")
            f.seek(data_start + begin)
            value = np.fromfile(f, dtype=stored.newbyteorder("<"), count=math.prod(shape)).reshape(shape)
            if not np.all(np.isfinite(value)):
                bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
                raise CheckpointError(f"{path}: tensor {name!r} holds {bad} NaN or infinite values")
            with np.errstate(over="ignore"):  # an overflow is reported below, by name
                converted = value.astype(dtype, copy=False)
            if not np.all(np.isfinite(converted)):
                raise CheckpointError(f"{path}: tensor {name!r} overflows {dtype} (its largest magnitude is "
                                      f"{float(np.max(np.abs(value.astype(np.float64)))):.4g}); load it in float32")
            tensors[name] = converted
    return tensors


# -- config checks ----------------------------------------------------------------------------


class Kind(NamedTuple):
    """What a config value must be: ``test(value)`` is True for the allowed values, ``expected``
    says it in words for the error message."""

    expected: str
    test: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT = Kind("a positive int", lambda v: _is_int(v) and v > 0)
NUMBER = Kind("a finite number", _is_number)
POSITIVE_NUMBER = Kind("a positive finite number", lambda v: _is_number(v) and v > 0)
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
STRING = Kind("a string", lambda v: isinstance(v, str))


def list_of(kind: Kind) -> Kind:
    return Kind(f"a non-empty list, each {kind.expected}",
                lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(kind.test(x) for x in v))


def one_or_list(kind: Kind) -> Kind:
    many = list_of(kind)
    return Kind(f"{kind.expected}, or a list of them", lambda v: kind.test(v) or many.test(v))


def optional(kind: Kind) -> Kind:
    return Kind(f"null or {kind.expected}", lambda v: v is None or kind.test(v))


def check_config(config: dict, keys: dict, fixed: dict, informational, source: str) -> None:
    """Refuse what this network would compute differently from the checkpoint's: a value of the
    wrong type or range for a key we read (``keys``: key -> Kind), another architecture's key at a
    value other than SD 1.x's (``fixed``: key -> the only accepted value), or a key nobody here
    knows (named, with the closest known key). ``informational`` keys change nothing in the
    network (names, versions, training-only settings) and are accepted as they are, like every
    key starting with "_"."""
    suggestions = sorted({*keys, *fixed})
    for key, value in config.items():
        if key in keys:
            if not keys[key].test(value):
                raise CheckpointError(f"{source}: {key}: expected {keys[key].expected}, got {value!r}")
        elif key in fixed:
            if value != fixed[key] or isinstance(value, bool) != isinstance(fixed[key], bool):
                raise CheckpointError(f"{source}: {key}: only {fixed[key]!r} (SD 1.x) is implemented, got {value!r}")
        elif key not in informational and not key.startswith("_"):
            close = difflib.get_close_matches(key, suggestions, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CheckpointError(f"{source}: {key}: unknown config key (it may change the network, and this "
                                  f"implementation does not read it){hint}")


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
    """float32, float16, bfloat16 (ml_dtypes') or float64, given as a numpy dtype or its name."""
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
    #: the config keys the network reads, with what each value must be (``check_config``)
    CONFIG_KEYS: dict = {}
    #: keys of other architectures, accepted only at the value that means this SD 1.x network
    FIXED_KEYS: dict = {}
    #: keys that change nothing in the network (names, versions, training-only settings)
    INFORMATIONAL_KEYS: frozenset = frozenset()

    def __init__(self, config: dict, params: dict, *, backend, dtype=np.float32, source: str = "parameters",
                 config_source: str = "config"):
        self.backend = require_backend(backend)
        self.config = self.checked_config(config, config_source)
        self.module: Module = self.build(self.config)
        self.requested_dtype = storage_dtype(dtype)
        self.dtype = self.compute_dtype(self.config, self.requested_dtype)
        params = {name: np.asarray(p).astype(self.dtype, copy=False)
                  for name, p in self.check_parameters(params, source).items()}
        self.host_params = {name: params.pop(name) for name in self.HOST_PARAMETERS}
        self.params = {name: self.backend.asarray(p) for name, p in params.items()}
        self._forward = self._compile()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def checked_config(cls, config: dict, source: str = "config") -> dict:
        """The config with the defaults filled in, after ``check_config`` (``source`` names the
        file in error messages)."""
        if not isinstance(config, dict):
            raise CheckpointError(f"{source}: expected a JSON object of config keys, got {type(config).__name__}")
        check_config(config, cls.CONFIG_KEYS, cls.FIXED_KEYS, cls.INFORMATIONAL_KEYS, source)
        return {**cls.DEFAULTS, **config}

    @classmethod
    def compute_dtype(cls, config: dict, dtype: np.dtype) -> np.dtype:
        """The storage dtype the model runs in when ``dtype`` is asked for (the VAE's
        ``force_upcast`` turns float16 into float32)."""
        return dtype

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
        """The forward pass as a function of (params, *inputs), prepared by
        ``backend.compile_network``: one ``jax.jit`` on JAX (parameters are an argument, not
        constants), op by op elsewhere."""
        def forward(params, *inputs):
            return self.forward(Run(self.backend, params), *inputs)

        return self.backend.compile_network(forward)

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def random(cls, config: dict, seed: int = 0, *, backend, dtype=np.float32):
        """The model with random weights of the checkpoint's shapes (latency work without a download)."""
        require_backend(backend)
        shapes = cls.build(cls.checked_config(config)).parameter_shapes()
        return cls(config, random_parameters(shapes, seed, np.float32), backend=backend, dtype=dtype,
                   source="random parameters")

    @classmethod
    def from_pretrained(cls, folder, *, backend, dtype=np.float32, variant: str | None = None):
        """Load ``config.json`` and the safetensors weights of a diffusers component folder.
        ``variant="fp16"`` reads ``*.fp16.safetensors`` as diffusers does."""
        require_backend(backend)
        folder = Path(folder)
        config_path = folder / "config.json"
        config = read_json(config_path)
        checked = cls.checked_config(config, str(config_path))  # before the weights are read
        name = cls.WEIGHTS_NAME if variant is None else cls.WEIGHTS_NAME.replace(".safetensors", f".{variant}.safetensors")
        path = folder / name
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
            hint = f"; the folder has {', '.join(present)} (choose it with variant=)" if present else \
                "; convert .bin weights to safetensors first" if list(folder.glob("*.bin")) else ""
            raise FileNotFoundError(f"{path}: no such weights file{hint}")
        read_dtype = cls.compute_dtype(checked, storage_dtype(dtype))
        try:
            params = cls.canonical_names(read_safetensors(path, read_dtype))
        except CheckpointError as error:
            if str(path) in str(error):
                raise
            raise CheckpointError(f"{path}: {error}") from None
        return cls(config, params, backend=backend, dtype=dtype, source=str(path), config_source=str(config_path))

    @classmethod
    def canonical_names(cls, params: dict) -> dict:
        """Map the tensor names of the other layouts users have (older diffusers, newer
        transformers) to this model's names."""
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


"""OpenCL runtime: device choice, NVIDIA ICD registration, program cache, launches and counters.

Everything a kernel wrapper needs goes through one ``Runtime`` per device:

    rt = Runtime.for_device(None)               # PYOPENCL_CTX, else the first GPU, else the first device
    k = rt.kernel("group_norm.cl", "group_norm_fused", np.float32)      # built once, cached
    y = rt.empty(x.shape, x.dtype)              # an op's output (NaN-filled when poison=True)
    t = rt.temp((n, 2), np.float32)             # an intermediate buffer: counted in temp bytes
    rt.launch(k, global_size, local_size, x, y, np.int32(n), ...)     # counted as one launch

``rt.measure()`` counts the launches, kernel names and temporary bytes of the calls made inside
it: that is how the tests check the paper's fusion claims. It also keeps each launch's
profiling event, so ``Counters.device_seconds()`` is the device time of what ran inside (the
benchmark's timer).

Device memory: the runtime counts the bytes of the live device buffers it allocated
(``empty``, ``temp``, ``cache``, ``to_device``, ``dummy``) in ``in_use_bytes``, and their
maximum since ``reset_peak_memory()`` in ``peak_bytes``. A buffer counts from its allocation
until the last array on it is garbage-collected: pyopencl's ``Buffer`` takes no weak
references, so each array gets a weak reference whose callback releases it, and a buffer keeps a
count of its live arrays; a ``view`` (a reshape without a copy) joins its buffer's count, so it neither counts
twice nor lets the bytes go while it lives. Buffers made elsewhere (``cla.empty`` directly) are
not counted.

Storage dtypes: float32, and float16 as *storage* (``vload_half``/``vstore_half``) with float32
arithmetic; NVIDIA's OpenCL has no cl_khr_fp16. Every .cl file is compiled with the header
``common.h`` in front, which defines ``storage_t``, ``LOAD(p, i)`` and ``STORE(p, i, v)`` for the
chosen storage, and ``NVIDIA_PTX`` (1 on NVIDIA's platform, whose compiler takes inline PTX:
the device-scope fence of group_norm.cl). No fast-math flags: fp32 results must match the
reference's tolerances.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import math
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KERNEL_DIR = Path(__file__).parent / "kernels"
STORAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
NVIDIA_OPENCL_LIBS = (
    "/usr/local/nvidia/lib64/libnvidia-opencl.so.1",
    "/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1",
    "/usr/lib64/libnvidia-opencl.so.1",
)


class OpenCLUnavailable(RuntimeError):
    """No OpenCL platform or device could be found."""


class KernelBuildError(RuntimeError):
    """A .cl file failed to compile; the message carries the compiler's build log."""


def register_nvidia_icd() -> str | None:
    """Make NVIDIA's OpenCL driver visible where the library exists but no ICD file names it.

    The ICD loader finds drivers through ``*.icd`` files in /etc/OpenCL/vendors, or in the folder
    that ``OCL_ICD_VENDORS`` names. Some containers ship ``libnvidia-opencl.so.1`` without the
    file; then we write a folder holding ``nvidia.icd`` (and ``pocl.icd`` for the PoCL bundled with
    pyopencl, so the CPU stays available) and point ``OCL_ICD_VENDORS`` at it. Must run before
    the first platform query. Returns the folder, or None when nothing needed doing.
    """
    if os.environ.get("OCL_ICD_VENDORS"):
        return None
    lib = next((p for p in NVIDIA_OPENCL_LIBS if os.path.exists(p)), None)
    if lib is None:
        return None
    registered = glob.glob("/etc/OpenCL/vendors/*.icd")
    if any("nvidia" in Path(f).read_text(errors="ignore").lower() for f in registered):
        return None
    folder = Path(tempfile.mkdtemp(prefix="ocl-vendors-"))
    (folder / "nvidia.icd").write_text(lib + "\n")
    for f in registered:
        (folder / Path(f).name).write_text(Path(f).read_text())
    import pyopencl

    for pocl in glob.glob(str(Path(pyopencl.__file__).parent / ".libs" / "libpocl*.so*")):
        (folder / "pocl.icd").write_text(pocl + "\n")
    os.environ["OCL_ICD_VENDORS"] = str(folder)
    return str(folder)


register_nvidia_icd()

import pyopencl as cl  # noqa: E402  (after the ICD registration above)
import pyopencl.array as cla  # noqa: E402
import pyopencl.tools as cl_tools  # noqa: E402


def _all_devices():
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        platforms, err = [], exc
    else:
        err = None
    devices = [(p, d) for p in platforms for d in p.get_devices()]
    if not devices:
        raise OpenCLUnavailable(
            "No OpenCL platform/device found"
            + (f" ({err})" if err else "")
            + ". For the CPU, install PoCL: `pip install pocl-binary-distribution` (the project's "
            "`make test` does this); for a GPU, install its driver's OpenCL ICD."
        )
    return devices


def select_device(device=None) -> "cl.Device":
    """The device to use.

    ``device``: a ``pyopencl.Device``; a string "P:D" (platform and device index, as in
    PYOPENCL_CTX); any other string matches a substring of "platform name / device name"
    (case-insensitive, e.g. "nvidia" or "pthread"); or None: ``PYOPENCL_CTX`` if set, else the
    first GPU, else the first device.
    """
    if isinstance(device, cl.Device):
        return device
    devices = _all_devices()
    if device is None:
        env = os.environ.get("PYOPENCL_CTX")
        if env:
            return select_device(env)
        gpus = [d for _, d in devices if d.type & cl.device_type.GPU]
        return gpus[0] if gpus else devices[0][1]
    if not isinstance(device, str):
        raise TypeError(f"device: expected None, a pyopencl.Device or a string, got {type(device).__name__}")
    listing = "; ".join(f"{i}:{j} {p.name} / {d.name}" for i, p in enumerate(cl.get_platforms())
                        for j, d in enumerate(p.get_devices()))
    if ":" in device and all(part.isdigit() for part in device.split(":", 1)) or device.isdigit():
        pi, _, di = device.partition(":")
        try:
            return cl.get_platforms()[int(pi)].get_devices()[int(di or 0)]
        except IndexError:
            raise ValueError(f"device: no OpenCL device {device!r}; available: {listing}") from None
    matches = [d for p, d in devices if device.lower() in f"{p.name} / {d.name}".lower()]
    if not matches:
        raise ValueError(f"device: no OpenCL device matches {device!r}; available: {listing}")
    return matches[0]


@dataclass
class Counters:
    """What the calls inside ``Runtime.measure()`` did on the device."""

    launches: int = 0
    kernels: list = field(default_factory=list)  # kernel names in launch order
    temp_bytes: int = 0  # bytes of temporary buffers allocated (not outputs, not cached weights)
    temp_buffers: list = field(default_factory=list)  # (shape, dtype) of each temporary
    cache_bytes: int = 0  # bytes of persistent caches created (e.g. Winograd-transformed weights)
    events: list = field(default_factory=list)  # the profiling event of each launch
    profiled: bool = True  # whether the events carry device times (a profiling queue)

    def device_seconds(self) -> float:
        """Sum over the launches of (end - start) from their profiling events: the time the
        device spent in the kernels, without the host's launch overhead and the gaps between
        kernels. Waits for the launches to complete."""
        if not self.profiled:
            raise RuntimeError("device_seconds: the launches ran on a queue without profiling "
                               "(profiling=False); use a backend with profiling=True for device times")
        if self.events:
            cl.wait_for_events(self.events)
        return sum(e.profile.end - e.profile.start for e in self.events) * 1e-9


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def power_of_two_at_most(wanted: int, limit: int) -> int:
    """``wanted`` (a power of two) lowered to the largest power of two <= ``limit`` if needed
    (a device's maximum work-group size)."""
    return min(wanted, 1 << (int(limit).bit_length() - 1))


def row_work_group(rt: "Runtime", cols: int) -> int:
    """Work-group size of the one-work-group-per-row kernels (LayerNorm, softmax): 64 items for
    short rows (SD's LayerNorm widths 320..1280 and 77-token softmax rows), 256 for long rows."""
    return power_of_two_at_most(256 if cols > 2048 else 64, rt.max_work_group_size)


#: The most elements one tensor may have: the kernels index with 32-bit ``int``. Every op checks
#: each tensor it reads, writes or allocates (inputs, output, temporaries such as the Winograd
#: transforms) with ``check_int32_indexing`` before it allocates or launches anything.
INT32_LIMIT = 2**31 - 1


def check_int32_indexing(name: str, size, what: str | None = None) -> int:
    """``size`` (an element count, or a shape) as an int if the kernels' 32-bit int indexing can
    address it (at most ``INT32_LIMIT`` elements), else a ValueError naming the argument ``name``
    (and ``what`` tensor derived from it, e.g. "its Winograd transform V (36, C, T)")."""
    size = int(size) if isinstance(size, (int, np.integer)) else int(math.prod(size))
    if size > INT32_LIMIT:
        of = f" ({what})" if what else ""
        raise ValueError(f"{name}{of}: {size} elements exceed the int32 indexing of the OpenCL kernels "
                         f"(at most {INT32_LIMIT}); split the tensor")
    return size


def check_int32_tensors(*tensors) -> None:
    """``check_int32_indexing`` for each (name, size or shape[, what]) of ``tensors``."""
    for entry in tensors:
        check_int32_indexing(*entry)


@functools.lru_cache(maxsize=4096)
def c_strides(shape: tuple, itemsize: int) -> tuple:
    """The byte strides of a C-contiguous array of ``shape`` (as pyopencl computes them)."""
    strides, step = [], itemsize
    for s in reversed(shape):
        strides.append(step)
        step *= max(1, s)
    return tuple(reversed(strides))


def is_c_contiguous(x: "cla.Array") -> bool:
    """``x.flags.c_contiguous`` without pyopencl's per-call flag computation: C-contiguous strides
    (or no more than one element)."""
    return x.size <= 1 or tuple(x.strides) == c_strides(tuple(x.shape), x.dtype.itemsize)


def _scalar_dtype(value) -> np.dtype:
    """The OpenCL type of a scalar kernel argument: numpy int32, uint32, int64 and floats keep
    theirs; other integers (Python bools and ints, smaller numpy ints) are int32, Python floats
    float32."""
    if isinstance(value, (np.int32, np.uint32, np.int64, np.floating)):
        return value.dtype
    if isinstance(value, (bool, int, np.integer)):
        return np.dtype(np.int32)
    if isinstance(value, float):
        return np.dtype(np.float32)
    raise TypeError(f"launch: cannot pass a {type(value).__name__} to a kernel")


class Runtime:
    """One OpenCL context and in-order queue on one device, with a program cache."""

    _instances: dict = {}

    @classmethod
    def for_device(cls, device=None, poison: bool = False, profiling: bool = True) -> "Runtime":
        """The shared runtime of a device (so arrays and programs are shared between backends)
        with these settings."""
        dev = select_device(device)
        key = (dev.int_ptr, poison, profiling)
        if key not in cls._instances:
            cls._instances[key] = cls(dev, poison, profiling)
        return cls._instances[key]

    def __init__(self, device: "cl.Device", poison: bool = False, profiling: bool = True):
        self.device = device
        self.poison = poison
        self.context = cl.Context([device])
        #: whether the queue records each launch's device time (``Counters.device_seconds``). It
        #: costs the host time per launch (5.5-6 us of 12-15 on the H200, ``probes/launch_cost.py``),
        #: so a run that only needs the wall time turns it off.
        self.profiling = bool(profiling)
        self.queue = cl.CommandQueue(
            self.context, properties=cl.command_queue_properties.PROFILING_ENABLE if self.profiling else 0)
        self.vendor = f"{device.platform.name} {device.vendor}"
        # (each read of a device property is a query of the driver: these are read per call)
        self.device_name = device.name
        self.compute_units = device.max_compute_units
        #: NVIDIA's OpenCL compiles to PTX and takes inline PTX (``NVIDIA_PTX`` in the kernels)
        self.nvidia_ptx = "NVIDIA" in device.platform.name
        self.max_work_group_size = device.max_work_group_size
        self.local_mem_size = device.local_mem_size
        #: Every array the runtime makes comes from this pool (pyopencl's MemoryPool): a buffer whose
        #: last array dies goes back to the pool, and the next request of its size class reuses
        #: it, so a network's forward pass does not call clCreateBuffer per op. ``in_use_bytes``
        #: counts the live arrays' buffers; the pool may hold more (``pool.held_blocks``), which
        #: ``free_pool`` returns to OpenCL.
        self.pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(self.queue))
        self._programs: dict = {}
        self._kernels: dict = {}
        self._stack: list[Counters] = []
        self._dummy = {}
        self._counters: dict = {}
        # id(kernel) -> (kernel, its name, its buffer positions), once its scalar types are set
        self._launch_info: dict = {}
        #: live buffers this runtime allocated: id(buffer) -> [buffer, bytes, live arrays on it]
        self._live: dict = {}
        #: id(weak reference) -> (the reference, its buffer's key in ``_live``), one per tracked array
        self._refs: dict = {}
        self.in_use_bytes = 0
        self.peak_bytes = 0

    def __repr__(self):
        return f"Runtime({self.device.platform.name} / {self.device.name})"

    # -- programs ----------------------------------------------------------------------------

    def program(self, filename: str, dtype, defines: dict | None = None) -> "cl.Program":
        """Build ``kernels/<filename>`` (with common.h in front) for a storage dtype, once."""
        dtype = self.check_storage_dtype("dtype", dtype)
        defines = dict(defines or {})
        key = (filename, dtype.str, tuple(sorted(defines.items())))
        if key not in self._programs:
            path = KERNEL_DIR / filename
            if not path.exists():
                raise FileNotFoundError(f"filename: no kernel source {path}")
            source = (KERNEL_DIR / "common.h").read_text() + f'\n#line 1 "{filename}"\n' + path.read_text()
            options = [f"-DSTORAGE_HALF={int(dtype == np.float16)}", f"-DNVIDIA_PTX={int(self.nvidia_ptx)}"]
            options += [f"-D{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(defines.items())]
            program = cl.Program(self.context, source)
            try:
                program.build(options=options)
            except cl.Error as exc:
                try:
                    log = program.get_build_info(self.device, cl.program_build_info.LOG)
                except cl.Error:
                    log = str(exc)
                raise KernelBuildError(
                    f"building {filename} with {' '.join(options)} for {self.device.name} failed:\n{log}"
                ) from None
            self._programs[key] = program
        return self._programs[key]

    def kernel(self, filename: str, name: str, dtype, defines: dict | None = None) -> "cl.Kernel":
        """A kernel object, retrieved once per (file, name, dtype, defines) and reused. The lookup
        is keyed first by the arguments as given (one dict lookup on the hot path), then by their
        canonical form (storage dtype, sorted defines) on a miss."""
        fast_key = (filename, name, dtype, tuple(defines.items()) if defines else ())
        kernel = self._kernels.get(fast_key)
        if kernel is None:
            key = (filename, name, np.dtype(dtype).str, tuple(sorted((defines or {}).items())))
            if key not in self._kernels:
                self._kernels[key] = cl.Kernel(self.program(filename, dtype, defines), name)
            kernel = self._kernels[fast_key] = self._kernels[key]
        return kernel

    # -- buffers -----------------------------------------------------------------------------

    @staticmethod
    def check_storage_dtype(name: str, dtype) -> np.dtype:
        if isinstance(dtype, np.dtype) and dtype in STORAGE_DTYPES:  # the hot path: no conversion
            return dtype
        dtype = np.dtype(dtype)
        if dtype not in STORAGE_DTYPES:
            raise TypeError(f"{name}: the opencl backend stores float32 or float16, got {dtype}")
        return dtype

    def _array(self, shape, dtype: np.dtype, data=None) -> "cla.Array":
        """A C-contiguous array on a pool buffer (or on ``data``) by pyopencl's fast constructor,
        which skips the shape and stride checks of ``cla.empty`` (tens of microseconds a call:
        most of an op's host time before this)."""
        shape = tuple(map(int, shape))
        return cla.Array(None, shape, dtype, allocator=self.pool, data=data, strides=c_strides(shape, dtype.itemsize),
                         _fast=True, _size=math.prod(shape), _context=self.context, _queue=self.queue)

    def empty(self, shape, dtype) -> "cla.Array":
        """An op's output array. With ``poison=True`` it is filled with NaN first, so a kernel
        that forgets to write an element is caught by the tests."""
        out = self._track(self._array(shape, self.check_storage_dtype("dtype", dtype)))
        if self.poison and out.size:
            self._fill_nan(out)
        return out

    def to_device(self, x: np.ndarray) -> "cla.Array":
        """Upload a host array (a C-contiguous copy of it) to a new, counted device array."""
        x = np.asarray(x, order="C")  # (ascontiguousarray would turn a 0-d array into shape (1,))
        self.check_storage_dtype("x", x.dtype)
        return self._track(cla.to_device(self.queue, x, allocator=self.pool))

    def view(self, x: "cla.Array", shape) -> "cla.Array":
        """``x``'s data with another shape (same number of elements): no copy, no launch. ``x`` must
        be C-contiguous with no offset; the view is too. It shares ``x``'s memory count."""
        shape = tuple(int(s) for s in shape)
        if not is_c_contiguous(x) or x.offset:
            raise ValueError("x: a view needs a contiguous array with no offset; pass a copy")
        if math.prod(shape) != x.size:
            raise ValueError(f"shape: {shape} holds {math.prod(shape)} elements, x {tuple(x.shape)} holds {x.size}")
        out = self._array(shape, x.dtype, data=x.base_data if x.size else None)
        if x.size and id(x.base_data) in self._live:
            self._track(out)
        return out

    def _fill_nan(self, a: "cla.Array") -> None:
        # enqueue_fill_buffer, not Array.fill: pyopencl's fill kernel needs cl_khr_fp16 for half
        pattern = np.array([np.nan], dtype=a.dtype)
        cl.enqueue_fill_buffer(self.queue, a.data, pattern, 0, a.nbytes)

    def temp(self, shape, dtype) -> "cla.Array":
        """An intermediate device buffer; its bytes are counted in ``Counters.temp_bytes``."""
        buf = self._track(self._array(shape, np.dtype(dtype)))
        for c in self._stack:
            c.temp_bytes += buf.nbytes
            c.temp_buffers.append((buf.shape, buf.dtype))
        if self.poison and buf.size and buf.dtype.kind == "f":
            self._fill_nan(buf)
        return buf

    def count_cache(self, nbytes: int) -> None:
        for c in self._stack:
            c.cache_bytes += int(nbytes)

    def cache(self, shape, dtype) -> "cla.Array":
        """A persistent device array (e.g. Winograd-transformed weights): counted in device memory
        while it lives, and its bytes in ``Counters.cache_bytes``."""
        out = self._track(self._array(shape, self.check_storage_dtype("dtype", dtype)))
        self.count_cache(out.nbytes)
        return out

    def counters(self, key: str, size: int) -> "cla.Array":
        """A persistent int32 buffer of at least ``size`` zeros for kernels that count with
        atomics and leave it zero when they end (the one-launch GroupNorm). One per ``key``,
        zeroed when made, replaced by a larger one when a call needs more; counted as a cache."""
        buf = self._counters.get(key)
        if buf is None or buf.size < size:
            buf = self._track(self._array((max(int(size), 1024),), np.dtype(np.int32)))
            cl.enqueue_fill_buffer(self.queue, buf.data, np.zeros(1, np.int32), 0, buf.nbytes)
            self.count_cache(buf.nbytes)
            self._counters[key] = buf
        return buf

    def dummy(self, dtype) -> "cla.Array":
        """A one-element buffer to pass where an optional argument (e.g. a bias) is absent."""
        dummy = self._dummy.get(dtype)  # keyed by the dtype as given, and by its np.dtype
        if dummy is None:
            canonical = np.dtype(dtype)
            dummy = self._dummy.get(canonical)
            if dummy is None:
                dummy = self._track(cla.zeros(self.queue, (1,), canonical))
            self._dummy[dtype] = self._dummy[canonical] = dummy
        return dummy

    # -- device memory -----------------------------------------------------------------------

    def _track(self, a: "cla.Array") -> "cla.Array":
        """Count ``a``'s buffer (once per buffer) until the last tracked array on it is collected:
        a weak reference to ``a`` whose callback releases it (a ``weakref.ref`` with a callback
        costs a fraction of a ``weakref.finalize``: this runs for every array an op makes)."""
        buf = a.base_data
        if buf is None:  # an empty array owns no buffer
            return a
        key = id(buf)  # unique while the entry holds the buffer
        entry = self._live.get(key)
        if entry is None:
            entry = self._live[key] = [buf, int(a.nbytes), 0]  # the bytes asked for (the pool rounds up)
            self.in_use_bytes += entry[1]
            if self.in_use_bytes > self.peak_bytes:
                self.peak_bytes = self.in_use_bytes
        entry[2] += 1
        ref = weakref.ref(a, self._collected)
        self._refs[id(ref)] = (ref, key)  # the reference must live for its callback to run
        return a

    def _collected(self, ref) -> None:
        self._release(self._refs.pop(id(ref))[1])

    def _release(self, key) -> None:
        entry = self._live[key]
        entry[2] -= 1
        if entry[2] == 0:
            del self._live[key]  # drops the last reference to the buffer: OpenCL may free it
            self.in_use_bytes -= entry[1]

    def free_pool(self) -> None:
        """Return the pool's unused buffers to OpenCL."""
        self.pool.free_held()

    def reset_peak_memory(self) -> None:
        """Start a new peak window: ``peak_bytes`` = the bytes in use now."""
        self.peak_bytes = self.in_use_bytes

    # -- launches ----------------------------------------------------------------------------

    def launch(self, kernel: "cl.Kernel", global_size, local_size, *args) -> "cl.Event":
        """Enqueue ``kernel``; arrays are passed as their buffers, Python ints as int32 and Python
        floats as float32. ``global_size`` is rounded up to a multiple of ``local_size``.

        A kernel's first launch fixes its scalar argument types (``set_scalar_arg_dtypes``) and
        which positions hold arrays: a kernel's argument kinds never change, so later launches
        only swap the arrays for their buffers and let pyopencl's generated setter pack the
        scalars, without converting each argument in Python."""
        known = self._launch_info.get(id(kernel))
        if known is None:
            known = self._launch_info[id(kernel)] = self._first_launch(kernel, args)
        args = list(args)
        for i in known[2]:
            a = args[i]
            if isinstance(a, cla.Array):
                if a.offset:
                    raise ValueError("launch: arrays with a non-zero offset are not supported; pass a copy")
                args[i] = a.base_data
        kernel.set_args(*args)
        if local_size is not None:
            global_size = tuple([round_up(g, l) for g, l in zip(global_size, local_size)])
            local_size = tuple(local_size)
        else:
            global_size = tuple(global_size)
        event = cl.enqueue_nd_range_kernel(self.queue, kernel, global_size, local_size)
        for c in self._stack:
            c.launches += 1
            c.kernels.append(known[1])
            c.events.append(event)
        return event

    @staticmethod
    def _first_launch(kernel: "cl.Kernel", args) -> tuple:
        """(the kernel, held so that its id stays its own; its name; the positions of its buffer
        arguments), after fixing its scalar argument types from this launch's arguments."""
        buffers = tuple(i for i, a in enumerate(args) if isinstance(a, (cla.Array, cl.MemoryObjectHolder)))
        kernel.set_scalar_arg_dtypes([None if i in buffers else _scalar_dtype(a) for i, a in enumerate(args)])
        return kernel, kernel.function_name, buffers

    @contextlib.contextmanager
    def measure(self):
        """Count launches, kernel names and temporary bytes of everything run inside."""
        counters = Counters(profiled=self.profiling)
        self._stack.append(counters)
        try:
            yield counters
        finally:
            self._stack.remove(counters)

    def finish(self) -> None:
        """Wait until every command enqueued so far has completed."""
        self.queue.finish()

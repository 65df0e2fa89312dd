"""Where a network's weights live in memory: XLA's choice, placed once; and what a kernel derives
from a weight alone, computed once with them.

A network's forward pass is ``jax.jit`` of fn(params, *inputs): the weights are arguments (not
constants, so compiling does not embed a gigabyte of them), and an argument's layout is
row-major unless the program says otherwise. Where a kernel reads another layout, XLA inserts
the layout change inside the program, so it runs on every call. The H100 profile of the SD 1.4
UNet (experiments/results/issue13_h100_2026-12-07, call 5) has 53 of them: every convolution
filter goes OIHW -> OHWI for cuDNN's NHWC kernels, 1.08 GB read and written per call, 1.26 ms.

``NetworkProgram`` compiles fn with the weights' layouts left to XLA (``Layout.AUTO``: JAX's
"device-local layouts"), so the program reads each weight in the layout its kernels want, and
moves the weights into those layouts once (``jax.device_put`` to the program's input formats),
replacing the arrays of the caller's dict in place, so no second copy stays alive. The inputs
keep their default layouts. On a CPU XLA picks row-major for every weight: the placing is a
no-op there, which is what the CPU tests can check. On the H100 (same results folder, call 9,
fp16) the UNet's transposes fall from 1.26 to 0.04 ms of kernels per call, and its iteration from
12.9 to 12.1 ms with flash (17.9 -> 17.5 ms with no switch); JaxBackend's default since then.

Derived weights. Some kernels read a function of a weight, not the weight: Winograd's transformed
filters U = G g G^T (winograd.py; 4x the weight's size at F(4, 3)) and the upsamplers' phase
kernels (upsample_conv.py). Inside a jitted program such a function runs on every call, since the
weights are traced arguments. Engines compute it once when they load the weights (the paper's
"transformed-weight memory"; the OpenCL backend caches U per weight tensor), and so does a
NetworkProgram: an op asks for ``derived_weight(w, kind, fn)``; where w is one of the program's
weights, the value becomes an input of the program, computed by one jitted program of all the
derivations when the weights are placed and laid out as XLA chooses, like the weights. Finding
out which derivations a network asks for takes a trace of fn; a network that asks for some is
traced a second time with them as inputs, and only that trace is lowered and compiled
(``NetworkProgram.program``). Elsewhere (an op called
alone, ``jax.jit``, a value computed from a weight) ``derived_weight`` computes fn(w) in the call.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import jax
import numpy as np
from jax.experimental.layout import Format, Layout

#: JaxBackend's ``parameter_layouts``: row-major weights, or XLA's choice placed once
PARAMETER_LAYOUTS = ("default", "auto")

#: JaxBackend's ``derived_weights``: what kernels derive from a weight alone, computed "once" (with
#: the weights, by a NetworkProgram) or "per_call" (in every call of the program)
DERIVED_WEIGHTS = ("once", "per_call")


class _Trace:
    """A NetworkProgram's fn being traced: its weights' tracers by identity, the derived weights it
    takes as inputs (``derived``, by key), and those it asked for that it does not take (``asked``:
    key -> (weight name, fn))."""

    def __init__(self, params: dict, derived: dict):
        self.params = params  # holds the tracers, so that no other object takes their ids meanwhile
        self.names = {id(array): name for name, array in params.items()}
        self.derived = derived
        self.asked: dict = {}


_TRACES: list[_Trace] = []  # the NetworkProgram traces in progress, innermost last


def derived_weight(w, kind: str, fn):
    """(fn(w), when): ``fn`` a function of the weight ``w`` alone, named by ``kind`` (with its
    arguments, e.g. "winograd filter transform m=4"). ``when`` is "once" where ``w`` is one of
    the weights of the NetworkProgram being traced: the value is then an input of that program,
    computed when its weights are placed; else "per_call": fn(w) computed here, in the call."""
    trace = _TRACES[-1] if _TRACES else None
    name = trace.names.get(id(w)) if trace is not None else None
    if name is None:
        return fn(w), "per_call"
    key = f"{name} -> {kind}"
    if key in trace.derived:
        return trace.derived[key], "once"
    trace.asked[key] = name, fn
    return fn(w), "once"  # this trace finds out what is asked; the program is traced again


class NetworkProgram:
    """fn(params, *inputs) compiled once per signature (the weights' and the inputs' shapes and
    dtypes) with the params' layouts chosen by XLA; ``params`` (a dict of arrays) is placed in
    those layouts on the first call with it and then passed as it is: a later call costs one
    lookup by the dict's identity and the inputs' signature, not a walk over the weights. The
    derived weights fn asks for (module docstring) are computed and placed at the same time.
    Replacing a weight in the dict afterwards needs a new NetworkProgram (the program would get
    the new array in the default layout, which JAX refuses, and its derived weights would be
    stale). ``choices``: the backend's counter of choices, which fn's ops add to while it is
    traced; it is restored after a second trace of fn, so that each op is counted once."""

    def __init__(self, fn, compiler_options: dict | None = None, choices: Counter | None = None):
        self._fn = fn
        self._compiler_options = compiler_options or None
        self._choices = choices
        # (weights' signature, inputs' signature) -> (compiled program, {derived key: (weight name, fn)})
        self._programs: dict = {}
        # (id of a params dict placed for it, inputs' signature) -> (that dict, its derived weights,
        # program): the dict is held so that its id cannot be reused by another dict while the entry lives
        self._ready: dict = {}
        # id of a params dict -> (that dict, {derived key: array}): shared by the dict's programs
        self._derived: dict = {}

    @staticmethod
    def inputs_signature(inputs) -> tuple:
        return tuple((type(x).__name__, np.shape(x), str(getattr(x, "dtype", ""))) for x in inputs)

    def _traced(self, asked: dict):
        """fn as a function of (params, derived, *inputs), to trace: ``derived`` the derived weights
        it takes as inputs; ``asked`` receives those its ops ask for beyond them."""

        def traced(params, derived, *inputs):
            trace = _Trace(params, derived)
            _TRACES.append(trace)
            try:
                return self._fn(params, *inputs)
            finally:
                _TRACES.pop()
                asked.update(trace.asked)

        return traced

    def trace(self, params: dict, derivations: dict, inputs):
        """fn traced (``jax.jit(...).trace``, to be lowered) with the weights and the derived weights
        of ``derivations`` as inputs in XLA's layouts, and the derivations it asked for beyond them."""
        asked: dict = {}
        jitted = jax.jit(self._traced(asked), in_shardings=(Format(Layout.AUTO),) * 2 + (None,) * len(inputs),
                         compiler_options=self._compiler_options)
        # the weights as shapes only: an array would pin its current layout
        shapes = {name: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding) for name, p in params.items()}
        derived = {key: jax.eval_shape(fn, shapes[name]) for key, (name, fn) in derivations.items()}
        return jitted.trace(shapes, derived, *inputs), asked

    @contextlib.contextmanager
    def _choices_kept(self):
        """The backend's choices as they were before the block: around a trace that repeats another."""
        counted = Counter(self._choices) if self._choices is not None else None
        try:
            yield
        finally:
            if counted is not None:
                self._choices.clear()
                self._choices.update(counted)

    def program(self, params: dict, *inputs):
        """The compiled program of this signature (lowered and compiled on first use) and the
        derivations it takes as inputs ({key: (weight name, fn)})."""
        weights = tuple((name, tuple(p.shape), str(p.dtype)) for name, p in params.items())
        key = weights, self.inputs_signature(inputs)
        if key not in self._programs:
            traced, derivations = self._trace_with_derived_weights(params, inputs)
            self._programs[key] = traced.lower().compile(), derivations
        return self._programs[key]

    def _trace_with_derived_weights(self, params: dict, inputs):
        """fn traced with the derived weights it asks for as inputs, and those derivations: a first
        trace finds them, a second takes them as inputs (its ops' choices are not counted again)."""
        traced, asked = self.trace(params, {}, inputs)
        if asked:
            with self._choices_kept():
                traced, _ = self.trace(params, asked, inputs)
        return traced, asked

    def jaxpr(self, params: dict, *inputs):
        """The closed jaxpr of this signature's program (to read what it computes; traced, not
        compiled, and not counted in ``choices``): its inputs are the weights, the derived weights
        and ``inputs``, flattened in that order (a dict's entries sorted by key)."""
        with self._choices_kept():
            traced, _ = self._trace_with_derived_weights(params, inputs)
        return traced.jaxpr

    def derive(self, params: dict, derivations: dict) -> dict:
        """{key: fn(params[name])} of ``derivations``, by one jitted program."""
        names = sorted({name for name, _ in derivations.values()})
        compute = jax.jit(lambda weights: {key: fn(weights[name]) for key, (name, fn) in derivations.items()},
                          compiler_options=self._compiler_options)
        return compute({name: params[name] for name in names})

    def forget_weights(self) -> None:
        """Drop the placed weights' dicts and the derived weights this program holds, so that
        their memory can go once the caller drops its dict; the compiled programs stay. A later
        call places and derives again."""
        self._ready.clear()
        self._derived.clear()

    def __call__(self, params: dict, *inputs):
        ready = (id(params), self.inputs_signature(inputs))
        entry = self._ready.get(ready)
        if entry is None:
            program, derivations = self.program(params, *inputs)
            _, held = self._derived.setdefault(id(params), (params, {}))
            missing = {key: d for key, d in derivations.items() if key not in held}
            if missing:
                held.update(self.derive(params, missing))
            derived = {key: held[key] for key in derivations}
            weight_formats, derived_formats = program.input_formats[0][:2]
            for arrays, formats in ((params, weight_formats), (derived, derived_formats)):
                for name, array in arrays.items():
                    if array.format != formats[name]:
                        arrays[name] = jax.device_put(array, formats[name])
            held.update(derived)
            entry = self._ready[ready] = params, derived, program
        params, derived, program = entry
        return program(params, derived, *inputs)

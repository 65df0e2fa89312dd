"""Where a network's weights live in memory: XLA's choice, placed once.

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
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental.layout import Format, Layout

#: JaxBackend's ``parameter_layouts``: row-major weights, or XLA's choice placed once
PARAMETER_LAYOUTS = ("default", "auto")


class NetworkProgram:
    """fn(params, *inputs) compiled once per signature (the weights' and the inputs' shapes and
    dtypes) with the params' layouts chosen by XLA; ``params`` (a dict of arrays) is placed in
    those layouts on the first call with it and then passed as it is: a later call costs one
    lookup by the dict's identity and the inputs' signature, not a walk over the weights.
    Replacing a weight in the dict afterwards needs a new NetworkProgram (the program would get
    the new array in the default layout, which JAX refuses)."""

    def __init__(self, fn, compiler_options: dict | None = None):
        self._fn = fn
        self._compiler_options = compiler_options or None
        self._programs: dict = {}  # (weights' signature, inputs' signature) -> compiled program
        # (id of a params dict placed for it, inputs' signature) -> (that dict, program): the dict
        # is held so that its id cannot be reused by another dict while the entry lives
        self._ready: dict = {}

    @staticmethod
    def inputs_signature(inputs) -> tuple:
        return tuple((type(x).__name__, np.shape(x), str(getattr(x, "dtype", ""))) for x in inputs)

    def program(self, params: dict, *inputs):
        """The compiled program of this signature (lowered and compiled on first use)."""
        weights = tuple((name, tuple(p.shape), str(p.dtype)) for name, p in params.items())
        key = weights, self.inputs_signature(inputs)
        if key not in self._programs:
            jitted = jax.jit(self._fn, in_shardings=(Format(Layout.AUTO),) + (None,) * len(inputs),
                             compiler_options=self._compiler_options)
            # the weights as shapes only: an array would pin its current layout
            shapes = {name: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding) for name, p in params.items()}
            self._programs[key] = jitted.lower(shapes, *inputs).compile()
        return self._programs[key]

    def __call__(self, params: dict, *inputs):
        ready = (id(params), self.inputs_signature(inputs))
        _, program = self._ready.get(ready, (None, None))
        if program is None:
            program = self.program(params, *inputs)
            formats = program.input_formats[0][0]
            for name, array in params.items():
                if array.format != formats[name]:
                    params[name] = jax.device_put(array, formats[name])
            self._ready[ready] = params, program
        return program(params, *inputs)

"""The JAX backend: the op interface as pure, jit-able functions on ``jax.Array``.

Plain ``jnp`` code is the unfused baseline (``ops.py``, and XLA fuses what it can); Pallas
kernels carry the paper's fused ideas: ``pallas_norm.py`` (fused GroupNorm (+SiLU), fused
GEGLU/GELU), ``attention.py`` (partially fused softmax: stats kernel + fused P V; FlashAttention),
``winograd.py`` (input/output transforms around batched GEMMs). On a CPU the Pallas kernels run
in interpret mode.
"""

from .backend import JaxBackend

__all__ = ["JaxBackend"]

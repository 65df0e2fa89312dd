"""The JAX backend: the op interface as pure, jit-able functions on ``jax.Array``.

One module per idea, each with the plain-jnp baseline (XLA fuses what it can) beside the Pallas
kernel of the paper's idea: ``group_norm`` (GroupNorm jnp and fused; LayerNorm), ``gelu``
(GELU/GEGLU jnp and fused), ``attention`` (naive jnp, partially fused softmax and flash in
Pallas; the row softmax), ``winograd`` (Winograd with Pallas transforms around XLA's batched
GEMMs; XLA's direct convolution), ``gemm`` (linear) and ``elementwise`` (the rest).
``pallas_util`` holds what the Pallas modules share. On a CPU the Pallas kernels run in
interpret mode.
"""

from .backend import JaxBackend

__all__ = ["JaxBackend"]

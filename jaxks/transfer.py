"""Host (NumPy) data onto the device without compiling anything.

In jax 0.10 ``jnp.asarray(numpy_array)`` binds ``lax.stage``, whose eager rule compiles an
identity program for every new shape and dtype (and ``jnp.asarray(x, dtype=...)`` a conversion
program), ~6-10 ms each on a CPU. Building the integrals of one molecule meets some thirty
shapes, a third of a second of a small ``jaxks scf``. ``jax.device_put`` of a NumPy array is a
plain transfer.
"""

from __future__ import annotations

import jax
import numpy as np


def to_device(x, dtype=None) -> jax.Array:
    """``x`` (array-like, host) as a JAX array of ``dtype`` (default: NumPy's dtype of ``x``),
    with the same values, shape and dtype as ``jnp.asarray(x, dtype)`` under ``jax_enable_x64``
    but without a compilation."""
    return jax.device_put(np.asarray(x, dtype=dtype))

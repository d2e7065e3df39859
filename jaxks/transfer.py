"""Host (NumPy) data onto the device in one compiled call.

In jax 0.10 ``jnp.asarray(numpy_array)`` binds ``lax.stage``, whose eager rule compiles an
identity program for every new shape and dtype (and ``jnp.asarray(x, dtype=...)`` a conversion
program), ~6-10 ms each on a CPU: building the integrals of one molecule met some thirty shapes,
a third of a second of a small ``jaxks scf``. :func:`to_device` moves a whole pytree through one
jitted copy instead (one compilation per tree structure and shapes).

Why a compiled copy and not ``jax.device_put``: with jaxlib 0.10.1 on the CPU, a process whose
arrays came from ``device_put`` of NumPy buffers sometimes aborts at interpreter exit
("terminate called without an active exception", about 1 run in 10 of ``jaxks scf``), after its
work is done but with exit status 134; arrays that are outputs of an executable, as those of
``jnp.asarray``, never did (0 of 40 runs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _copy(tree):
    # a real copy, not an input forwarded to the output (which would be the transferred buffer)
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), tree)


def to_device(tree):
    """Every leaf of ``tree`` (NumPy arrays or scalars, host) as a JAX array of the same values,
    shape and dtype (``np.asarray`` of the leaf: convert dtypes on the host first), as
    ``jnp.asarray`` gives under ``jax_enable_x64``, compiling one program for the whole tree."""
    return _copy(jax.tree_util.tree_map(np.asarray, tree))

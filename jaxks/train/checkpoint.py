"""Atomic files and training checkpoints.

A checkpoint holds everything the loop needs to continue exactly as if never stopped: the step,
model parameters, optimiser state, the per-frame SCF densities used as warm starts (and, in
fixed-density mode, the frozen densities), stored as the leaves of that pytree in one ``.npz``
with the tree structure recorded, and restored into the structure of a freshly built state.
Every write goes to a temporary file in the same folder, is flushed to disk and then renamed
over the target, so a kill at any moment leaves either the old or the new file, never half.
"""

from __future__ import annotations

import os

import io

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.fileio import atomic_write_bytes  # noqa: F401  (re-exported)
from jaxks.system import InputError

CHECKPOINT_NAME = "checkpoint.npz"


def save_checkpoint(folder: str | os.PathLike, state) -> str:
    """Write the pytree ``state`` (arrays and numbers) to ``folder/checkpoint.npz`` atomically."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    buf = io.BytesIO()
    np.savez(buf, __structure__=np.array(str(treedef)),
             **{f"leaf_{k:06d}": np.asarray(v) for k, v in enumerate(leaves)})
    path = os.path.join(os.fspath(folder), CHECKPOINT_NAME)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(folder: str | os.PathLike, template):
    """Restore a checkpoint into the structure of ``template`` (a state built the same way).

    Raises:
        InputError: no checkpoint, a damaged file, or one written for a different set-up
            (another model size, optimiser or number of frames).
    """
    path = os.path.join(os.fspath(folder), CHECKPOINT_NAME)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    try:
        with np.load(path, allow_pickle=False) as z:
            structure = str(z["__structure__"])
            stored = [z[f"leaf_{k:06d}"] for k in range(len(leaves))] if structure == str(
                treedef) else None
    except FileNotFoundError:
        raise InputError(f"no checkpoint to resume from in {os.fspath(folder)!r}") from None
    except Exception as err:  # noqa: BLE001  (zip, zlib and key errors)
        raise InputError(f"cannot read checkpoint {path!r}: {err}") from err
    if stored is None:
        raise InputError(f"checkpoint {path!r} was written for a different model, optimiser "
                         "or training set; start a new run (or use the original config)")
    # JAX arrays where the template has them: a NumPy leaf behaves differently in JAX code
    # (optax's schedule of a NumPy int32 count is float64, of a JAX one float32), which made
    # the first resumed step differ from the uninterrupted run at 1e-8
    restored = [np.asarray(s, dtype=np.asarray(t).dtype).reshape(np.shape(t))
                for s, t in zip(stored, leaves)]
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(r) if isinstance(t, jax.Array) else r
                  for r, t in zip(restored, leaves)])

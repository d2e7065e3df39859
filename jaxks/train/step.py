"""One jitted training step over a batch of frames of one bucket.

``make_train_step(setup, optimizer)`` returns a pure function

    step(params, opt_state, bucket_inputs, bucket_targets, bucket_state, positions, weights)
        -> (params, opt_state, bucket_state, diagnostics)

that, inside one ``jit``: gathers the batch from the bucket's stacked arrays, evaluates the
per-frame loss and its gradient with ``vmap`` (fixed density: :func:`predict_fixed`; end-to-end:
:func:`predict_scf`, each frame warm-started from its last density), leaves out frames that did
not converge or whose loss or gradient is not finite, averages the gradient of the others
with the batch weights, and applies the optax update (clipping included in the optimiser).
Per-frame diagnostics (loss terms, converged flags, cycles) come back as arrays, read once per
step by the caller. With several devices the frame axis of the batch is sharded over a
one-axis mesh ``("frames",)`` (``jax.sharding``); parameters are replicated.

The loss of a batch is L = Σ_f w_f ok_f L_f / Σ_f w_f ok_f (L_f from :mod:`jaxks.train.losses`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxks.train.losses import LossWeights, OrbitalWindow, loss_terms
from jaxks.train.predict import PredictSetup, predict_fixed, predict_scf

#: Times a step function has been traced (compiled): one per bucket and stage set-up expected.
TRACE_COUNT = {"train_step": 0}


@dataclasses.dataclass(frozen=True)
class LossSetup:
    """Static settings of the per-frame loss (hashable).

    Attributes:
        predict: :class:`PredictSetup` (term, base functional, forces, SCF/adjoint options).
        mode: "fixed" (frozen density) or "scf" (end-to-end).
        weights: λ of every loss term.
        window: orbital window of the bucket; n_atoms, n_occ: sizes of the bucket's frames.
        frames_per_vmap: frames evaluated together by ``vmap``; a larger batch runs as
            sequential chunks of this many (``lax.map``). 0: the whole batch in one ``vmap``.
    """

    predict: PredictSetup
    mode: str
    weights: LossWeights
    window: OrbitalWindow
    n_atoms: int
    n_occ: int
    frames_per_vmap: int = 0


#: jaxlib releases whose CPU LAPACK kernels split a batched call over the intra-op thread pool
#: and block a pool worker until the pieces are done (``jax::ParallelBatchMap``, added to jaxlib
#: in April 2026, made serial again upstream in July 2026 after jax 0.11.0): when every pool
#: worker runs such a call at once, the pieces they queued have no thread left and the program
#: never returns (reproduced by ``benchmarks/jax_lapack_hang.py``).
PARALLEL_LAPACK_JAXLIB = ((0, 10, 0), (0, 11, 0))
#: A batched LAPACK call below this work (FLOP, jaxlib's estimate) runs inline, not split.
LAPACK_INLINE_WORK = 200_000


def lapack_batch_hang_risk() -> str | None:
    """Why wide batched LAPACK calls may deadlock in this process (CPU backend and a jaxlib in
    :data:`PARALLEL_LAPACK_JAXLIB`), or None."""
    import jaxlib

    if jax.default_backend() != "cpu":
        return None
    try:
        version = tuple(int(x) for x in jaxlib.__version__.split(".")[:3])
    except ValueError:
        return None
    lo, hi = PARALLEL_LAPACK_JAXLIB
    if not lo <= version <= hi:
        return None
    return (f"jaxlib {jaxlib.__version__} on the CPU splits a batched LAPACK call (eigh) over "
            "its intra-op thread pool and waits inside a pool thread; several such calls at "
            "once deadlock the step (README, Known problems)")


def safe_frames_per_vmap(requested: int, batch: int, nao: int, n_atoms: int,
                         n_shells: int = 12) -> tuple[int, str | None]:
    """Frames of an end-to-end batch to ``vmap`` together: ``requested`` (0: the whole batch),
    lowered where :func:`lapack_batch_hang_risk` applies until every batched eigh stays below
    jaxlib's inline threshold (:data:`LAPACK_INLINE_WORK`): the Fock eigh costs ≈ 5 nao³ per
    frame, the descriptors' d blocks ≈ 5·5³ per atom and shell. Returns (frames, reason or
    None when unchanged)."""
    width = requested if 0 < requested < batch else batch
    risk = lapack_batch_hang_risk()
    if risk is None:
        return requested, None
    per_frame = max(5 * nao ** 3, 5 * 125 * n_shells * n_atoms)
    safe = max(1, (LAPACK_INLINE_WORK - 1) // per_frame)
    if width <= safe:
        return requested, None
    return safe, (f"{risk}: end-to-end frames vmapped {safe} at a time instead of {width} "
                  f"(nao {nao}, {n_atoms} atoms)")


def frame_loss(params, inputs, target, guess, setup: LossSetup, probe=0.0):
    """Weighted loss of one frame and its diagnostics.

    ``inputs`` is a :class:`jaxks.train.predict.FixedCache` (mode "fixed") or a
    :class:`jaxks.train.frames.Frame` (mode "scf", warm-started from ``guess`` [nao, nao]).
    ``probe`` (end-to-end mode): a scalar whose gradient counts the adjoint matrix-vector
    products. Returns (L, aux) with aux = {terms: {name: value}, converged, cycles, gamma}.
    """
    if setup.mode == "fixed":
        pred = predict_fixed(params, inputs, setup.predict)
    else:
        pred = predict_scf(params, inputs, guess, setup.predict, probe)
    terms = loss_terms(pred, target, setup.weights, setup.window, setup.n_atoms, setup.n_occ)
    aux = dict(terms=terms, converged=pred["converged"], cycles=pred["cycles"],
               gamma=jax.lax.stop_gradient(pred["gamma"]))
    return terms["total"], aux


def _take(tree, positions):
    return jax.tree_util.tree_map(lambda x: jnp.take(x, positions, axis=0), tree)


def frame_mesh(devices=None):
    """A one-axis mesh ("frames",) over ``devices`` (default: all local devices), or None for one."""
    devices = jax.local_devices() if devices is None else list(devices)
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.asarray(devices), ("frames",))


def _shard_frames(tree, mesh):
    if mesh is None:
        return tree
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("frames"))
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)


def batch_loss_and_grads(params, inputs, targets, guesses, weights, setup: LossSetup):
    """Per-frame loss, gradient and diagnostics of a batch (vmapped), and their weighted mean.

    Returns (mean_loss, mean_grad, aux) with aux holding ``terms`` (weighted means) and, per
    frame, ``frame_terms`` {name: [B]}, ``ok`` [B], ``converged`` [B], ``cycles`` [B],
    ``gamma`` [B, nao, nao] and ``loss`` [B].
    """
    value_and_grad = jax.value_and_grad(frame_loss, argnums=(0, 5), has_aux=True)
    probes = jnp.zeros(weights.shape, weights.dtype)  # one per frame: a count each
    chunk = setup.frames_per_vmap
    if chunk and chunk < weights.shape[0]:
        # frames in sequential chunks of `chunk` vmapped frames (lax.map): bounds memory, and
        # keeps frame-batched eigh calls below the size jaxlib 0.10 splits over its thread pool
        # (safe_frames_per_vmap: a deadlock of wide vmapped end-to-end steps on a CPU)
        def one(x):
            return value_and_grad(params, *x[:3], setup, x[3])

        (loss, aux), (grads, matvecs) = jax.lax.map(
            one, (inputs, targets, guesses, probes), batch_size=chunk)
    else:
        per_frame = jax.vmap(value_and_grad, in_axes=(None, 0, 0, 0, None, 0))
        (loss, aux), (grads, matvecs) = per_frame(params, inputs, targets, guesses, setup,
                                                  probes)
    finite = jnp.isfinite(loss)
    for g in jax.tree_util.tree_leaves(grads):
        finite = finite & jnp.all(jnp.isfinite(g.reshape(g.shape[0], -1)), axis=1)
    ok = aux["converged"] & finite
    w = jnp.where(ok, weights, 0.0)
    norm = jnp.maximum(jnp.sum(w), 1e-300)

    def mean(x):  # weighted mean over frames, non-finite frames zeroed before weighting
        x = jnp.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)
        return jnp.tensordot(w, x, axes=1) / norm

    mean_grad = jax.tree_util.tree_map(mean, grads)
    terms = {k: mean(v) for k, v in aux["terms"].items()}
    out = dict(ok=ok, terms=terms, frame_terms=aux["terms"], converged=aux["converged"],
               cycles=aux["cycles"], matvecs=matvecs,
               gamma=aux["gamma"], loss=loss, used=jnp.sum((weights > 0) & ok),
               skipped=jnp.sum((weights > 0) & ~ok))
    return terms["total"], mean_grad, out


def make_train_step(setup: LossSetup, optimizer: optax.GradientTransformation, mesh=None):
    """The jitted step for one bucket's loss settings (see module docstring).

    Args:
        setup: :class:`LossSetup` of the bucket and stage.
        optimizer: optax transformation (clipping, Adam, frozen parts) applied to the mean gradient.
        mesh: optional ``Mesh`` with axis "frames" to shard the batch over devices.
    Returns:
        step(params, opt_state, inputs, targets, state, positions, weights)
            -> (params, opt_state, state, diagnostics). ``state`` [n_frames, nao, nao] holds
            each frame's last self-consistent density (warm starts; unchanged in fixed mode);
            diagnostics per frame: frame_terms {name: [B]}, ok, converged, cycles, matvecs
            (adjoint matrix-vector products; 0 in fixed mode). With all
            weights 0 the step changes nothing and only evaluates (the step-0 evaluation).
    """

    def step(params, opt_state, inputs, targets, state, positions, weights):
        TRACE_COUNT["train_step"] += 1
        batch = _shard_frames((_take(inputs, positions), _take(targets, positions),
                               jnp.take(state, positions, axis=0), weights), mesh)
        _, grad, aux = batch_loss_and_grads(params, *batch, setup)
        updates, new_opt = optimizer.update(grad, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        any_used = aux["used"] > 0
        keep = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
            lambda a, b: jnp.where(any_used, a, b), new, old)
        params, opt_state = keep(new_params, params), keep(new_opt, opt_state)
        if setup.mode == "scf":
            # converged real frames keep their new density as the next warm start; fillers and
            # failures write out of range (dropped)
            target_pos = jnp.where((weights > 0) & aux["ok"], positions, state.shape[0])
            state = state.at[target_pos].set(aux["gamma"], mode="drop")
        diag = {k: aux[k] for k in ("frame_terms", "ok", "converged", "cycles", "matvecs")}
        return params, opt_state, state, diag

    return jax.jit(step)

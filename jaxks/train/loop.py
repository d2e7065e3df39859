"""Training DeePKS-ES: end-to-end through the SCF, or the published fixed-density scheme.

Both modes minimise the same per-frame loss (:mod:`jaxks.train.losses`) of the same model on
the same data; they differ only in the density Γ at which the prediction is made:

* ``mode = "scf"`` — every step runs the jit-compiled SCF with the current θ and differentiates
  through the fixed point implicitly (:func:`jaxks.implicit.solve`): the loss and its gradient
  are those of the *self-consistent* prediction. The SCF is warm-started from the frame's
  previous density.
* ``mode = "fixed"`` — every ``refresh_every`` steps the SCF is run with θ frozen; in between, the
  loss is evaluated at those frozen densities (one Fock build and diagonalisation, no response),
  which is the published DeePKS/DeePKS-ES iteration.

A frame whose SCF does not converge (or whose loss is not finite) is skipped for that step and
counted in the log, never silently dropped. Randomness (initialisation, data order) comes from
``train.seed`` and ``model.seed`` only; with the checkpoint's parameters, optimiser state and
per-frame densities, ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxks import linalg
from jaxks.deepks.correction import DeePKSParams, DeePKSTerm, deepks_forces
from jaxks.deepks.descriptors import descriptors_from_overlaps
from jaxks.deepks.io import DeePKSModel, save_model
from jaxks.deepks.model import ModelConfig, fit_model, freeze_non_trainable, init_model
from jaxks.deepks.projectors import ProjectorBasis, default_basis
from jaxks.forces import forces as base_forces
from jaxks.implicit import AdjointOptions, solve
from jaxks.scf import SCFOptions, finalize, run_scf
from jaxks.system import InputError
from jaxks.train.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from jaxks.train.config import TrainConfig, save_config
from jaxks.train.frames import Frame, FrameRecord
from jaxks.train.losses import LossWeights, loss_terms
from jaxks.xc import get_xc

LOG_NAME = "log.jsonl"
MODEL_NAME = "model.npz"
#: Times the per-frame loss has been traced (one per composition and mode is expected).
TRACE_COUNT = {"frame_loss": 0}


@dataclasses.dataclass(frozen=True)
class LossSetup:
    """Static settings of the per-frame loss (hashable: a jit static argument)."""

    term: DeePKSTerm
    xc: object
    mode: str
    weights: LossWeights
    options: SCFOptions
    adjoint: AdjointOptions


def scf_options(cfg: TrainConfig) -> SCFOptions:
    s = cfg.scf
    return SCFOptions(max_cycles=s.max_cycles, e_tol=s.e_tol, comm_tol=s.comm_tol,
                      level_shift=s.level_shift, damping=s.damping)


def loss_weights(cfg: TrainConfig) -> LossWeights:
    """The weights alone (a smaller static argument than the whole loss section)."""
    names = [f.name for f in dataclasses.fields(LossWeights)]
    return LossWeights(**{k: getattr(cfg.loss, k) for k in names})


# ----------------------------------------------------------------------------- prediction
def predict(model_params, frame: Frame, gamma, setup: LossSetup):
    """The model's prediction for one frame: energy, forces, Fock matrix, orbitals, density.

    ``gamma`` is the warm start (mode "scf") or the frozen density (mode "fixed").
    Returns (pred dict, SCFResult).
    """
    theta = DeePKSParams(model=model_params, overlaps=frame.overlaps,
                         element_onehot=frame.onehot)
    if setup.mode == "scf":
        res = solve(frame.ints, setup.xc, term=setup.term, params=theta, options=setup.options,
                    adjoint=setup.adjoint, guess=gamma)
    else:
        res = finalize(frame.ints, theta, jax.lax.stop_gradient(gamma), setup.xc, setup.term,
                       eigh=linalg.eigh)
    pred = dict(energy=res.energy, fock=res.fock, mo_energy=res.mo_energy,
                mo_coeff=res.mo_coeff, gamma=res.gamma)
    if setup.weights.force:
        pred["forces"] = (base_forces(res, frame.ints, frame.fints, setup.xc)
                          + deepks_forces(setup.term, res.gamma, theta, frame.proj_derivs))
    return pred, res


def frame_loss(model_params, frame: Frame, gamma, setup: LossSetup):
    """Weighted loss of one frame and its diagnostics (terms, converged, cycles, density)."""
    TRACE_COUNT["frame_loss"] += 1
    pred, res = predict(model_params, frame, gamma, setup)
    terms = loss_terms(pred, frame.target, setup.weights, frame.window, frame.n_atoms,
                       frame.ints.n_occ)
    aux = dict(terms=terms, converged=res.converged, cycles=res.cycles,
               gamma=jax.lax.stop_gradient(res.gamma))
    return terms["total"], aux


_loss_and_grad = jax.jit(jax.value_and_grad(frame_loss, has_aux=True),
                         static_argnames=("setup",))
_loss_only = jax.jit(frame_loss, static_argnames=("setup",))


# ----------------------------------------------------------------------------- model set-up
def new_model(cfg: TrainConfig, records: Sequence[FrameRecord],
              basis: ProjectorBasis | None = None) -> tuple[ModelConfig, object, ProjectorBasis]:
    """Initialise the network (seeded) and fit its frozen parts (shift, ridge prefit, element
    constants) to E_target − E_base on the base-functional densities of ``records``."""
    basis = basis or default_basis()
    sections = tuple(2 * l + 1 for l, n in basis.shell_structure for _ in range(n))
    elements = tuple(sorted({s for r in records for s in r.system.symbols}))
    config = ModelConfig(shell_sections=sections, hidden=cfg.model.hidden,
                         embedding=None if cfg.model.embedding == "none" else "thermal",
                         elements=elements if cfg.model.element_constants else ())
    params = init_model(config, jax.random.PRNGKey(cfg.model.seed))
    shells = basis.shell_structure
    descs = [np.asarray(descriptors_from_overlaps(jnp.asarray(r.base["dm"]), r.frame.overlaps,
                                                  shells))[None] for r in records]
    energies = [np.array([float(r.frame.target["energy"]) - float(r.base["energy"])])
                for r in records]
    params = fit_model(config, params, descs, energies, [r.system.symbols for r in records],
                       prefit=cfg.model.prefit, ridge_alpha=cfg.model.ridge_alpha,
                       fit_elements=bool(config.elements))
    return config, params, basis


def make_optimizer(cfg: TrainConfig, params):
    o = cfg.optim
    schedule = optax.exponential_decay(o.learning_rate, transition_steps=max(o.decay_steps, 1),
                                       decay_rate=o.decay_rate,
                                       end_value=o.end_learning_rate)
    opt = optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adam(schedule))
    return freeze_non_trainable(opt, params), schedule


def batch_indices(step: int, n_frames: int, batch_size: int, seed: int) -> list[int]:
    """Frames of gradient step ``step``: consecutive slices of per-epoch permutations
    (epoch e uses ``default_rng([seed, e]).permutation``), so any step is reproducible."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, k = divmod(pos, n_frames)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n_frames)[k]))
    return out


# ----------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class TrainResult:
    model: DeePKSModel
    steps: int
    out: str
    wall_s: float


def _tree_add(a, b):
    return b if a is None else jax.tree_util.tree_map(jnp.add, a, b)


def _progress(step, total, t0, notes, stream):
    if stream is None:
        return
    done = step / total if total else 1.0
    bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
    stream.write(f"train [{bar}] step {step}/{total}, {time.perf_counter() - t0:.0f} s, {notes}\n")
    stream.flush()


def refresh_densities(params, records, gammas, setup: LossSetup):
    """Fixed mode: self-consistent densities with θ frozen (forward SCF only).
    Returns the number of frames that did not converge (their old density is kept)."""
    failed = 0
    for i, r in enumerate(records):
        theta = DeePKSParams(model=params, overlaps=r.frame.overlaps,
                             element_onehot=r.frame.onehot)
        res = run_scf(r.frame.ints, setup.xc, term=setup.term, params=theta,
                      options=setup.options, guess=gammas[str(i)], warn=False)
        if bool(res.converged):
            gammas[str(i)] = res.gamma
        else:
            failed += 1
    return failed


def train(cfg: TrainConfig, records: Sequence[FrameRecord], *, resume: bool = False,
          base_xc: str = "pbe", stream=sys.stderr, stop_after: int | None = None) -> TrainResult:
    """Train a DeePKS model on ``records`` as ``cfg`` says; write config, log, checkpoints and
    the model file into ``cfg.train.out``.

    Args:
        resume: continue from the checkpoint in ``cfg.train.out``.
        stop_after: stop (after checkpointing) once this step is reached — for tests of resume.
    """
    out = cfg.train.out
    os.makedirs(out, exist_ok=True)
    save_config(cfg, os.path.join(out, "config.toml"))
    if not records:
        raise InputError("no training frames")
    mconfig, params, basis = new_model(cfg, records)
    term = DeePKSTerm.for_model(mconfig, basis)
    setup = LossSetup(term=term, xc=get_xc(base_xc), mode=cfg.train.mode,
                      weights=loss_weights(cfg), options=scf_options(cfg),
                      adjoint=AdjointOptions(tol=cfg.scf.adjoint_tol))
    optimizer, schedule = make_optimizer(cfg, params)
    opt_state = optimizer.init(params)
    gammas = {str(i): jnp.asarray(r.base["dm"]) for i, r in enumerate(records)}
    state = dict(step=0, params=params, opt_state=opt_state, gammas=gammas)
    log_path = os.path.join(out, LOG_NAME)
    if resume:
        state = load_checkpoint(out, state)
        _truncate_log(log_path, int(state["step"]))
    elif os.path.exists(log_path):
        os.unlink(log_path)
    step, params, opt_state, gammas = (int(state["step"]), state["params"], state["opt_state"],
                                       dict(state["gammas"]))
    n, total = len(records), cfg.train.steps
    t0 = time.perf_counter()
    traces0 = TRACE_COUNT["frame_loss"]
    while step < total:
        refresh_failed = 0
        if setup.mode == "fixed" and step % max(cfg.train.refresh_every, 1) == 0:
            refresh_failed = refresh_densities(params, records, gammas, setup)
        grads, sums, used, skipped, cycles = None, {}, 0, 0, []
        for i in batch_indices(step, n, cfg.train.batch_size, cfg.train.seed):
            r = records[i]
            (loss, aux), g = _loss_and_grad(params, r.frame, gammas[str(i)], setup=setup)
            ok = bool(aux["converged"]) and bool(jnp.isfinite(loss)) and all(
                bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
            if not ok:
                skipped += 1
                continue
            if setup.mode == "scf":
                gammas[str(i)] = aux["gamma"]
            cycles.append(int(aux["cycles"]))
            grads = _tree_add(grads, g)
            for k, v in aux["terms"].items():
                sums[k] = sums.get(k, 0.0) + float(v)
            used += 1
        if used:
            grads = jax.tree_util.tree_map(lambda x: x / used, grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        step += 1
        record = dict(step=step, lr=float(schedule(step - 1)), frames=used, skipped=skipped,
                      refresh_unconverged=refresh_failed,
                      mean_cycles=float(np.mean(cycles)) if cycles and setup.mode == "scf" else None,
                      compilations=TRACE_COUNT["frame_loss"] - traces0,
                      wall_s=time.perf_counter() - t0,
                      **{f"loss_{k}": v / used for k, v in sums.items()} if used else {})
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if step % max(cfg.train.log_every, 1) == 0 or step == total:
            notes = ", ".join(f"{k[5:]} {v:.3e}" for k, v in record.items()
                              if k.startswith("loss_")) + (f", skipped {skipped}" if skipped else "")
            _progress(step, total, t0, notes, stream)
        if step % max(cfg.train.checkpoint_every, 1) == 0 or step == total or step == stop_after:
            save_checkpoint(out, dict(step=step, params=params, opt_state=opt_state,
                                      gammas=gammas))
        if stop_after is not None and step >= stop_after:
            break
    model = DeePKSModel(config=mconfig, params=params, basis=basis, base_xc=base_xc,
                        metadata=dict(mode=cfg.train.mode, steps=step,
                                      train=list(cfg.data.train)))
    save_model(os.path.join(out, MODEL_NAME), model)
    return TrainResult(model=model, steps=step, out=out, wall_s=time.perf_counter() - t0)


def _truncate_log(path: str, step: int) -> None:
    """Drop log lines past the checkpoint's step (they will be redone identically)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
    atomic_write_bytes(path, "".join(lines).encode())

"""Training DeePKS-ES: fixed-density steps, end-to-end steps through the SCF, or stages of both.

Both modes minimise the same per-frame loss (:mod:`jaxks.train.losses`) of the same model on the
same data; they differ only in the density Γ at which the prediction is made
(:mod:`jaxks.train.predict`):

* ``mode = "fixed"`` — the published DeePKS-L iteration: every ``refresh_every`` steps a
  DeePKS-SCF with θ frozen (:func:`jaxks.train.refresh.refresh_densities`: one jitted call per
  bucket, warm-started from each frame's last density, MINAO fallback for frames that fail)
  gives Γ, and everything that does not depend on θ is cached (base Fock matrix and energy from
  the refresh's last Fock build, base forces only with a force term); a step is then a network
  evaluation, one generalized eigensolve and the losses per frame — no grid or Coulomb work.
* ``mode = "scf"`` — every step runs the jit-compiled SCF of every frame of the batch (vmapped,
  each frame warm-started from its last density) and differentiates through the fixed point
  implicitly: loss and gradient are those of the *self-consistent* prediction.
* ``[[stages]]`` in the config run several such phases in order (e.g. fixed-density pretraining,
  then end-to-end fine-tuning), each with its own steps, learning rate and loss weights; the
  optimiser state starts afresh at each stage.

Frames are grouped by composition into buckets (:mod:`jaxks.train.buckets`); a step draws its
batch from one bucket and runs as one jitted function (:mod:`jaxks.train.step`): one compilation
per bucket and stage, none after a bucket's first step, counted in the log. With several devices
the frame axis of a batch is sharded over them. Before any update a step-0 line logs every loss
term of the initial model (network, frozen prefit and element constants) on all training frames.

A frame whose SCF does not converge (or whose loss or gradient is not finite) is left out of
that step's gradient and counted in the log (``skipped``), never silently dropped. Randomness
(initialisation, data order) comes from ``train.seed`` and ``model.seed`` only; with the
checkpoint's parameters, optimiser state and per-frame densities, ``--resume`` reproduces an
uninterrupted run exactly, in every mode and across stages.

This module holds the step loop, its mutable state (:class:`Trainer`) and the log. The other
jobs are pure functions in their own modules: the initial model (:mod:`jaxks.train.initial`),
the stage schedule and optimisers (:mod:`jaxks.train.schedule`), the density refresh and
fixed-density caches (:mod:`jaxks.train.refresh`), checkpoints (:mod:`jaxks.train.checkpoint`).
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

from jaxks.deepks.correction import DeePKSTerm
from jaxks.deepks.io import DeePKSModel, save_model
from jaxks.implicit import AdjointOptions
from jaxks.system import InputError
from jaxks.train.buckets import Bucket, batch_at, make_buckets, padded_batch_size, stack
from jaxks.train.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from jaxks.train.config import ResolvedStage, TrainConfig, save_config
from jaxks.train.frames import FrameRecord
# the set-up, refresh and schedule live in their own modules; re-exported here, where the
# commands, tests and benchmarks have always found them
from jaxks.train.initial import new_model, training_settings  # noqa: F401
from jaxks.train.predict import PredictSetup
from jaxks.train.refresh import (_COMPILED, RefreshStats, bucket_cache, chunks,  # noqa: F401
                                 refresh_fields, refresh_line)
from jaxks.train.schedule import (checkpoint_due, make_optimizer, refresh_due,  # noqa: F401
                                  refresh_options, scf_options, stage_start)
from jaxks.train.step import (TRACE_COUNT, LossSetup, frame_mesh, make_train_step,
                              safe_frames_per_vmap)
from jaxks.xc import get_xc

LOG_NAME = "log.jsonl"
MODEL_NAME = "model.npz"
# ----------------------------------------------------------------------------- trainer
@dataclasses.dataclass
class TrainResult:
    model: DeePKSModel
    steps: int
    out: str
    wall_s: float


def _progress(step, total, t0, notes, stream):
    if stream is None:
        return
    done = step / total if total else 1.0
    bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
    stream.write(f"train [{bar}] step {step}/{total}, {time.perf_counter() - t0:.0f} s, {notes}\n")
    stream.flush()


class _BucketData:
    """Stacked per-frame arrays of one bucket for the current stage (device-resident)."""

    def __init__(self, records, bucket: Bucket, trainer):
        frames = [records[i].frame for i in bucket.indices]
        self.targets = trainer.place(stack([f.target for f in frames]))
        self.frames = frames
        self.trainer = trainer
        self.inputs = None            # FixedCache stack (fixed) or Frame stack (scf)
        self.stacked_frames = None

    def frame_stack(self):
        if self.stacked_frames is None:
            self.stacked_frames = self.trainer.place(
                stack([dataclasses.replace(f, target={}) for f in self.frames]))
        return self.stacked_frames


class Trainer:
    """The state machine behind :func:`train` (one instance per run)."""

    def __init__(self, cfg: TrainConfig, records: Sequence[FrameRecord], base_xc: str, stream,
                 devices=None):
        self.cfg, self.records, self.stream = cfg, list(records), stream
        self.stages = cfg.resolved_stages()
        self.mconfig, params, self.basis = new_model(cfg, records)
        self.term = DeePKSTerm.for_model(self.mconfig, self.basis)
        self.xc = get_xc(base_xc)
        self.base_xc = base_xc
        self.buckets = make_buckets(self.records)
        self.mesh = frame_mesh(devices)
        self.n_devices = 1 if self.mesh is None else self.mesh.size
        self.data = [_BucketData(self.records, b, self) for b in self.buckets]
        self.options = scf_options(cfg)
        # the fixed-mode refresh converges to its own, looser tolerances ([train] refresh_e_tol,
        # refresh_comm_tol: the loss is evaluated at the refreshed Γ); everything else: [scf]
        self.refresh_options = refresh_options(cfg)
        # no host callback inside a step: unconverged solves show in the logged matvec count
        self.adjoint = AdjointOptions(tol=cfg.scf.adjoint_tol, warn=False)
        opt, _ = make_optimizer(cfg, params, self.stages[0] if self.stages else None)
        gammas = {b.key: stack([jnp.asarray(self.records[i].base["dm"]) for i in b.indices])
                  for b in self.buckets}
        # F_base and E_base of each frame's fixed-density cache, checkpointed with Γ: a run
        # resumed between refreshes rebuilds the cache from them bit for bit (the refresh takes
        # them from its SCF's last Fock build, which a new Fock build at Γ matches to rounding)
        bases = {k: dict(fock=jnp.zeros_like(g), energy=jnp.zeros(g.shape[0], g.dtype))
                 for k, g in gammas.items()}
        self.state = dict(step=0, params=params, opt_state=opt.init(params), gammas=gammas,
                          bases=bases)
        self.state = self.place(self.state)
        self.refresh_stats = RefreshStats()
        self.notes: set = set()  # guard notes already written to the stream
        self.pending_notes: list[str] = []  # and not yet to the log

    def place(self, tree, sharded: bool = False):
        """Commit arrays to the device(s) (replicated over a mesh, or with ``sharded`` their
        leading axis split over it): a jitted step's outputs are committed, and jit compiles
        again when committed-ness of its arguments changes."""
        if self.mesh is None:
            where = jax.local_devices()[0]
        else:
            spec = jax.sharding.PartitionSpec(*(("frames",) if sharded else ()))
            where = jax.sharding.NamedSharding(self.mesh, spec)
        return jax.tree_util.tree_map(
            lambda x: jax.device_put(x, where) if isinstance(x, (jax.Array, np.ndarray)) else x,
            tree)

    # ------------------------------------------------------------------ set-ups
    def predict_setup(self, stage: ResolvedStage) -> PredictSetup:
        return PredictSetup(term=self.term, xc=self.xc, with_forces=stage.weights.force > 0,
                            options=self.options, adjoint=self.adjoint)

    def loss_setup(self, stage: ResolvedStage, bucket: Bucket) -> LossSetup:
        chunk = 0
        if stage.mode == "scf":
            width = padded_batch_size(stage.batch_size, self.n_devices) // self.n_devices
            chunk, why = safe_frames_per_vmap(self.cfg.train.scf_frames_per_vmap, width,
                                              self.data[self.buckets.index(bucket)]
                                              .frames[0].ints.nao, bucket.n_atoms)
            if why and (bucket.key, chunk) not in self.notes:
                self.notes.add((bucket.key, chunk))
                self.pending_notes.append(f"{bucket.key}: {why}")
                if self.stream is not None:
                    self.stream.write(f"note ({bucket.key}): {why}\n")
                    self.stream.flush()
        return LossSetup(predict=self.predict_setup(stage), mode=stage.mode,
                         weights=stage.weights, window=bucket.window, n_atoms=bucket.n_atoms,
                         n_occ=bucket.n_occ, frames_per_vmap=chunk)

    def take_notes(self) -> dict:
        """{"notes": [...]} of the guard notes not yet logged (empty dict when none)."""
        notes, self.pending_notes = self.pending_notes, []
        return {"notes": notes} if notes else {}

    def stage_start(self, k: int) -> int:
        return stage_start(self.stages, k)

    # ------------------------------------------------------------------ fixed-mode caches
    def _frames(self, data: "_BucketData", forces: bool, positions=None):
        """The bucket's frames stacked along a new axis, without targets (and without the force
        integrals unless ``forces``), at ``positions`` (default: all); placed on the device(s),
        the frame axis sharded over a mesh when its length allows."""
        frames = data.frames if positions is None else [data.frames[p] for p in positions]
        light = [dataclasses.replace(f, target={}, fints=f.fints if forces else None,
                                     proj_derivs=f.proj_derivs if forces else None)
                 for f in frames]
        return self.place(stack(light), sharded=len(light) % self.n_devices == 0)

    def build_caches(self, stage: ResolvedStage, params, scf: bool) -> int:
        """(Re)build every bucket's :class:`FixedCache` (:func:`bucket_cache`); with ``scf``
        first reconverge Γ with θ frozen (:func:`refresh_densities`: one call per bucket,
        warm-started, to the refresh tolerances ``self.refresh_options``; MINAO fallback for
        the frames that fail; a frame that fails both keeps its previous Γ). Forces (the costly
        part of a cache) only when the stage's force weight is > 0. Progress on the trainer's
        stream; the counts in ``self.refresh_stats``. Returns the number of frames left
        unconverged."""
        setup = self.predict_setup(stage)
        width = padded_batch_size(stage.batch_size, self.n_devices)
        stats = RefreshStats()
        t0 = time.perf_counter()
        for k, (bucket, data) in enumerate(zip(self.buckets, self.data)):
            data.inputs, st = bucket_cache(
                params, self.state["gammas"][bucket.key], self.state["bases"][bucket.key],
                setup, bucket, lambda forces, pos, data=data: self._frames(data, forces, pos),
                scf=scf, warm_cycles=self.cfg.train.refresh_cycles, width=width,
                options=self.refresh_options)
            if scf:
                stats = stats + st
                if self.stream is not None:
                    self.stream.write(refresh_line(k, len(self.buckets), bucket.key, st))
                    self.stream.flush()
            self.state["gammas"][bucket.key] = data.inputs.gamma
            self.state["bases"][bucket.key] = dict(fock=data.inputs.fock_base,
                                                   energy=data.inputs.energy_base)
        stats.seconds = time.perf_counter() - t0
        self.refresh_stats = stats
        return stats.unconverged

    # ------------------------------------------------------------------ steps
    def step_fn(self, stage: ResolvedStage, b: int, optimizer):
        setup = self.loss_setup(stage, self.buckets[b])
        # the optimiser is rebuilt from these settings, so they identify it
        key = ("step", setup, stage, self.cfg.optim, self.mesh)
        if key not in _COMPILED:
            _COMPILED[key] = make_train_step(setup, optimizer, self.mesh)
        return _COMPILED[key]

    def inputs(self, stage: ResolvedStage, b: int):
        data = self.data[b]
        return data.inputs if stage.mode == "fixed" else data.frame_stack()

    def run_step(self, stage: ResolvedStage, k: int, optimizer, b: int, positions, weights):
        """One jitted step on bucket ``b``; returns the per-frame diagnostics (NumPy) after the
        one host synchronisation of the step."""
        bucket = self.buckets[b]
        fn = self.step_fn(stage, b, optimizer)
        params, opt_state, gammas, diag = fn(
            self.state["params"], self.state["opt_state"], self.inputs(stage, b),
            self.data[b].targets, self.state["gammas"][bucket.key], jnp.asarray(positions),
            jnp.asarray(weights))
        self.state.update(params=params, opt_state=opt_state)
        self.state["gammas"][bucket.key] = gammas
        if stage.mode == "scf":  # Γ moved: the refresh's F_base, E_base are no longer at Γ
            bases = self.state["bases"][bucket.key]
            bases["energy"] = jnp.zeros_like(bases["energy"])
        return jax.device_get(diag)

    def evaluate_all(self, stage: ResolvedStage, k: int, optimizer) -> dict:
        """Mean of every loss term over all training frames, no update (steps with all batch
        weights 0, so no extra compilation): the step-0 line."""
        width = padded_batch_size(stage.batch_size, self.n_devices)
        sums, n, skipped = {}, 0, 0
        for b, bucket in enumerate(self.buckets):
            for real, pos in chunks(bucket, width):
                diag = self.run_step(stage, k, optimizer, b, pos, np.zeros(width))
                ok = np.asarray(diag["ok"])[:len(real)]
                for name, v in diag["frame_terms"].items():
                    sums[name] = sums.get(name, 0.0) + float(np.sum(np.asarray(v)[:len(real)][ok]))
                n += int(ok.sum())
                skipped += int((~ok).sum())
        return dict({f"loss_{k2}": v / max(n, 1) for k2, v in sums.items()}, frames=n,
                    skipped=skipped)


def batch_record(diag, weights) -> dict:
    """Log fields of one step from its per-frame diagnostics: frames used and skipped, the
    weighted mean of every loss term over the used frames, mean SCF cycles."""
    w = np.asarray(weights)
    ok = np.asarray(diag["ok"]) & (w > 0)
    used = int(ok.sum())
    out = dict(frames=used, skipped=int(((w > 0) & ~np.asarray(diag["ok"])).sum()))
    if used:
        wn = np.where(ok, w, 0.0) / np.sum(np.where(ok, w, 0.0))
        out.update({f"loss_{k}": float(np.sum(wn * np.where(ok, np.asarray(v), 0.0)))
                    for k, v in diag["frame_terms"].items()})
    cycles = np.asarray(diag["cycles"])[ok]
    out["cycles"] = float(np.mean(cycles)) if len(cycles) else None
    out["adjoint_matvecs"] = int(np.sum(np.asarray(diag["matvecs"])[w > 0]))
    return out


def train(cfg: TrainConfig, records: Sequence[FrameRecord], *, resume: bool = False,
          base_xc: str = "pbe", stream="stderr", stop_after: int | None = None,
          devices=None) -> TrainResult:
    """Train a DeePKS model on ``records`` as ``cfg`` says; write config, log, checkpoints and
    the model file into ``cfg.train.out``.

    Args:
        resume: continue from the checkpoint in ``cfg.train.out``.
        stop_after: stop (after checkpointing) once this global step is reached — for tests of
            resume.
        devices: devices to shard each batch's frames over (default: all local devices).
        stream: where the progress bar goes ("stderr": ``sys.stderr`` at call time; None: off).
    """
    if stream == "stderr":
        stream = sys.stderr
    out = cfg.train.out
    os.makedirs(out, exist_ok=True)
    save_config(cfg, os.path.join(out, "config.toml"))
    if not records:
        raise InputError("no training frames")
    tr = Trainer(cfg, records, base_xc, stream, devices)
    log_path = os.path.join(out, LOG_NAME)
    if resume:
        tr.state = tr.place(load_checkpoint(out, tr.state))
        _truncate_log(log_path, int(tr.state["step"]))
    elif os.path.exists(log_path):
        os.unlink(log_path)
    step = int(tr.state["step"])
    total = cfg.total_steps
    t0 = time.perf_counter()
    traces0 = TRACE_COUNT["train_step"]

    def log(record):
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    for k, stage in enumerate(tr.stages):
        start = tr.stage_start(k)
        if step >= start + stage.steps:
            continue
        optimizer, schedule = make_optimizer(cfg, tr.state["params"], stage)
        if step == start:  # every stage starts with a fresh optimiser state
            tr.state["opt_state"] = tr.place(optimizer.init(tr.state["params"]))
        if stage.mode == "fixed" and not refresh_due(stage, step - start):
            # resumed between refreshes: the cache is a function of the checkpointed Γ
            tr.build_caches(stage, tr.state["params"], scf=False)
        skip_refresh = False
        if step == 0:
            # every loss term of the initial model (prefit and element constants included)
            tr.refresh_stats = RefreshStats()
            if stage.mode == "fixed":
                tr.build_caches(stage, tr.state["params"], scf=True)
            skip_refresh = stage.mode == "fixed"  # just refreshed
            record = tr.evaluate_all(stage, k, optimizer)
            log(dict(step=0, stage=1, mode=stage.mode, devices=tr.n_devices,
                     **refresh_fields(tr.refresh_stats), **tr.take_notes(),
                     wall_s=time.perf_counter() - t0, **record))
            _progress(0, total, t0, "initial model: " + ", ".join(
                f"{key[5:]} {v:.3e}" for key, v in record.items() if key.startswith("loss_")),
                tr.stream)
        while step < start + stage.steps:
            local = step - start
            tr.refresh_stats = RefreshStats()
            if refresh_due(stage, local) and not skip_refresh:
                tr.build_caches(stage, tr.state["params"], scf=True)
            skip_refresh = False
            batch = batch_at(local, tr.buckets, stage.batch_size, cfg.train.seed, k,
                             tr.n_devices)
            bucket = tr.buckets[batch.bucket]
            diag = tr.run_step(stage, k, optimizer, batch.bucket, batch.positions,
                               batch.weights)
            step += 1
            tr.state["step"] = step
            rec = batch_record(diag, batch.weights)
            cycles, matvecs = rec.pop("cycles"), rec.pop("adjoint_matvecs")
            record = dict(step=step, stage=k + 1, mode=stage.mode, lr=float(schedule(local)),
                          bucket=bucket.key, frames=rec.pop("frames"),
                          skipped=rec.pop("skipped"), **refresh_fields(tr.refresh_stats),
                          **tr.take_notes(),
                          mean_cycles=cycles if stage.mode == "scf" else None,
                          adjoint_matvecs=matvecs if stage.mode == "scf" else None,
                          compilations=TRACE_COUNT["train_step"] - traces0,
                          wall_s=time.perf_counter() - t0, **rec)
            log(record)
            if step % max(cfg.train.log_every, 1) == 0 or step == total:
                notes = ", ".join(f"{key[5:]} {v:.3e}" for key, v in record.items()
                                  if key.startswith("loss_"))
                notes += f", skipped {record['skipped']}" if record["skipped"] else ""
                _progress(step, total, t0, f"stage {k + 1} ({stage.mode}), {notes}", tr.stream)
            if checkpoint_due(cfg, step, start + stage.steps, stop_after):
                save_checkpoint(out, tr.state)
            if stop_after is not None and step >= stop_after:
                break
        if stop_after is not None and step >= stop_after:
            break
    model = DeePKSModel(config=tr.mconfig, params=tr.state["params"], basis=tr.basis,
                        base_xc=base_xc,
                        metadata=dict(mode="+".join(s.mode for s in tr.stages), steps=step,
                                      train=list(cfg.data.train),
                                      settings=training_settings(cfg.data.train)))
    save_model(os.path.join(out, MODEL_NAME), model)
    return TrainResult(model=model, steps=step, out=out, wall_s=time.perf_counter() - t0)


def _truncate_log(path: str, step: int) -> None:
    """Drop log lines past the checkpoint's step (they will be redone identically)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
    atomic_write_bytes(path, "".join(lines).encode())

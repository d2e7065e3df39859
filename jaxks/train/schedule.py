"""The stage schedule of a training run: SCF settings, the optimiser of each stage, where each
stage starts in the global step count and which steps refresh densities or checkpoint.

Pure functions of the config (:class:`jaxks.train.config.TrainConfig`) and the step number; the
step loop (:mod:`jaxks.train.loop`) asks them what to do at each step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import optax

from jaxks.deepks.model import freeze_non_trainable
from jaxks.scf import SCFOptions
from jaxks.train.config import ResolvedStage, TrainConfig


def scf_options(cfg: TrainConfig) -> SCFOptions:
    """The :class:`SCFOptions` of the config's [scf] section (Hartree tolerances, cycle cap)."""
    s = cfg.scf
    return SCFOptions(max_cycles=s.max_cycles, e_tol=s.e_tol, comm_tol=s.comm_tol,
                      level_shift=s.level_shift, damping=s.damping)


def refresh_options(cfg: TrainConfig) -> SCFOptions:
    """The :class:`SCFOptions` of a fixed-mode density refresh: :func:`scf_options` with the
    refresh's own tolerances ``train.refresh_e_tol`` and ``train.refresh_comm_tol`` (Hartree;
    why looser is safe there: :class:`jaxks.train.config.TrainSection`)."""
    return dataclasses.replace(scf_options(cfg), e_tol=cfg.train.refresh_e_tol,
                               comm_tol=cfg.train.refresh_comm_tol)


def make_optimizer(cfg: TrainConfig, params, stage: ResolvedStage | None = None):
    """Clipping + Adam with exponential decay, applied to the network only.
    Returns (optimizer, schedule)."""
    stage = stage or cfg.resolved_stages()[0]
    o = cfg.optim
    schedule = optax.exponential_decay(stage.learning_rate,
                                       transition_steps=max(stage.decay_steps, 1),
                                       decay_rate=stage.decay_rate,
                                       end_value=min(o.end_learning_rate, stage.learning_rate))
    opt = optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adam(schedule))
    return freeze_non_trainable(opt, params), schedule


def stage_start(stages: Sequence[ResolvedStage], k: int) -> int:
    """Global step at which stage ``k`` starts: the steps of the stages before it."""
    return sum(s.steps for s in stages[:k])


def refresh_due(stage: ResolvedStage, local: int) -> bool:
    """Whether the fixed-density caches are refreshed (DeePKS-SCF with θ frozen) before the
    stage's ``local``-th step: every ``refresh_every`` steps of a fixed-mode stage."""
    return stage.mode == "fixed" and local % max(stage.refresh_every, 1) == 0


def checkpoint_due(cfg: TrainConfig, step: int, stage_end: int,
                   stop_after: int | None) -> bool:
    """Whether a checkpoint is written after global step ``step`` (completed): every
    ``checkpoint_every`` steps, at the end of each stage and of the run, and where the run is
    told to stop."""
    return (step % max(cfg.train.checkpoint_every, 1) == 0 or step == cfg.total_steps
            or step == stop_after or step == stage_end)

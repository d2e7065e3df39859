"""The stage schedule (:mod:`jaxks.train.schedule`): where stages start, which steps refresh
the fixed-density caches or checkpoint, the learning-rate schedule of each stage, and the SCF
settings of the config."""

import dataclasses

import jax
import numpy as np

import jaxks  # noqa: F401  (float64 on)
from jaxks.deepks.model import ModelConfig, init_model
from jaxks.train.config import OptimSection, StageSection
from jaxks.train.schedule import (checkpoint_due, make_optimizer, refresh_due, scf_options,
                                  stage_start)
from tests.train.conftest import train_config


def staged(out, **train):
    """Three stages of 3, 2 and 4 steps: fixed (refresh every 2), end-to-end, fixed ([train]'s
    refresh_every, 3)."""
    return dataclasses.replace(train_config(out, "fixed", **train), stages=(
        StageSection(mode="fixed", steps=3, refresh_every=2),
        StageSection(mode="scf", steps=2, learning_rate=3e-4),
        StageSection(mode="fixed", steps=4)))


def test_stage_starts_and_refresh_steps(tmp_path):
    stages = staged(tmp_path).resolved_stages()
    assert [stage_start(stages, k) for k in range(4)] == [0, 3, 5, 9]
    assert [t for t in range(3) if refresh_due(stages[0], t)] == [0, 2]
    assert not any(refresh_due(stages[1], t) for t in range(2))  # end-to-end: no cache
    assert [t for t in range(4) if refresh_due(stages[2], t)] == [0, 3]


def test_checkpoint_steps(tmp_path):
    """Every checkpoint_every steps, at the end of a stage and of the run, and at stop_after."""
    cfg = staged(tmp_path, checkpoint_every=4)
    assert cfg.total_steps == 9
    due = [s for s in range(1, 10) if checkpoint_due(cfg, s, stage_end=5, stop_after=7)]
    assert due == [4, 5, 7, 8, 9]
    assert [s for s in range(1, 10) if checkpoint_due(cfg, s, 3, None)] == [3, 4, 8, 9]


def test_learning_rate_schedule_of_each_stage(tmp_path):
    """Exponential decay from the stage's rate (its own, or [optim]'s), by decay_rate every
    decay_steps, floored at end_learning_rate."""
    cfg = dataclasses.replace(staged(tmp_path), optim=OptimSection(
        learning_rate=1e-3, decay_steps=10, decay_rate=0.5, end_learning_rate=2e-4))
    stages = cfg.resolved_stages()
    params = init_model(ModelConfig((1, 3), hidden=(4,), elements=("H",)), jax.random.PRNGKey(0))
    _, first = make_optimizer(cfg, params, stages[0])
    np.testing.assert_allclose([float(first(t)) for t in (0, 10, 20, 30)],
                               [1e-3, 5e-4, 2.5e-4, 2e-4], rtol=1e-12)
    optimizer, second = make_optimizer(cfg, params, stages[1])
    np.testing.assert_allclose([float(second(t)) for t in (0, 5, 10)], [3e-4, 3e-4 * 0.5 ** 0.5, 2e-4],
                               rtol=1e-12)  # 1.5e-4 at step 10, floored

    # the network only: the frozen statistics, prefit and element constants get zero updates
    grads = jax.tree_util.tree_map(np.ones_like, params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert all(np.all(np.asarray(x) != 0) for x in jax.tree_util.tree_leaves(updates.net))
    frozen = dataclasses.replace(updates, net=None)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(frozen))


def test_scf_options_follow_the_config(tmp_path):
    cfg = train_config(tmp_path, scf=dict(max_cycles=17, damping=0.25))
    opts = scf_options(cfg)
    assert (opts.max_cycles, opts.damping, opts.e_tol, opts.comm_tol) == (
        17, 0.25, cfg.scf.e_tol, cfg.scf.comm_tol)

"""The training loop (jaxks.train.loop) on three labelled water monomers (STO-3G, grid 0):
end-to-end and fixed-density gradients of the full per-frame loss against finite differences of
reconverged SCFs, exact resume, unconverged frames counted and left out of updates, and one
compilation per composition.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxks  # noqa: F401  (float64 on)
from jaxks.deepks.correction import DeePKSParams, DeePKSTerm
from jaxks.deepks.io import load_model
from jaxks.implicit import AdjointOptions
from jaxks.scf import core_guess, run_scf
from jaxks.train import loop
from jaxks.train.checkpoint import CHECKPOINT_NAME
from jaxks.xc import get_xc
from tests.train.conftest import copy_record, params_equal, train_config

#: Log fields that legitimately differ between an uninterrupted and a resumed run.
TIMING_FIELDS = ("wall_s", "compilations")


def loss_setup(cfg, records):
    """The model a :func:`loop.train` run with ``cfg`` starts from, and its loss settings
    (built exactly as ``train`` builds them, so compiled code is shared)."""
    mconfig, params, basis = loop.new_model(cfg, records)
    setup = loop.LossSetup(term=DeePKSTerm.for_model(mconfig, basis), xc=get_xc("pbe"),
                           mode=cfg.train.mode, weights=loop.loss_weights(cfg),
                           options=loop.scf_options(cfg),
                           adjoint=AdjointOptions(tol=cfg.scf.adjoint_tol))
    return params, setup


def read_log(out):
    with open(os.path.join(out, loop.LOG_NAME)) as f:
        return [json.loads(line) for line in f if line.strip()]


def without_timings(lines):
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


def with_entry(params, leaf_index, entry, delta):
    """``params`` with one entry of one network weight array shifted by ``delta``."""
    leaves, treedef = jax.tree_util.tree_flatten(params.net)
    leaves = list(leaves)
    leaves[leaf_index] = leaves[leaf_index].at[entry].add(delta)
    return dataclasses.replace(params, net=jax.tree_util.tree_unflatten(treedef, leaves))


def chosen_entries(grad_net, n=3, seed=0):
    """``n`` seeded random (leaf, entry) pairs of the network's weight matrices, each drawn
    among the entries whose gradient is at least a tenth of that matrix's largest (a relative
    error of a near-zero component would measure FD noise, not the gradient)."""
    rng = np.random.default_rng(seed)
    paths = jax.tree_util.tree_flatten_with_path(grad_net)[0]
    kernels = [k for k, (path, _) in enumerate(paths) if "kernel" in jax.tree_util.keystr(path)]
    out = []
    for k in rng.choice(kernels, size=min(n, len(kernels)), replace=False):
        g = np.abs(np.asarray(paths[k][1]))
        candidates = np.argwhere(g >= 0.1 * g.max())
        out.append((int(k), tuple(int(i) for i in candidates[rng.integers(len(candidates))])))
    return out


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", ["scf", "fixed"])
def test_full_loss_gradient_matches_finite_differences(water_records, tmp_path, mode):
    """d(loss)/dθ of one frame with every default term (energy, force, Hamiltonian, eigenvalue,
    eigenvector) vs Richardson-extrapolated central differences.

    "scf": the loss at every displaced θ comes from an SCF reconverged to comm 1e-11 (the
    implicit adjoint gradient must match the self-consistent loss). "fixed": the loss at a frozen
    density (the frame's PBE density), exact up to round-off.
    """
    cfg = train_config(tmp_path, mode)
    params, setup = loss_setup(cfg, water_records)
    frame = water_records[1].frame
    gamma0 = jnp.asarray(water_records[1].base["dm"])
    (loss, aux), grad = loop._loss_and_grad(params, frame, gamma0, setup=setup)
    assert bool(aux["converged"])
    assert {"energy", "force", "hamiltonian", "eigenvector", "eigenvalue"} <= set(aux["terms"])
    assert float(loss) > 0
    if mode == "scf":
        assert int(aux["cycles"]) > 1
    # reconverge from the solution (mode "scf") / stay at the frozen density (mode "fixed")
    start = aux["gamma"] if mode == "scf" else gamma0

    def loss_at(leaf, entry, delta):
        (value, a), _ = loop._loss_and_grad(with_entry(params, leaf, entry, delta), frame,
                                            start, setup=setup)
        assert bool(a["converged"])
        return float(value)

    grad_leaves = jax.tree_util.tree_leaves(grad.net)
    h = 1e-2  # network weights are O(0.1); Richardson removes the O(h²) error
    for leaf, entry in chosen_entries(grad.net):
        d_h = (loss_at(leaf, entry, h) - loss_at(leaf, entry, -h)) / (2 * h)
        d_h2 = (loss_at(leaf, entry, h / 2) - loss_at(leaf, entry, -h / 2)) / h
        fd = (4 * d_h2 - d_h) / 3
        analytic = float(grad_leaves[leaf][entry])
        assert abs(analytic - fd) < 1e-5 * abs(fd), (mode, leaf, entry, analytic, fd)
    # the frozen parts (statistics, prefit, element constants) get gradients but are not
    # trained: the optimiser must zero their updates
    optimizer, _ = loop.make_optimizer(cfg, params)
    updates, _ = optimizer.update(grad, optimizer.init(params), params)
    assert float(jnp.max(jnp.abs(updates.prefit_weight))) == 0.0
    assert float(jnp.max(jnp.abs(updates.shift))) == 0.0
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree_util.tree_leaves(updates.net)) > 0


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("mode", ["scf", "fixed"])
def test_resume_reproduces_uninterrupted_run(water_records, tmp_path, monkeypatch, mode):
    """4 steps (batches of 2 over 3 frames: crossing epochs; fixed mode refreshing Γ at steps
    0 and 3) in one go, or stopped after 2 and resumed: identical parameters and logs, and the
    resumed run computes only the 2 missing steps."""
    uninterrupted = loop.train(train_config(tmp_path / "a", mode), water_records, stream=None)
    assert uninterrupted.steps == 4

    cfg = train_config(tmp_path / "b", mode)
    first = loop.train(cfg, water_records, stream=None, stop_after=2)
    assert first.steps == 2
    assert os.path.exists(tmp_path / "b" / CHECKPOINT_NAME)
    assert [line["step"] for line in read_log(cfg.train.out)] == [1, 2]
    assert not params_equal(first.model.params, uninterrupted.model.params)

    calls = []
    compiled = loop._loss_and_grad

    def counting(*args, **kwargs):
        calls.append(1)
        return compiled(*args, **kwargs)

    monkeypatch.setattr(loop, "_loss_and_grad", counting)
    resumed = loop.train(cfg, water_records, stream=None, resume=True)
    assert resumed.steps == 4
    assert len(calls) == 2 * cfg.train.batch_size  # steps 3 and 4 only

    assert params_equal(resumed.model.params, uninterrupted.model.params)
    saved_a = load_model(os.path.join(tmp_path / "a", loop.MODEL_NAME))
    saved_b = load_model(os.path.join(tmp_path / "b", loop.MODEL_NAME))
    assert params_equal(saved_a.params, saved_b.params)
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [line["step"] for line in log_b] == [1, 2, 3, 4]
    assert without_timings(log_a) == without_timings(log_b)
    assert all(line["skipped"] == 0 and line["frames"] == 2 for line in log_a)
    # training did something
    assert log_a[-1]["loss_total"] != log_a[0]["loss_total"]


# --------------------------------------------------------------------------- unconverged frames
def test_unconverged_frame_is_counted_and_left_out_of_updates(water_records, tmp_path):
    """Frame 1 starts from the core-Hamiltonian density and ``scf.max_cycles`` is set between
    the cycles the other frames need (from their PBE densities) and the cycles it needs: it
    never converges (its warm start is only replaced by a converged density). Every step's
    log counts it as skipped, training completes, the update of step 1 is the Adam step of the
    converged frames' mean gradient alone, and the loss compiles once for the one composition.
    """
    bad = 1
    records = list(water_records)
    records[bad] = copy_record(records[bad], dm=np.asarray(core_guess(records[bad].frame.ints)))

    # cycles each frame needs from its warm start with this model (independent SCF runs)
    params, setup = loss_setup(train_config(tmp_path / "probe"), records)
    cycles = []
    for r in records:
        theta = DeePKSParams(model=params, overlaps=r.frame.overlaps,
                             element_onehot=r.frame.onehot)
        res = run_scf(r.frame.ints, setup.xc, term=setup.term, params=theta,
                      options=setup.options, guess=jnp.asarray(r.base["dm"]), warn=False)
        assert bool(res.converged)
        cycles.append(int(res.cycles))
    max_cycles = max(c for i, c in enumerate(cycles) if i != bad) + 2
    assert cycles[bad] > max_cycles, f"test premise: core guess needs more cycles {cycles}"

    # a seed whose first batch mixes the bad frame with a good one
    seed = next(s for s in range(100) if bad in loop.batch_indices(0, 3, 2, s)
                and len(set(loop.batch_indices(0, 3, 2, s))) == 2)
    steps = 4
    cfg = train_config(tmp_path / "run", scf=dict(max_cycles=max_cycles), steps=steps, seed=seed)
    result = loop.train(cfg, records, stream=None)
    assert result.steps == steps
    assert os.path.exists(tmp_path / "run" / loop.MODEL_NAME)

    log = read_log(cfg.train.out)
    assert [line["step"] for line in log] == list(range(1, steps + 1))
    for step, line in enumerate(log):
        expected = loop.batch_indices(step, 3, 2, seed).count(bad)
        assert line["skipped"] == expected, (step, line)
        assert line["frames"] == 2 - expected
        if line["frames"]:
            assert np.isfinite(line["loss_total"])
        else:
            assert "loss_total" not in line
        assert line["compilations"] == 1  # one composition (H2O): one trace, at the start
    assert sum(line["skipped"] for line in log) >= 1

    # step 1 by hand: Adam on the mean gradient of the converged frames only
    _, setup = loss_setup(cfg, records)
    optimizer, _ = loop.make_optimizer(cfg, params)
    grads, used = None, 0
    for i in loop.batch_indices(0, 3, 2, seed):
        (loss, aux), g = loop._loss_and_grad(params, records[i].frame,
                                             jnp.asarray(records[i].base["dm"]), setup=setup)
        assert bool(aux["converged"]) == (i != bad)
        if i != bad:
            grads = g if grads is None else jax.tree_util.tree_map(jnp.add, grads, g)
            used += 1
    assert used == 1
    updates, _ = optimizer.update(jax.tree_util.tree_map(lambda x: x / used, grads),
                                  optimizer.init(params), params)
    expected = optax.apply_updates(params, updates)

    one = loop.train(train_config(tmp_path / "one", scf=dict(max_cycles=max_cycles), steps=1,
                                  seed=seed), records, stream=None)
    for a, b in zip(jax.tree_util.tree_leaves(one.model.params),
                    jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=0)
    assert not params_equal(one.model.params, params)

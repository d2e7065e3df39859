"""The trainer (jaxks.train.loop, step, predict, buckets) on labelled water monomers and dimers
(STO-3G, grid 0): gradients of the full per-frame loss against finite differences of reconverged
SCFs (end-to-end) and at frozen densities (fixed), the cached fixed-density prediction against the
uncached evaluation, the batched step against the per-frame sum, exact resume in every mode and
across stages, unconverged frames counted and left out, one compilation per bucket, and the
two-device sharded step against the one-device step.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxks  # noqa: F401  (float64 on)
from jaxks import linalg
from jaxks.deepks.correction import DeePKSParams, DeePKSTerm, deepks_forces
from jaxks.deepks.io import load_model
from jaxks.forces import forces as base_forces
from jaxks.scf import core_guess, finalize, run_scf
from jaxks.train import loop, step as step_mod
from jaxks.train.buckets import batch_at, make_buckets, stack
from jaxks.train.checkpoint import CHECKPOINT_NAME
from jaxks.train.config import StageSection
from jaxks.train.losses import loss_terms
from jaxks.train.predict import fixed_cache, predict_fixed
from tests.train.conftest import (copy_record, fixed_cache_jit, params_equal, perturbed,
                                  train_config)

#: Log fields that legitimately differ between an uninterrupted and a resumed run.
TIMING_FIELDS = ("wall_s", "compilations", "refresh_s")


def loss_setup(cfg, records, mode=None):
    """The model a :func:`loop.train` run with ``cfg`` starts from and the loss settings of the
    bucket of ``records[0]`` (built exactly as ``train`` builds them)."""
    tr = loop.Trainer(cfg, records, "pbe", None)
    stage = tr.stages[0]
    if mode is not None:
        stage = dataclasses.replace(stage, mode=mode)
    return tr.state["params"], tr.loss_setup(stage, tr.buckets[0])


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
    """``n`` seeded random (leaf, entry) pairs of the network's weight matrices among entries
    whose gradient is at least a tenth of that matrix's largest (FD noise otherwise)."""
    rng = np.random.default_rng(seed)
    paths = jax.tree_util.tree_flatten_with_path(grad_net)[0]
    kernels = [k for k, (path, _) in enumerate(paths) if "kernel" in jax.tree_util.keystr(path)]
    out = []
    for k in rng.choice(kernels, size=min(n, len(kernels)), replace=False):
        g = np.abs(np.asarray(paths[k][1]))
        candidates = np.argwhere(g >= 0.1 * g.max())
        out.append((int(k), tuple(int(i) for i in candidates[rng.integers(len(candidates))])))
    return out


_frame_value_and_grad = jax.jit(jax.value_and_grad(step_mod.frame_loss, has_aux=True),
                                static_argnames=("setup",))


def frame_inputs(record, setup, gamma):
    """Per-frame loss inputs: the fixed-density cache at ``gamma``, or the frame itself."""
    if setup.mode == "fixed":
        return fixed_cache_jit(record.frame, gamma, setup=setup.predict)
    return record.frame


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", ["scf", "fixed"])
def test_full_loss_gradient_matches_finite_differences(water_records, tmp_path, mode):
    """d(loss)/dθ of one frame with every default term (energy, force, Hamiltonian, eigenvalue,
    eigenvector) vs Richardson-extrapolated central differences.

    "scf": the loss at every displaced θ comes from an SCF reconverged to comm 1e-11 (the
    implicit adjoint gradient must match the self-consistent loss). "fixed": the loss at a frozen
    density (the frame's PBE density) through the cached step, exact up to round-off.
    """
    cfg = train_config(tmp_path, mode)
    params, setup = loss_setup(cfg, water_records)
    record = water_records[1]
    gamma0 = jnp.asarray(record.base["dm"])
    inputs, target = frame_inputs(record, setup, gamma0), record.frame.target
    (loss, aux), grad = _frame_value_and_grad(params, inputs, target, gamma0, setup=setup)
    assert bool(aux["converged"])
    assert {"energy", "force", "hamiltonian", "eigenvector", "eigenvalue"} <= set(aux["terms"])
    assert float(loss) > 0
    if mode == "scf":
        assert int(aux["cycles"]) > 1
    start = aux["gamma"] if mode == "scf" else gamma0

    def loss_at(leaf, entry, delta):
        (value, a), _ = _frame_value_and_grad(with_entry(params, leaf, entry, delta), inputs,
                                              target, start, setup=setup)
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


# --------------------------------------------------------------------------- fixed-density cache
def test_cached_fixed_prediction_equals_uncached_evaluation(water_records, tmp_path):
    """predict_fixed on the θ-independent cache = one full Fock build (h + J + V_xc + V_δ) and
    diagonalisation at the frozen Γ (jaxks.scf.finalize), with forces from jaxks.forces (W of
    the corrected Fock matrix) plus the DeePKS term; and so the same loss, to 1e-10."""
    cfg = train_config(tmp_path, "fixed")
    params, setup = loss_setup(cfg, water_records)
    params = perturbed(params)  # a correction of a size that matters
    record = water_records[2]
    frame = record.frame
    gamma = jnp.asarray(record.base["dm"])
    cache = fixed_cache_jit(frame, gamma, setup=setup.predict)
    pred = jax.jit(predict_fixed, static_argnames=("setup",))(params, cache, setup=setup.predict)

    term = setup.predict.term
    theta = DeePKSParams(model=params, overlaps=frame.overlaps, element_onehot=frame.onehot)
    res = finalize(frame.ints, theta, gamma, setup.predict.xc, term, eigh=linalg.eigh)
    ref = dict(energy=res.energy, fock=res.fock, mo_energy=res.mo_energy, mo_coeff=res.mo_coeff,
               gamma=res.gamma,
               forces=base_forces(res, frame.ints, frame.fints, setup.predict.xc)
               + deepks_forces(term, res.gamma, theta, frame.proj_derivs))
    assert abs(float(res.parts.term)) > 1e-4  # the correction is not negligible
    np.testing.assert_allclose(float(pred["energy"]), float(ref["energy"]), rtol=0, atol=1e-10)
    for key in ("fock", "mo_energy", "forces"):
        np.testing.assert_allclose(np.asarray(pred[key]), np.asarray(ref[key]), rtol=0,
                                   atol=1e-10, err_msg=key)
    n_occ = frame.ints.n_occ
    lp = loss_terms(pred, frame.target, setup.weights, frame.window, frame.n_atoms, n_occ)
    lr = loss_terms(ref, frame.target, setup.weights, frame.window, frame.n_atoms, n_occ)
    for key in lr:
        np.testing.assert_allclose(float(lp[key]), float(lr[key]), rtol=1e-10, atol=1e-14,
                                   err_msg=key)


# --------------------------------------------------------------------------- batched step
@pytest.mark.parametrize("mode,chunk", [("fixed", 0), ("scf", 0), ("scf", 2)])
def test_batched_loss_and_gradient_equal_per_frame_mean(water_records, tmp_path, mode, chunk):
    """The vmapped batch (weights 1, 1, 0) gives the mean of the first two frames' per-frame
    losses and gradients (1e-10); the zero-weight filler frame does not enter. Also when the
    batch runs as sequential chunks of ``chunk`` vmapped frames (``frames_per_vmap``)."""
    cfg = train_config(tmp_path, mode)
    params, setup = loss_setup(cfg, water_records)
    setup = dataclasses.replace(setup, frames_per_vmap=chunk)
    params = perturbed(params, scale=0.1)
    guesses = [jnp.asarray(r.base["dm"]) for r in water_records]
    inputs = [frame_inputs(r, setup, g) for r, g in zip(water_records, guesses)]
    targets = [r.frame.target for r in water_records]
    per = [_frame_value_and_grad(params, i, t, g, setup=setup)
           for i, t, g in zip(inputs, targets, guesses)]
    batched = jax.jit(step_mod.batch_loss_and_grads, static_argnames=("setup",))
    stacked_inputs = stack(inputs) if mode == "fixed" else stack(
        [dataclasses.replace(r.frame, target={}) for r in water_records])
    loss, grad, aux = batched(params, stacked_inputs, stack(targets), stack(guesses),
                              jnp.array([1.0, 1.0, 0.0]), setup=setup)
    assert bool(np.all(aux["ok"]))
    expected_loss = 0.5 * (float(per[0][0][0]) + float(per[1][0][0]))
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-10)
    expected = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), per[0][1], per[1][1])
    # the adjoint solves stop at a residual relative to the whole gradient (a batch's vmapped
    # solve iterates until its slowest frame is done), so a small leaf — a one-element bias of
    # 3e-6 next to entries of 4e-3 — is held to the scale of the largest entry, not its own
    # (it differed by 2.2e-10 of itself once, on a loaded machine)
    scale = max(float(np.max(np.abs(np.asarray(b)))) for b in jax.tree_util.tree_leaves(expected))
    for a, b in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10 * scale)


# --------------------------------------------------------------------------- resume
def staged_config(out):
    """Fixed-density pretraining (2 steps), then end-to-end fine-tuning (2 steps)."""
    return dataclasses.replace(train_config(out, "fixed"), stages=(
        StageSection(mode="fixed", steps=2, refresh_every=1),
        StageSection(mode="scf", steps=2, learning_rate=3e-4, eigenvector=0.0)))


@pytest.mark.parametrize("mode,stop", [("fixed", 2), ("scf", 2), ("staged", 2), ("staged", 3)])
def test_resume_reproduces_uninterrupted_run(water_records, tmp_path, mode, stop):
    """4 steps (batches of 2 over 3 frames: crossing epochs; fixed mode refreshing Γ at steps
    0 and 3) in one go, or stopped after ``stop`` and resumed: identical parameters and logs
    (staged: stopped at the stage boundary and inside the second stage)."""
    make = staged_config if mode == "staged" else (lambda out: train_config(out, mode))
    uninterrupted = loop.train(make(tmp_path / "a"), water_records, stream=None)
    assert uninterrupted.steps == 4

    cfg = make(tmp_path / "b")
    first = loop.train(cfg, water_records, stream=None, stop_after=stop)
    assert first.steps == stop
    assert os.path.exists(tmp_path / "b" / CHECKPOINT_NAME)
    assert [line["step"] for line in read_log(cfg.train.out)] == list(range(stop + 1))
    assert not params_equal(first.model.params, uninterrupted.model.params)

    resumed = loop.train(cfg, water_records, stream=None, resume=True)
    assert resumed.steps == 4
    assert params_equal(resumed.model.params, uninterrupted.model.params)
    saved_a = load_model(os.path.join(tmp_path / "a", loop.MODEL_NAME))
    saved_b = load_model(os.path.join(tmp_path / "b", loop.MODEL_NAME))
    assert params_equal(saved_a.params, saved_b.params)
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [line["step"] for line in log_b] == [0, 1, 2, 3, 4]
    assert without_timings(log_a) == without_timings(log_b)
    # step 0 evaluates every term of the initial model before any update
    assert log_a[0]["frames"] == len(water_records) and "loss_total" in log_a[0]
    # 3 frames in batches of 2: one full batch and one of 1 frame + a weight-0 filler per epoch
    assert all(line["skipped"] == 0 for line in log_a[1:])
    assert [line["frames"] for line in log_a[1:3]] in ([2, 1], [1, 2])
    assert log_a[-1]["loss_total"] != log_a[1]["loss_total"]  # training did something
    if mode == "staged":
        assert [line.get("stage") for line in log_a] == [1, 1, 1, 2, 2]
        assert log_a[3]["mean_cycles"] >= 1 and log_a[1]["mean_cycles"] is None
        assert log_a[3]["adjoint_matvecs"] > 0 and log_a[1]["adjoint_matvecs"] is None
        assert "loss_eigenvector" not in log_a[3] and "loss_eigenvector" in log_a[1]


# --------------------------------------------------------------------------- unconverged frames
def test_unconverged_frame_is_counted_and_left_out_of_updates(water_records, tmp_path):
    """Frame 1 starts from the core-Hamiltonian density and ``scf.max_cycles`` is set between
    the cycles the other frames need (from their PBE densities) and the cycles it needs: it
    never converges (its warm start is only replaced by a converged density). Every step's
    log counts it as skipped, training completes, and step 1's update is the Adam step of the
    converged frames' mean gradient alone.
    """
    bad = 1
    records = list(water_records)
    records[bad] = copy_record(records[bad], dm=np.asarray(core_guess(records[bad].frame.ints)))

    params, setup = loss_setup(train_config(tmp_path / "probe"), records)
    cycles = []
    for r in records:
        theta = DeePKSParams(model=params, overlaps=r.frame.overlaps,
                             element_onehot=r.frame.onehot)
        res = run_scf(r.frame.ints, setup.predict.xc, term=setup.predict.term, params=theta,
                      options=setup.predict.options, guess=jnp.asarray(r.base["dm"]), warn=False)
        assert bool(res.converged)
        cycles.append(int(res.cycles))
    max_cycles = max(c for i, c in enumerate(cycles) if i != bad) + 2
    assert cycles[bad] > max_cycles, f"test premise: core guess needs more cycles {cycles}"

    buckets = make_buckets(records)
    # a seed whose first batch mixes the bad frame with a good one
    seed = next(s for s in range(100)
                if set(batch_at(0, buckets, 2, s).positions[:2].tolist()) == {bad, 0}
                and batch_at(0, buckets, 2, s).weights.sum() == 2)
    steps = 3
    cfg = train_config(tmp_path / "run", scf=dict(max_cycles=max_cycles), steps=steps, seed=seed)
    result = loop.train(cfg, records, stream=None)
    assert result.steps == steps
    log = read_log(cfg.train.out)
    assert log[0]["skipped"] == 1 and log[0]["frames"] == 2  # step-0 evaluation
    for step, line in enumerate(log[1:]):
        batch = batch_at(step, buckets, 2, seed)
        expected = int(np.sum((batch.positions == bad) & (batch.weights > 0)))
        assert line["skipped"] == expected, (step, line)
        assert line["frames"] == int(np.sum(batch.weights > 0)) - expected
        if line["frames"]:
            assert np.isfinite(line["loss_total"])
        else:
            assert "loss_total" not in line
    assert log[1]["skipped"] == 1

    # step 1 by hand: Adam on the gradient of the converged frame alone
    _, setup = loss_setup(cfg, records)
    optimizer, _ = loop.make_optimizer(cfg, params)
    good = [p for p in batch_at(0, buckets, 2, seed).positions[:2] if p != bad]
    (_, aux), g = _frame_value_and_grad(params, records[good[0]].frame,
                                        records[good[0]].frame.target,
                                        jnp.asarray(records[good[0]].base["dm"]), setup=setup)
    assert bool(aux["converged"])
    updates, _ = optimizer.update(g, optimizer.init(params), params)
    expected = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    one = loop.train(train_config(tmp_path / "one", scf=dict(max_cycles=max_cycles), steps=1,
                                  seed=seed), records, stream=None)
    for a, b in zip(jax.tree_util.tree_leaves(one.model.params),
                    jax.tree_util.tree_leaves(expected)):
        # (the batched and the single-frame SCF round differently: ~1e-9 relative after Adam)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-12)
    assert not params_equal(one.model.params, params)


# --------------------------------------------------------------------------- density refresh
# --------------------------------------------------------------------------- end-to-end batch 8
BATCH8_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    import jaxks
    from jaxks.data.labels import LabelSettings
    from jaxks.integrals.projectors import default_basis
    from jaxks.train import loop
    from jaxks.train.config import LossSection
    from jaxks.train.frames import load_records
    from jaxks.train.step import lapack_batch_hang_risk
    from tests.train.conftest import label_builtin, train_config

    folder = label_builtin(sys.argv[1] + "/labels", "water_monomers", 3,
                           LabelSettings(basis="def2-svp", grid_level=0))
    records = load_records([folder], default_basis(), ("H", "O"), with_forces=False)
    cfg = train_config(sys.argv[1] + "/run", "scf", steps=2, batch_size=8)
    cfg = dataclasses.replace(cfg, loss=LossSection(force=0.0))
    res = loop.train(cfg, records, stream=sys.stderr)
    print("steps", res.steps, "risk", lapack_batch_hang_risk() is not None)
""")


def test_batch8_end_to_end_step_completes(tmp_path):
    """Two end-to-end steps of batch 8 on def2-SVP water monomers (grid 0) finish. Without
    the guard this is the configuration that deadlocks under jaxlib 0.10.1 on a CPU (nao 24:
    each frame-batched eigh of 8 frames, ≈ 5·24³·8 = 5.5e5 FLOP, is split over the thread
    pool; ``benchmarks/jax_lapack_hang.py --n 24 --batch 8`` hangs). With the risk present the
    trainer says why on its stream and vmaps 2 frames at a time. Run in a subprocess with a
    time limit, so that a hang fails the test instead of blocking the suite."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", BATCH8_SCRIPT, str(tmp_path)], cwd=root,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[:2] == ["steps", "2"], proc.stdout
    log = read_log(tmp_path / "run")
    if last[3] == "True":  # the guard says why, on the stream and in the log
        assert "end-to-end frames vmapped 2 at a time instead of 8" in proc.stderr
        assert "vmapped 2 at a time" in log[0]["notes"][0]
    assert [line["frames"] for line in log[1:]] == [3, 3]


# --------------------------------------------------------------------------- compilations
def test_one_compilation_per_bucket(water_records, water_dimer_records, tmp_path):
    """Monomers and dimers form two buckets: the fixed-mode run traces its step exactly twice
    (at each bucket's first step, the step-0 evaluation included) and never again."""
    loop._COMPILED.clear()
    records = list(water_records) + list(water_dimer_records)
    cfg = train_config(tmp_path, "fixed", steps=6, refresh_every=4)
    before = step_mod.TRACE_COUNT["train_step"]
    loop.train(cfg, records, stream=None)
    log = read_log(tmp_path)
    assert step_mod.TRACE_COUNT["train_step"] - before == 2
    assert {line["bucket"] for line in log[1:]} == {r.key for r in records}
    assert all(line["compilations"] == 2 for line in log[1:])


# --------------------------------------------------------------------------- devices
SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import jaxks
    from jaxks.data.store import Dataset
    from jaxks.integrals.projectors import default_basis
    from jaxks.train import loop
    from jaxks.train.frames import load_records
    from tests.train.conftest import train_config

    assert len(jax.devices()) == 2, jax.devices()
    records = load_records([sys.argv[1]], default_basis(), ("H", "O"))
    out = {}
    for name, devices in (("two", None), ("one", jax.devices()[:1])):
        cfg = train_config(sys.argv[2] + "/" + name, "fixed", steps=3, batch_size=2)
        res = loop.train(cfg, records, stream=None, devices=devices)
        out[name] = [float(v) for x in jax.tree_util.tree_leaves(res.model.params)
                     for v in x.ravel()]
    print(json.dumps(out))
""")


def test_two_device_sharded_step_equals_one_device_step(water_dataset, tmp_path):
    """With two forced host devices the batch's frame axis is sharded over both; three
    fixed-mode steps give the same parameters as on one device (1e-10)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, water_dataset, str(tmp_path)],
                          env=env, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["two"], out["one"], rtol=1e-10, atol=1e-12)
    logs = [read_log(tmp_path / n) for n in ("one", "two")]
    assert logs[0][0]["devices"] == 1 and logs[1][0]["devices"] == 2
    assert len(logs[0]) == len(logs[1]) == 4
    for a, b in zip(*logs):
        for k, v in a.items():
            if k.startswith("loss_"):
                np.testing.assert_allclose(b[k], v, rtol=1e-10)

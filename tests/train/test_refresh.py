"""The density refresh of fixed-density training (:mod:`jaxks.train.refresh`), as the trainer
runs it: against per-frame :func:`jaxks.scf.run_scf` from the same starts, with the MINAO
fallback and the unconverged count."""

import jax.numpy as jnp
import numpy as np

import jaxks  # noqa: F401  (float64 on)
from jaxks.deepks.correction import DeePKSParams
from jaxks.scf import core_guess, run_scf
from jaxks.train import loop
from tests.train.conftest import fixed_cache_jit, perturbed, train_config


def test_refresh_equals_per_frame_scf_and_falls_back_to_minao(water_records, tmp_path):
    """A fixed-mode density refresh (one vmapped DeePKS-SCF of the bucket, each frame from its
    last density) gives every frame the density of its own ``run_scf`` from the same start (to
    the SCF tolerance), and the cache reusing the refresh's Fock build equals
    :func:`fixed_cache` at that density. Frame 1 starts from the core-Hamiltonian density,
    which needs more cycles than ``train.refresh_cycles`` allows: it is run again from its
    MINAO guess, counted as a fallback, and gets ``run_scf``'s density from MINAO. With
    ``scf.max_cycles`` below MINAO's cycles too, it is counted unconverged and keeps its start.
    """
    bad = 1
    records = list(water_records)
    cfg = train_config(tmp_path / "probe", "fixed")
    tr = loop.Trainer(cfg, records, "pbe", None)
    params = perturbed(tr.state["params"], scale=0.05)
    starts = [jnp.asarray(r.base["dm"]) for r in records]
    starts[bad] = core_guess(records[bad].frame.ints)

    def reference(i, guess, options):
        r = records[i]
        theta = DeePKSParams(model=params, overlaps=r.frame.overlaps,
                             element_onehot=r.frame.onehot)
        return run_scf(r.frame.ints, tr.xc, term=tr.term, params=theta, options=options,
                       guess=guess, warn=False)

    refs = [reference(i, g, tr.options) for i, g in enumerate(starts)]
    minao = reference(bad, records[bad].frame.ints.guess, tr.options)
    assert all(bool(r.converged) for r in refs + [minao])
    good = max(int(r.cycles) for i, r in enumerate(refs) if i != bad)
    assert int(refs[bad].cycles) > good + 2 and int(minao.cycles) > good + 1, \
        f"test premise: {[int(r.cycles) for r in refs]}, MINAO {int(minao.cycles)}"

    def refresh(**settings):
        scf = settings.pop("scf", {})
        cfg = train_config(tmp_path / "run", "fixed", scf=scf, **settings)
        tr = loop.Trainer(cfg, records, "pbe", None)
        key = tr.buckets[0].key
        tr.state["gammas"][key] = jnp.stack(starts)
        unconverged = tr.build_caches(tr.stages[0], params, scf=True)
        assert unconverged == tr.refresh_stats.unconverged
        return tr, tr.data[0].inputs

    tr, cache = refresh(refresh_cycles=good + 2)
    assert (tr.refresh_stats.frames, tr.refresh_stats.fallbacks,
            tr.refresh_stats.unconverged) == (3, 1, 0)
    setup = tr.predict_setup(tr.stages[0])
    assert setup.with_forces
    for i, r in enumerate(records):
        expected = minao if i == bad else refs[i]
        np.testing.assert_allclose(np.asarray(cache.gamma[i]), np.asarray(expected.gamma),
                                   atol=1e-8)
        direct = fixed_cache_jit(r.frame, cache.gamma[i], setup=setup)
        for name in ("fock_base", "energy_base", "forces_base", "x"):
            np.testing.assert_allclose(np.asarray(getattr(cache, name)[i]),
                                       np.asarray(getattr(direct, name)), atol=1e-10,
                                       err_msg=name)

    tr, cache = refresh(refresh_cycles=0, scf=dict(max_cycles=good + 1))
    assert (tr.refresh_stats.fallbacks, tr.refresh_stats.unconverged) == (1, 1)
    np.testing.assert_allclose(np.asarray(cache.gamma[bad]), np.asarray(starts[bad]), atol=1e-14)
    np.testing.assert_allclose(np.asarray(cache.gamma[0]), np.asarray(refs[0].gamma), atol=1e-8)
    direct = fixed_cache_jit(records[bad].frame, starts[bad], setup=setup)
    np.testing.assert_allclose(np.asarray(cache.fock_base[bad]), np.asarray(direct.fock_base),
                               atol=1e-10)


def test_loose_refresh_tolerances_and_cached_start(water_records, tmp_path):
    """[train] refresh_e_tol, refresh_comm_tol govern the refresh alone: at the defaults (1e-7,
    1e-4) it takes fewer cycles than at [scf]'s tight ones and lands within the distance the
    commutator tolerance allows (measured 1e-5 for the water model on real frames; bound
    10 × refresh_comm_tol), the base energy second order in that distance. A second refresh
    started from the stored F_base, E_base of the first (no Fock build at its start) gives the
    densities and caches of one that builds F[Γ] first."""
    import dataclasses
    from jaxks.train.config import TrainConfig

    records = list(water_records)
    default = TrainConfig().train
    starts = jnp.stack([jnp.asarray(r.base["dm"]) for r in records])

    def trainer(name, **tols):
        tr = loop.Trainer(train_config(tmp_path / name, "fixed", **tols), records, "pbe", None)
        tr.state["gammas"][tr.buckets[0].key] = starts
        return tr

    tight = trainer("tight")
    loose = trainer("loose", refresh_e_tol=default.refresh_e_tol,
                    refresh_comm_tol=default.refresh_comm_tol)
    assert loose.refresh_options == dataclasses.replace(loose.options, e_tol=1e-7,
                                                        comm_tol=1e-4)
    params = perturbed(tight.state["params"], scale=0.05)
    for tr in (tight, loose):
        assert tr.build_caches(tr.stages[0], params, scf=True) == 0
    a, b = tight.data[0].inputs, loose.data[0].inputs
    assert loose.refresh_stats.cycles < tight.refresh_stats.cycles
    distance = float(jnp.max(jnp.abs(a.gamma - b.gamma)))
    assert 1e-10 < distance < 10 * default.refresh_comm_tol, distance
    assert float(jnp.max(jnp.abs(a.energy_base - b.energy_base))) < 1e-6

    # the second refresh: from the stored bases, and from the same Γ without them
    moved = perturbed(params, scale=0.02, seed=2)
    key = loose.buckets[0].key
    gamma, stored = loose.state["gammas"][key], dict(loose.state["bases"][key])
    assert bool(jnp.all(stored["energy"] != 0))
    loose.build_caches(loose.stages[0], moved, scf=True)
    with_start = loose.data[0].inputs
    loose.state["gammas"][key] = gamma
    loose.state["bases"][key] = dict(fock=stored["fock"],
                                     energy=jnp.zeros_like(stored["energy"]))
    loose.build_caches(loose.stages[0], moved, scf=True)
    built = loose.data[0].inputs
    for name in ("gamma", "fock_base", "energy_base", "forces_base"):
        np.testing.assert_allclose(np.asarray(getattr(with_start, name)),
                                   np.asarray(getattr(built, name)), atol=1e-10, err_msg=name)


def test_end_to_end_step_invalidates_the_cached_start(water_records, tmp_path):
    """fixed → end-to-end → fixed: the refresh after an end-to-end step starts from the Γ that
    step left and must not reuse the F_base, E_base the earlier refresh cached (they belong to
    the old Γ). Its results equal those of a from-scratch refresh of the same Γ bit for bit; the
    same refresh started from the stale cache lands elsewhere (within the loose refresh
    tolerances), so this comparison can fail."""
    import dataclasses
    from jaxks.train.config import StageSection, TrainConfig

    default = TrainConfig().train
    tols = dict(refresh_e_tol=default.refresh_e_tol, refresh_comm_tol=default.refresh_comm_tol)
    cfg = dataclasses.replace(train_config(tmp_path / "a", "fixed", **tols), stages=(
        StageSection(mode="fixed", steps=1, refresh_every=1),
        StageSection(mode="scf", steps=1, learning_rate=3e-2, eigenvector=0.0),
        StageSection(mode="fixed", steps=1, refresh_every=1)))
    records = list(water_records)
    tr = loop.Trainer(cfg, records, "pbe", None)
    fixed, scf, fixed_again = tr.stages
    key = tr.buckets[0].key
    params = perturbed(tr.state["params"], scale=0.05)
    tr.state["params"] = params
    assert tr.build_caches(fixed, params, scf=True) == 0
    stale = dict(tr.state["bases"][key])
    gamma_before = tr.state["gammas"][key]
    assert bool(jnp.all(stale["energy"] != 0))

    # one end-to-end step over every frame moves Γ and the parameters
    optimizer, _ = loop.make_optimizer(cfg, params, scf)
    tr.state["opt_state"] = tr.place(optimizer.init(params))
    n = len(records)
    width = loop.padded_batch_size(n, tr.n_devices)
    positions = np.concatenate([np.arange(n), np.zeros(width - n, int)])
    weights = np.concatenate([np.ones(n), np.zeros(width - n)])
    tr.run_step(scf, 1, optimizer, 0, positions, weights)
    gamma_after = tr.state["gammas"][key]
    assert float(jnp.max(jnp.abs(gamma_after - gamma_before))) > 1e-6
    assert bool(jnp.all(tr.state["bases"][key]["energy"] == 0))  # the cache is invalidated

    moved = tr.state["params"]
    tr.build_caches(fixed_again, moved, scf=True)
    after = tr.data[0].inputs

    fresh = loop.Trainer(cfg, records, "pbe", None)
    fresh.state["gammas"][key] = gamma_after
    fresh.build_caches(fixed_again, moved, scf=True)
    scratch = fresh.data[0].inputs
    for name in ("gamma", "fock_base", "energy_base"):
        np.testing.assert_array_equal(np.asarray(getattr(after, name)),
                                      np.asarray(getattr(scratch, name)), err_msg=name)

    # the stale cache (F_base, E_base at the Γ before the end-to-end step) as the start
    fresh.state["gammas"][key] = gamma_after
    fresh.state["bases"][key] = stale
    fresh.build_caches(fixed_again, moved, scf=True)
    wrong = fresh.data[0].inputs
    assert float(jnp.max(jnp.abs(wrong.gamma - scratch.gamma))) > 1e-10

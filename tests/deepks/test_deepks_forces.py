"""DeePKS-SCF forces and model-parameter gradients through the SCF.

* base forces (grid response on) + the DeePKS term equal central finite differences of the
  self-consistent DeePKS total energy (grids rebuilt at each displaced geometry) and sum to 0;
* the gradient of a loss on the self-consistent DeePKS energy, eigenvalues and forces with
  respect to model parameters equals finite differences of reconverged SCFs;
* ``jaxks scf --model`` runs DeePKS-SCF from a model file.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.deepks import deepks_forces, deepks_params
from jaxks.integrals.projectors import projector_derivatives, projector_overlaps
from jaxks.forces import force_integrals, forces
from jaxks.implicit import AdjointOptions, solve
from jaxks.integrals import integrals_from_pyscf, make_grids
from jaxks.scf import SCFOptions, run_scf
from tests import geometries as geo
from tests.conftest import make_system
from tests.deepks.test_scf_deepks import random_model

AUX = "def2-universal-jkfit"
TIGHT = SCFOptions(e_tol=1e-13, comm_tol=1e-10, max_cycles=200)


def _energy(coords_bohr, term, params):
    system = make_system(geo.WATER, basis="def2-svp", grid_level=0).replace(coords=coords_bohr)
    mol = system.to_pyscf()
    ints = integrals_from_pyscf(mol, AUX, 0, grids=make_grids(mol, 0))
    theta = deepks_params(params, projector_overlaps(mol))
    res = run_scf(ints, "pbe", term=term, params=theta, options=TIGHT)
    assert bool(res.converged)
    return res, ints, theta, mol


def test_deepks_forces_match_finite_differences_of_scf_energy():
    # output scale 10: a correction of ~1e-3 Eh, so the DeePKS force is not negligible
    term, params = random_model(seed=3, hidden=(16, 16), output_scale=10.0)
    x0 = make_system(geo.WATER).coords
    res, ints, theta, mol = _energy(x0, term, params)
    assert abs(float(res.parts.term)) > 1e-4
    fints = force_integrals(mol, AUX, grids=make_grids(mol, 0))
    f = np.asarray(forces(res, ints, fints, "pbe", grid_response=True)
                   + deepks_forces(term, res.gamma, theta, projector_derivatives(mol)))
    np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-8)
    h = 1e-3
    for atom, axis in [(0, 2), (1, 1), (2, 2)]:
        e = []
        for sign in (1, -1):
            x = x0.copy()
            x[atom, axis] += sign * h
            e.append(float(_energy(x, term, params)[0].energy))
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(f[atom, axis] - fd) < 1e-5, (atom, axis, f[atom, axis], fd)


def test_model_parameter_gradient_through_scf():
    """d/dθ of a loss on E, HOMO/LUMO and forces of the self-consistent DeePKS solution."""
    term, params = random_model(seed=5, hidden=(16, 16))
    system = make_system(geo.WATER, basis="def2-svp", grid_level=0)
    mol = system.to_pyscf()
    ints = integrals_from_pyscf(mol, AUX, 0)
    fints = force_integrals(mol, AUX)
    pdata, pder = projector_overlaps(mol), projector_derivatives(mol)
    leaves, treedef = jax.tree_util.tree_flatten(params.net)
    rng = np.random.default_rng(0)
    picks = []  # (leaf index, flat index): three random network weights
    for _ in range(3):
        k = int(rng.integers(len(leaves)))
        picks.append((k, int(rng.integers(leaves[k].size))))

    def with_values(vals):
        new = [l.ravel() for l in leaves]
        for (k, i), v in zip(picks, vals):
            new[k] = new[k].at[i].set(v)
        net = jax.tree_util.tree_unflatten(treedef, [n.reshape(l.shape)
                                                    for n, l in zip(new, leaves)])
        return dataclasses.replace(params, net=net)

    def loss(vals, solver):
        theta = deepks_params(with_values(vals), pdata)
        r = solver(theta)
        f = forces(r, ints, fints, "pbe") + deepks_forces(term, r.gamma, theta, pder)
        return r.energy + r.homo ** 2 + r.lumo ** 2 + jnp.sum(f ** 2)

    implicit = lambda th: solve(ints, "pbe", term=term, params=th, options=TIGHT,  # noqa: E731
                                adjoint=AdjointOptions(tol=1e-12))
    v0 = jnp.asarray([leaves[k].ravel()[i] for k, i in picks])
    g = np.asarray(jax.grad(loss)(v0, implicit))
    forward = lambda th: run_scf(ints, "pbe", term=term, params=th, options=TIGHT)  # noqa: E731

    def central(k, step):
        vp, vm = np.asarray(v0).copy(), np.asarray(v0).copy()
        vp[k] += step
        vm[k] -= step
        return (float(loss(jnp.asarray(vp), forward))
                - float(loss(jnp.asarray(vm), forward))) / (2 * step)

    h = 1e-3
    fd = np.array([(4 * central(k, h / 2) - central(k, h)) / 3 for k in range(3)])
    assert np.max(np.abs(fd)) > 1e-5, fd
    # relative 1e-5, measured against the gradient's scale (a component can be ~0)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.max(np.abs(fd)))


def test_cli_scf_with_model(tmp_path, capsys):
    import json

    from jaxks.cli import main
    from jaxks.deepks import DeePKSModel, save_model
    from jaxks.integrals.projectors import default_basis

    term, params = random_model(seed=7, hidden=(16, 16))
    path = tmp_path / "model.npz"
    save_model(path, DeePKSModel(config=term.config, params=params, basis=default_basis(),
                                 base_xc="pbe"))
    xyz = tmp_path / "w.xyz"
    xyz.write_text(make_system(geo.WATER).to_xyz())
    rc = main(["scf", str(xyz), "--grid-level", "0", "--model", str(path), "--forces", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["converged"] and out["model"] == str(path)
    res, ints, theta, mol = _energy(make_system(geo.WATER).coords, term, params)
    assert abs(out["energy_eh"] - float(res.energy)) < 1e-7
    assert abs(out["energy_parts_eh"]["correction"] - float(res.parts.term)) < 1e-7
    assert len(out["forces_hartree_per_bohr"]) == 3

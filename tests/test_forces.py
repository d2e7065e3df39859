"""Analytic forces (jaxks.forces, jaxks.grid_weights) against PySCF's analytic gradients of the same
density-fitted RKS on the same grid, central finite differences of our own energy, translational
invariance, and d(force loss)/dθ through the implicit SCF gradient against finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.forces import (force_integrals, forces, forces_json, format_forces,
                          nuclear_repulsion)
from jaxks.grid_weights import grid_geometry, grid_points_weights
from jaxks.hooks import ExternalPotential, electric_field_params
from jaxks.implicit import AdjointOptions, solve
from jaxks.integrals import integrals_from_pyscf, make_grids
from jaxks.scf import SCFOptions, run_scf
from jaxks.xc import get_xc
from jaxks.units import BOHR_PER_ANGSTROM, EV_ANGSTROM_PER_HARTREE_BOHR
from tests import geometries as geo
from tests.conftest import make_system, pyscf_rks

AUX = "def2-universal-jkfit"
TIGHT = SCFOptions(e_tol=1e-13, comm_tol=1e-9, max_cycles=200)


def _trimer():
    """Cyclic water trimer (a test input, built from the ring helper)."""
    return geo.water_ring(3)


GEOMETRIES = {"water": geo.WATER, "dimer": geo.WATER_DIMER, "trimer": _trimer(),
              "nh3": geo.NH3, "ch4": geo.CH4}


@functools.lru_cache(maxsize=None)
def _case(name, xc, basis, level):
    """Our SCF + forces (grid response off and on) and PySCF's gradients for both settings."""
    system = make_system(GEOMETRIES[name], basis=basis, grid_level=level)
    mol = system.to_pyscf()
    grids = make_grids(mol, level)
    ints = integrals_from_pyscf(mol, AUX, level, grids=grids)
    # dimer and NH3: the 3-centre derivatives streamed from PySCF in several blocks (never stored)
    streamed = name in ("dimer", "nh3")
    fints = force_integrals(mol, AUX, grids=grids, store_mb=0.0 if streamed else 512.0,
                            max_block_mb=2.0 if streamed else 256.0)
    assert fints.streamed == streamed
    res = run_scf(ints, xc, options=TIGHT)
    assert bool(res.converged)
    ours = {gr: np.asarray(forces(res, ints, fints, xc, grid_response=gr)) for gr in (False, True)}
    mf = pyscf_rks(mol, get_xc(xc).pyscf_xc, AUX, grids)
    ref = {}
    for gr in (False, True):
        g = mf.nuc_grad_method()
        g.grid_response = gr
        g.verbose = 0
        ref[gr] = -g.kernel()
    return ours, ref


# ----------------------------------------------------------------------------- grid weights
@pytest.mark.parametrize("level", [0, 1])
def test_grid_weights_match_pyscf(level):
    mol = make_system(geo.WATER_DIMER, grid_level=level).to_pyscf()
    grids = make_grids(mol, level)
    coords, weights = grid_points_weights(grid_geometry(mol, grids),
                                          jnp.asarray(mol.atom_coords()))
    real = np.asarray(grids.atm_idx) >= 0
    np.testing.assert_allclose(np.asarray(coords)[real], grids.coords[real], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(weights), grids.weights, rtol=0, atol=1e-12)


def test_grid_weights_follow_pyscf_when_atoms_move():
    """Weights at a displaced geometry from the reference geometry's grid description equal the
    weights PySCF builds at the displaced geometry (the points move rigidly with their atoms)."""
    system = make_system(geo.NH3, grid_level=0)
    mol = system.to_pyscf()
    geom = grid_geometry(mol, make_grids(mol, 0))
    shift = np.random.default_rng(1).normal(scale=0.05, size=(mol.natm, 3))
    moved = system.replace(coords=system.coords + shift).to_pyscf()
    ref = make_grids(moved, 0)
    coords, weights = grid_points_weights(geom, jnp.asarray(moved.atom_coords()))
    real = np.asarray(geom.volumes) != 0
    # PySCF re-sorts the points for the new geometry: compare the two point sets in one order
    ours = np.lexsort(np.round(np.asarray(coords)[real], 9).T)
    theirs = np.lexsort(np.round(ref.coords[ref.atm_idx >= 0], 9).T)
    np.testing.assert_allclose(np.asarray(coords)[real][ours],
                               ref.coords[ref.atm_idx >= 0][theirs], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(weights)[real][ours],
                               ref.weights[ref.atm_idx >= 0][theirs], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- vs PySCF
CASES = [("water", "lda", "def2-svp", 0),
         ("dimer", "pbe", "def2-svp", 0), ("trimer", "lda", "def2-svp", 0),
         ("nh3", "pbe", "def2-svp", 0), ("ch4", "lda", "def2-svp", 0),
         ("water", "pbe", "def2-tzvp", 0)]


@pytest.mark.parametrize("grid_response", [False, True])
@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_forces_match_pyscf(case, grid_response):
    ours, ref = _case(*case)
    np.testing.assert_allclose(ours[grid_response], ref[grid_response], rtol=0, atol=1e-6)


def test_grid_response_matters():
    """The two settings differ by more than the tolerance (so each comparison above is a check)."""
    ours, _ = _case("dimer", "pbe", "def2-svp", 0)
    assert np.max(np.abs(ours[True] - ours[False])) > 1e-5


# ----------------------------------------------------------------------------- own energy
@functools.lru_cache(maxsize=None)
def _water_energy(displacement: tuple):
    system = make_system(geo.WATER, grid_level=0)
    system = system.replace(coords=system.coords + np.asarray(displacement).reshape(-1, 3))
    ints = integrals_from_pyscf(system.to_pyscf(), AUX, 0)
    res = run_scf(ints, "pbe", options=TIGHT)
    assert bool(res.converged)
    return float(res.energy)


def test_forces_match_finite_differences_with_grid_response():
    system = make_system(geo.WATER, grid_level=0)
    mol = system.to_pyscf()
    ints = integrals_from_pyscf(mol, AUX, 0)
    fints = force_integrals(system)
    res = run_scf(ints, "pbe", options=TIGHT)
    f = np.asarray(forces(res, ints, fints, "pbe", grid_response=True))
    h = 1e-3
    for atom, xyz in [(0, 2), (1, 1), (2, 0)]:
        d = np.zeros((mol.natm, 3))
        d[atom, xyz] = h
        e_plus = _water_energy(tuple(d.ravel()))
        e_minus = _water_energy(tuple(-d.ravel()))
        fd = -(e_plus - e_minus) / (2 * h)
        assert abs(fd - f[atom, xyz]) < 1e-5, (atom, xyz, fd, f[atom, xyz])


@pytest.mark.parametrize("name", ["dimer", "nh3"])
def test_forces_sum_to_zero_with_grid_response(name):
    ours, _ = _case(name, *{"dimer": ("pbe", "def2-svp", 0), "nh3": ("pbe", "def2-svp", 0)}[name])
    np.testing.assert_allclose(ours[True].sum(axis=0), 0.0, atol=1e-8)


def test_nuclear_repulsion_matches_pyscf():
    mol = make_system(geo.WATER_DIMER).to_pyscf()
    from pyscf.grad.rhf import grad_nuc

    e = nuclear_repulsion(jnp.asarray(mol.atom_coords()), jnp.asarray(mol.atom_charges(), float))
    assert abs(float(e) - mol.energy_nuc()) < 1e-10
    g = jax.grad(nuclear_repulsion)(jnp.asarray(mol.atom_coords()),
                                    jnp.asarray(mol.atom_charges(), float))
    np.testing.assert_allclose(np.asarray(g), grad_nuc(mol), atol=1e-12)


# ----------------------------------------------------------------------------- θ-gradient
TERM = ExternalPotential()


def test_force_loss_gradient_through_scf_matches_finite_differences():
    """d‖F(θ) − F_ref‖²/dθ via jaxks.implicit.solve vs central differences of reconverged SCFs
    (θ: a homogeneous electric field entering the SCF through the parameter hook)."""
    system = make_system(geo.WATER, grid_level=0)
    mol = system.to_pyscf()
    ints = integrals_from_pyscf(mol, AUX, 0)
    # streamed 3-centre derivatives: reverse mode recomputes each block (jax.checkpoint)
    fints = force_integrals(system, store_mb=0.0, max_block_mb=0.5)
    assert fints.streamed and fints.aux_index.shape[0] > 1
    params = electric_field_params(mol, [0.01, -0.02, 0.015])
    f_ref = jnp.asarray(np.random.default_rng(2).normal(scale=0.05, size=(mol.natm, 3)))

    def loss(theta, grid_response):
        res = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
                    adjoint=AdjointOptions(tol=1e-12))
        f = forces(res, ints, fints, "pbe", grid_response=grid_response)
        return jnp.sum((f - f_ref) ** 2)

    def loss_fd(theta, grid_response):
        res = run_scf(ints, "pbe", term=TERM, params=dict(params, theta=jnp.asarray(theta)),
                      options=TIGHT)
        assert bool(res.converged)
        f = forces(res, ints, fints, "pbe", grid_response=grid_response)
        return float(jnp.sum((f - f_ref) ** 2))

    theta0 = np.asarray(params["theta"])
    direction = np.array([0.6, -0.48, 0.64])  # unit vector: one directional derivative checks all
    # grid response on: the force then depends on Γ through every term, the grid's included
    for grid_response in (True,):
        grad = np.asarray(jax.jit(jax.grad(loss), static_argnums=1)(params["theta"],
                                                                   grid_response))
        h = 1e-4
        fd = (loss_fd(theta0 + h * direction, grid_response)
              - loss_fd(theta0 - h * direction, grid_response)) / (2 * h)
        assert abs(grad @ direction - fd) <= 1e-5 * abs(fd), (grad @ direction, fd)
        assert abs(fd) > 1e-4  # the check is not trivially satisfied


# ----------------------------------------------------------------------------- output helpers
def test_format_and_json_units():
    f = np.array([[0.01, -0.02, 0.0], [0.0, 0.0, 0.03]])
    text = format_forces(["O", "H"], f)
    assert "Hartree/Bohr" in text and "eV/Angstrom" in text and "O" in text
    js = forces_json(f)
    np.testing.assert_allclose(js["forces_ev_per_angstrom"], f * EV_ANGSTROM_PER_HARTREE_BOHR)
    np.testing.assert_allclose(js["forces_hartree_per_bohr"], f)
    assert abs(EV_ANGSTROM_PER_HARTREE_BOHR - 27.211386 * BOHR_PER_ANGSTROM) < 1e-4
    with pytest.raises(ValueError, match="shape"):
        format_forces(["O"], f)


# ----------------------------------------------------------------------------- pair screening
@pytest.mark.parametrize("xc", ["pbe", "hse06"])
def test_df_pair_screening_changes_energy_and_forces_below_the_bars(xc):
    """The default DF pair screening (DF_PAIR_CUTOFF) moves the energy by < 1e-9 Eh and the forces
    by < 1e-7 Eh/Bohr against the unscreened tensor, on a water tetramer where it drops 8 % of
    the pairs (HSE06: the short-range tensor on the same pairs)."""
    from jaxks.exchange import sr_omega
    from jaxks.integrals import DF_PAIR_CUTOFF

    system = make_system(geo.water_ring(4), basis="def2-svp", grid_level=0)
    mol = system.to_pyscf()
    grids = make_grids(mol, 0)
    omega = sr_omega(get_xc(xc))
    fints = force_integrals(mol, AUX, omega=omega)
    out = {}
    for cutoff in (DF_PAIR_CUTOFF, None):
        ints = integrals_from_pyscf(mol, AUX, 0, grids=grids, pair_cutoff=cutoff, omega=omega)
        res = run_scf(ints, xc, options=TIGHT)
        assert bool(res.converged)
        out[cutoff] = (ints, float(res.energy), np.asarray(forces(res, ints, fints, xc)))
    screened, full = out[DF_PAIR_CUTOFF], out[None]
    assert full[0].pairs is None
    dropped = 1 - screened[0].pairs.n_pair / (mol.nao * (mol.nao + 1) // 2)
    assert dropped > 0.05
    print(f"{xc}: {dropped:.3f} of the pairs dropped, |dE| = {abs(screened[1] - full[1]):.1e} Eh, "
          f"max |dF| = {np.abs(screened[2] - full[2]).max():.1e} Eh/Bohr")
    assert abs(screened[1] - full[1]) < 1e-9
    np.testing.assert_allclose(screened[2], full[2], rtol=0, atol=1e-7)

"""Exact exchange of hybrid functionals (jaxks.exchange) against PySCF's density-fitted K and
DF-RKS on the same basis, auxiliary basis, grid and ω; its derivatives against dense formulas and
central finite differences of reconverged SCFs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.exchange import exchange_matrix
from jaxks.hooks import ExternalPotential, electric_field_params
from jaxks.implicit import AdjointOptions, solve
from jaxks.integrals import integrals_from_pyscf, make_grids
from jaxks.pairs import unpack
from jaxks.scf import SCFOptions, run_scf
from jaxks.xc import XCFunctional, get_xc
from jaxks.xc.registry import GGA_C_PBE, GGA_X_PBE, hse06
from tests import geometries as geo
from tests.conftest import make_system, pyscf_rks

AUX = "def2-universal-jkfit"
OMEGA = 0.11
TIGHT = SCFOptions(e_tol=1e-12, comm_tol=1e-8, max_cycles=200)

#: A short-range hybrid whose semilocal part is plain PBE: tests the erfc(ωr)/r exchange alone
#: (and is a PySCF xc string, so both labellers can run it).
SR_PBE = XCFunctional("sr-pbe-test", "gga", f"0.25*SR_HF({OMEGA})+PBE,PBE",
                      (GGA_X_PBE, GGA_C_PBE), sr_exchange=0.25, omega=OMEGA)
#: HSE06 with the ωPBE rescaling made continuous (for finite-difference checks; see the implicit test).
HSE06_CONTINUOUS = hse06("hse06-continuous", continuous=True)
GEOMETRIES = {"water": geo.WATER, "dimer": geo.WATER_DIMER, "nh3": geo.NH3, "ch4": geo.CH4,
              "hexamer": geo.WATER_HEXAMER}


def _functional(name):
    return SR_PBE if name == SR_PBE.name else get_xc(name)


def _omega(xc):
    return xc.omega if xc.sr_exchange else 0.0


@functools.lru_cache(maxsize=None)
def _mol_ints(geometry, basis, omega, level=0):
    mol = make_system(GEOMETRIES[geometry], basis=basis, grid_level=level).to_pyscf()
    grids = make_grids(mol, level)
    return mol, grids, integrals_from_pyscf(mol, AUX, level, grids=grids, omega=omega)


# ----------------------------------------------------------------------------- K itself
def _random_density(nao, n_occ, seed):
    c = np.random.default_rng(seed).normal(size=(nao, n_occ)) * 0.3
    return 2.0 * c @ c.T


@pytest.mark.parametrize("omega", [0.0, OMEGA])
def test_exchange_matrix_matches_pyscf_density_fitting(omega):
    from pyscf import df

    mol, _, ints = _mol_ints("water", "def2-svp", OMEGA)
    dm = _random_density(mol.nao, ints.n_occ, seed=0)
    cderi = ints.cderi_sr if omega else ints.cderi
    k = np.asarray(exchange_matrix(jnp.asarray(dm), cderi, ints.pairs, ints.n_occ))
    dfobj = df.DF(mol, auxbasis=AUX)
    _, k_ref = dfobj.get_jk(dm, hermi=1, with_j=False, omega=-omega if omega else None)
    np.testing.assert_allclose(k, k_ref, rtol=0, atol=1e-10)
    assert np.max(np.abs(k_ref)) > 0.1


def test_exchange_matrix_derivatives_are_exact():
    """JVP in Γ = Σ_P B_P dΓ B_P (the dense linear map); in B = central difference (K is
    quadratic in B, so the difference is exact up to rounding)."""
    mol, _, ints = _mol_ints("water", "def2-svp", OMEGA)
    nao, n_occ = mol.nao, ints.n_occ
    gamma = jnp.asarray(_random_density(nao, n_occ, seed=1))
    rng = np.random.default_rng(2)
    dg = rng.normal(size=(nao, nao))
    dg = jnp.asarray(dg + dg.T)
    cderi = ints.cderi_sr
    db = jnp.asarray(rng.normal(size=cderi.shape) * 1e-2)
    b = np.asarray(unpack(cderi, nao, ints.pairs))
    dense = np.einsum("pml,ln,pnk->mk", b, np.asarray(dg), b)
    _, tangent = jax.jvp(lambda g: exchange_matrix(g, cderi, ints.pairs, n_occ), (gamma,), (dg,))
    np.testing.assert_allclose(np.asarray(tangent), dense, rtol=0, atol=1e-10 * np.abs(dense).max())
    _, tangent_b = jax.jvp(lambda c: exchange_matrix(gamma, c, ints.pairs, n_occ), (cderi,), (db,))
    h = 1.0
    fd = (exchange_matrix(gamma, cderi + h * db, ints.pairs, n_occ)
          - exchange_matrix(gamma, cderi - h * db, ints.pairs, n_occ)) / (2 * h)
    np.testing.assert_allclose(np.asarray(tangent_b), np.asarray(fd), rtol=0,
                               atol=1e-10 * np.abs(fd).max())


# ----------------------------------------------------------------------------- SCF vs PySCF
@functools.lru_cache(maxsize=None)
def _scf_pair(geometry, xc_name, basis="def2-svp", level=0):
    xc = _functional(xc_name)
    mol, grids, ints = _mol_ints(geometry, basis, _omega(xc), level)
    res = run_scf(ints, xc, options=TIGHT)
    assert bool(res.converged)
    mf = pyscf_rks(mol, xc.pyscf_xc, AUX, grids)
    return res, mf


SCF_CASES = [("water", "hse06"), ("dimer", "hse06"), ("nh3", "hse06"), ("ch4", "hse06"),
             ("water", "pbe0"), ("dimer", "pbe0"), ("water", "sr-pbe-test")]


@pytest.mark.parametrize("geometry,xc_name", SCF_CASES, ids=["-".join(c) for c in SCF_CASES])
def test_hybrid_scf_matches_pyscf(geometry, xc_name):
    res, mf = _scf_pair(geometry, xc_name)
    assert abs(float(res.energy) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(res.mo_energy), mf.mo_energy, rtol=0, atol=1e-7)
    # the exact-exchange part is really there (PySCF's own split of the energy)
    assert abs(float(res.parts.exact_exchange)) > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("geometry,xc_name,basis", [
    ("water", "hse06", "def2-tzvp"),
    ("hexamer", "hse06", "def2-svp")])
def test_hybrid_scf_matches_pyscf_larger(geometry, xc_name, basis):
    res, mf = _scf_pair(geometry, xc_name, basis)
    assert abs(float(res.energy) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(res.mo_energy), mf.mo_energy, rtol=0, atol=1e-7)


def test_missing_short_range_integrals_is_a_clear_error():
    _, _, ints = _mol_ints("water", "def2-svp", 0.0)
    with pytest.raises(ValueError, match="short-range exchange integrals"):
        run_scf(ints, SR_PBE)
    _, _, ints = _mol_ints("water", "def2-svp", 0.2)
    with pytest.raises(ValueError, match="omega"):
        run_scf(ints, SR_PBE)


# ----------------------------------------------------------------------------- implicit
@pytest.mark.parametrize("xc", [HSE06_CONTINUOUS, SR_PBE], ids=["hse06-continuous", "sr-pbe"])
def test_implicit_gradient_of_hybrid_solution_matches_finite_differences(xc):
    """d(loss)/dθ of the self-consistent short-range hybrid solution (θ: an electric field
    through the parameter hook) vs central differences of reconverged SCFs.

    HSE06 is checked in its continuous form (``jaxks.xc.registry.hse06(continuous=True)``):
    libxc's HSE06 energy density jumps by ~1e-4 relative where the reduced gradient crosses
    s = 1 (tests/xc/test_wpbeh.py), so central differences of libxc's HSE06 collect the jumps of
    the grid points that cross it (they gave 0.446461 against the analytic 0.446434, 6e-5
    relative). SR-HF + PBE checks the exact exchange alone.
    """
    mol, _, ints = _mol_ints("water", "def2-svp", OMEGA)
    term = ExternalPotential()
    params = electric_field_params(mol, [0.01, -0.02, 0.015])
    tight = SCFOptions(e_tol=1e-13, comm_tol=1e-10, max_cycles=200)
    probe = jnp.asarray(np.random.default_rng(3).normal(size=(mol.nao, mol.nao)))
    n = ints.n_occ

    def observables(res):
        c = res.mo_coeff[:, :n]
        return res.energy + 3.0 * res.mo_energy[n - 1] + jnp.vdot(c @ c.T, probe + probe.T)

    def loss(theta):
        return observables(solve(ints, xc, term=term, params=dict(params, theta=theta),
                                 options=tight, adjoint=AdjointOptions(tol=1e-12)))

    def loss_fd(theta):
        res = run_scf(ints, xc, term=term, params=dict(params, theta=jnp.asarray(theta)),
                      options=tight)
        assert bool(res.converged)
        return float(observables(res))

    grad = np.asarray(jax.jit(jax.grad(loss))(params["theta"]))
    direction = np.array([0.6, -0.48, 0.64])
    theta0 = np.asarray(params["theta"])
    h = 1e-3
    d = lambda s: (loss_fd(theta0 + s * direction) - loss_fd(theta0 - s * direction)) / (2 * s)  # noqa: E731
    fd = (4 * d(h / 2) - d(h)) / 3
    assert abs(fd) > 1e-3
    assert abs(grad @ direction - fd) <= 1e-5 * abs(fd), (grad @ direction, fd)


# ----------------------------------------------------------------------------- forces
FORCE_CASES = [("water", "pbe0", False), ("dimer", "hse06", False), ("nh3", "hse06", True)]


@pytest.mark.parametrize("geometry,xc_name,grid_response", FORCE_CASES,
                         ids=["-".join(map(str, c)) for c in FORCE_CASES])
def test_hybrid_forces_match_pyscf(geometry, xc_name, grid_response):
    """Analytic forces (exchange term from the blocked derivative integrals) vs PySCF's analytic
    density-fitted RKS gradients (auxiliary-basis response included)."""
    from jaxks.forces import force_integrals, forces

    res, mf = _scf_pair(geometry, xc_name)
    xc = _functional(xc_name)
    mol, grids, ints = _mol_ints(geometry, "def2-svp", _omega(xc))
    fints = force_integrals(mol, AUX, grids=grids, omega=_omega(xc))
    ours = np.asarray(forces(res, ints, fints, xc, grid_response=grid_response))
    g = mf.nuc_grad_method()
    g.grid_response = grid_response
    g.verbose = 0
    ref = -g.kernel()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    if xc.sr_exchange:  # the exchange term matters at this tolerance
        from jaxks.exchange import exchange_gradient
        assert np.max(np.abs(np.asarray(exchange_gradient(res.gamma, ints, fints, xc)))) > 1e-3


@pytest.mark.slow
def test_force_loss_gradient_of_hybrid_matches_finite_differences():
    """d‖F(θ) − F_ref‖²/dθ through jaxks.implicit.solve (the exchange force term differentiated
    through the factor of Γ) vs central differences of reconverged SCFs."""
    from jaxks.forces import force_integrals, forces

    mol, grids, ints = _mol_ints("water", "def2-svp", OMEGA)
    fints = force_integrals(mol, AUX, omega=OMEGA)
    term = ExternalPotential()
    params = electric_field_params(mol, [0.01, -0.02, 0.015])
    tight = SCFOptions(e_tol=1e-13, comm_tol=1e-10, max_cycles=200)
    f_ref = jnp.asarray(np.random.default_rng(2).normal(scale=0.05, size=(mol.natm, 3)))

    def loss(theta):
        res = solve(ints, SR_PBE, term=term, params=dict(params, theta=theta), options=tight,
                    adjoint=AdjointOptions(tol=1e-12))
        return jnp.sum((forces(res, ints, fints, SR_PBE) - f_ref) ** 2)

    def loss_fd(theta):
        res = run_scf(ints, SR_PBE, term=term, params=dict(params, theta=jnp.asarray(theta)),
                      options=tight)
        assert bool(res.converged)
        return float(jnp.sum((forces(res, ints, fints, SR_PBE) - f_ref) ** 2))

    grad = np.asarray(jax.jit(jax.grad(loss))(params["theta"]))
    direction = np.array([0.6, -0.48, 0.64])
    theta0 = np.asarray(params["theta"])
    h = 1e-4
    fd = (loss_fd(theta0 + h * direction) - loss_fd(theta0 - h * direction)) / (2 * h)
    assert abs(fd) > 1e-4
    assert abs(grad @ direction - fd) <= 1e-5 * abs(fd), (grad @ direction, fd)

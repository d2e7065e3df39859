"""Derivatives through the converged SCF (jaxks.implicit) against central finite differences of
fully reconverged SCFs, and against unrolled differentiation of a long fixed-iteration SCF."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.hooks import ExternalPotential, electric_field_params
from jaxks.implicit import AdjointOptions, scf_map, solve
from jaxks.integrals import integrals_from_pyscf
from jaxks.scf import SCFOptions, run_scf
from tests import geometries as geo
from tests.conftest import make_system

AUX = "def2-universal-jkfit"
TIGHT = SCFOptions(e_tol=1e-13, comm_tol=1e-10, max_cycles=200)
TERM = ExternalPotential()


@functools.lru_cache(maxsize=None)
def _setup(name):
    geometry = {"dimer": geo.WATER_DIMER, "nh3": geo.NH3, "ne": (["Ne"], [[0.0, 0.0, 0.0]])}[name]
    system = make_system(geometry, basis="def2-svp", grid_level=0)
    mol = system.to_pyscf()
    ints = integrals_from_pyscf(mol, AUX, 0)
    params = electric_field_params(mol, [0.004, -0.003, 0.002])
    return ints, params


def _observables(result, probes):
    """Scalars whose derivatives are checked: energy, HOMO, LUMO, a core level, the occupied
    projector and the Fock matrix contracted with random symmetric matrices."""
    n = result.n_occ
    c_occ = result.mo_coeff[:, :n]
    proj = c_occ @ c_occ.T
    return jnp.stack([result.energy, result.mo_energy[n - 1], result.mo_energy[n],
                      result.mo_energy[0], jnp.vdot(proj, probes[0]), jnp.vdot(result.fock,
                                                                                probes[1])])


def _probes(nao, seed=0):
    r = np.random.default_rng(seed).normal(size=(2, nao, nao))
    return jnp.asarray(r + r.transpose(0, 2, 1))


def _central(f, theta, k, h):
    """Richardson-extrapolated central difference (error O(h⁴)) of f along θ_k."""
    def d(step):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += step
        tm[k] -= step
        return (f(tp) - f(tm)) / (2 * step)

    return (4 * d(h / 2) - d(h)) / 3


def _fd_jacobian(ints, params, probes, h=5e-4):
    def obs(t):
        res = run_scf(ints, "pbe", term=TERM, params=dict(params, theta=jnp.asarray(t)),
                      options=TIGHT)
        assert bool(res.converged)
        return np.asarray(_observables(res, probes))

    theta = np.asarray(params["theta"])
    return np.stack([_central(obs, theta, k, h) for k in range(theta.size)], axis=1)


def _implicit_jacobian(ints, params, probes):
    def f(theta):
        res = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
                    adjoint=AdjointOptions(tol=1e-12))
        return _observables(res, probes)

    return np.asarray(jax.jacrev(f)(params["theta"]))


@pytest.mark.parametrize("name", ["dimer"])
def test_scf_derivatives_match_finite_differences(name):
    ints, params = _setup(name)
    probes = _probes(ints.nao)
    jac = _implicit_jacobian(ints, params, probes)
    fd = _fd_jacobian(ints, params, probes)
    assert np.all(np.isfinite(jac))
    scale = np.max(np.abs(fd), axis=1, keepdims=True)
    np.testing.assert_array_less(np.abs(jac - fd) / scale, 1e-5)


def _unrolled(ints, params, theta, gamma0, steps=150, mix=0.5):
    """Test helper (not the product path): Γ_{k+1} = (1−α)Γ_k + α Φ(Γ_k, θ), differentiated
    by unrolling. Same fixed point as the SCF; its derivative tends to the implicit one."""
    p = dict(params, theta=theta)

    def step(g, _):
        return (1 - mix) * g + mix * scf_map(g, ints, p, _xc(), TERM), None

    gamma, _ = jax.lax.scan(step, gamma0, None, length=steps)
    return gamma


def _xc():
    from jaxks.xc import get_xc
    return get_xc("pbe")


def test_implicit_matches_unrolled_differentiation():
    from jaxks.scf import finalize

    ints, params = _setup("dimer")
    probes = _probes(ints.nao, seed=1)
    gamma_star = run_scf(ints, "pbe", term=TERM, params=params, options=TIGHT).gamma

    def unrolled_obs(theta):
        gamma = _unrolled(ints, params, theta, jax.lax.stop_gradient(gamma_star))
        from jaxks import linalg
        return _observables(finalize(ints, dict(params, theta=theta), gamma, _xc(), TERM,
                                     eigh=linalg.eigh), probes)

    def implicit_obs(theta):
        return _observables(solve(ints, "pbe", term=TERM, params=dict(params, theta=theta),
                                  options=TIGHT, adjoint=AdjointOptions(tol=1e-12)), probes)

    j_unrolled = np.asarray(jax.jacrev(unrolled_obs)(params["theta"]))
    j_implicit = np.asarray(jax.jacrev(implicit_obs)(params["theta"]))
    scale = np.max(np.abs(j_implicit), axis=1, keepdims=True)
    np.testing.assert_array_less(np.abs(j_unrolled - j_implicit) / scale, 1e-6)


@pytest.mark.parametrize("name,field,tol", [("ne", 0.0, 1e-10), ("nh3", 0.003, 1e-4)])
def test_degenerate_orbitals_give_finite_correct_gradients(name, field, tol):
    """Ne (exactly degenerate 2p, zero field) and NH3 (C3v; its e pair is degenerate up to the
    grid's broken symmetry): invariant losses (the group's mean energy plus the occupied
    projector contracted with a random matrix) have finite gradients matching finite
    differences."""
    ints, params = _setup(name)
    params = dict(params, theta=jnp.zeros(3).at[2].set(field))  # field along z keeps C3v
    res = run_scf(ints, "pbe", term=TERM, params=params, options=TIGHT)
    eps = np.asarray(res.mo_energy)
    n = res.n_occ
    pair = [i for i in range(n) if np.min(np.abs(np.delete(eps[:n], i) - eps[i])) < tol]
    assert len(pair) in (2, 3), eps[:n]
    probe = _probes(ints.nao, seed=2)[0]

    def loss(theta):
        r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
                  adjoint=AdjointOptions(tol=1e-12))
        c = r.mo_coeff[:, :n]
        return jnp.mean(r.mo_energy[jnp.asarray(pair)]) + jnp.vdot(c @ c.T, probe)

    g = np.asarray(jax.grad(loss)(params["theta"]))
    assert np.all(np.isfinite(g))
    def invariant(t):
        r = run_scf(ints, "pbe", term=TERM, params=dict(params, theta=jnp.asarray(t)),
                    options=TIGHT)
        e = np.asarray(r.mo_energy)[:n]
        c = np.asarray(r.mo_coeff)[:, :n]
        return np.mean(e[pair]) + np.vdot(c @ c.T, np.asarray(probe))

    theta = np.asarray(params["theta"])
    fd = [_central(invariant, theta, k, 5e-4) for k in range(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7 * np.max(np.abs(fd)))


def test_unconverged_adjoint_solve_is_reported():
    from jaxks.implicit import AdjointNotConvergedWarning

    ints, params = _setup("dimer")

    def loss(theta):
        r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
                  adjoint=AdjointOptions(tol=1e-14, restart=1, maxiter=1))
        return r.homo

    with pytest.warns(AdjointNotConvergedWarning, match="adjoint SCF linear solve did not converge"):
        g = jax.grad(loss)(params["theta"])
        jax.block_until_ready(g)

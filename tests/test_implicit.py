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


# ----------------------------------------------------------------------------- adjoint solve
_ADJ = AdjointOptions(tol=1e-12, warn=False)


@functools.lru_cache(maxsize=None)
def _monomer(shift=0.0):
    """Water monomer (def2-SVP, grid level 0) with one H moved by ``shift`` Angstrom along y."""
    symbols, coords = geo.WATER
    coords = np.array(coords, float)
    coords[1, 1] += shift
    system = make_system((symbols, coords), basis="def2-svp", grid_level=0)
    mol = system.to_pyscf()
    return integrals_from_pyscf(mol, AUX, 0), electric_field_params(mol, [0.004, -0.003, 0.002])


def _loss(theta, u0, probe, ints, params, adjoint=_ADJ):
    r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
              adjoint=adjoint, adjoint_guess=u0, probe=probe)
    return _loss_of(r)


def _loss_of(r):
    c = r.mo_coeff[:, :r.n_occ]
    return r.energy + r.homo ** 2 + r.lumo ** 2 + jnp.sum((c @ c.T) ** 2)


_grad3 = jax.jit(jax.grad(_loss, argnums=(0, 1, 2)), static_argnames="adjoint")


def test_adjoint_guess_cotangent_is_the_solution_and_warm_start_is_cheap():
    from jaxks import linalg
    from jaxks.scf import finalize

    ints, params = _monomer()
    theta, zero = params["theta"], jnp.zeros((ints.nao, ints.nao))
    g1, u1, n1 = _grad3(theta, zero, 0.0, ints, params)
    # the same gradient as without the extra inputs
    g0 = jax.jit(jax.grad(lambda t: _loss_of(solve(ints, "pbe", term=TERM, options=TIGHT,
                                                   params=dict(params, theta=t),
                                                   adjoint=_ADJ))))(theta)
    np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=0)
    # u1 solves u = Γ̄ + (∂Φ/∂Γ)ᵀ u, checked with reverse mode through the map itself
    gamma = run_scf(ints, "pbe", term=TERM, params=params, options=TIGHT).gamma

    @jax.jit
    def residual(gamma, u):
        gbar = jax.grad(lambda g: _loss_of(finalize(ints, params, g, _xc(), TERM,
                                                    eigh=linalg.eigh)))(gamma)
        _, vjp = jax.vjp(lambda g: scf_map(g, ints, params, _xc(), TERM), gamma)
        v = vjp(u)[0]
        return u - 0.5 * (v + v.T) - 0.5 * (gbar + gbar.T), 0.5 * (gbar + gbar.T)

    resid, gbar = residual(gamma, u1)
    assert float(jnp.linalg.norm(resid)) < 1e-9 * float(jnp.linalg.norm(gbar))
    # warm start from the solution: one product (the initial residual) and the same result
    g2, u2, n2 = _grad3(theta, u1, 0.0, ints, params)
    assert int(n1) >= 5 and int(n2) <= 2, (n1, n2)
    np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=0)
    np.testing.assert_allclose(u2, u1, rtol=0, atol=1e-9 * float(jnp.max(jnp.abs(u1))))


@pytest.mark.parametrize("restart,maxiter,warm,expected", [(3, 1, True, 5), (3, 2, False, 8)])
def test_matvec_count_follows_the_documented_rule(restart, maxiter, warm, expected):
    """Capped solves: restart·maxiter Arnoldi steps, one residual per cycle, one for a guess."""
    ints, params = _monomer()
    adjoint = AdjointOptions(tol=1e-15, restart=restart, maxiter=maxiter, warn=False)
    u0 = jnp.zeros((ints.nao, ints.nao))
    if warm:
        n = _grad3(params["theta"], u0, 0.0, ints, params, adjoint=adjoint)[2]
    else:
        def loss(theta, probe):
            r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=TIGHT,
                      adjoint=adjoint, probe=probe)
            return _loss_of(r)
        n = jax.grad(loss, argnums=1)(params["theta"], 0.0)
    assert int(n) == expected


def test_preconditioned_gradient_equals_plain():
    """The preconditioner changes the path, not the answer (the plain gradient matches finite
    differences in the tests above)."""
    ints, params = _monomer()
    u0 = jnp.zeros((ints.nao, ints.nao))
    plain = _grad3(params["theta"], u0, 0.0, ints, params)
    pre = _grad3(params["theta"], u0, 0.0, ints, params,
                 adjoint=AdjointOptions(tol=1e-12, precondition=True, warn=False))
    np.testing.assert_allclose(pre[0], plain[0], rtol=1e-9, atol=0)
    assert int(pre[2]) > 1


def test_preconditioner_inverts_the_coulomb_diagonal():
    """With exchange-correlation switched off, the ov diagonal of (1 − ∂Φ/∂Γ)ᵀ in the MO basis
    is exactly 1 + 4(ai|ai)/(ε_a − ε_i): for u = S(c_a c_iᵀ + c_i c_aᵀ)S, (Cᵀ A M u C)_ai = 1.
    The operator here is reverse mode through Φ, independent of the solver's forward form."""
    from jaxks.implicit import adjoint_preconditioner
    from jaxks.linalg import orthogonalizer
    from jaxks.scf import diagonalize, fock_matrix
    from jaxks.xc import XCFunctional

    hartree = XCFunctional(name="hartree-only", family="lda", pyscf_xc="", terms=())
    ints, params = _monomer()
    gamma = ints.guess
    fock, _ = fock_matrix(gamma, ints, hartree, TERM, params)
    eps, c = diagonalize(fock, orthogonalizer(ints.S, ints.n_mo))
    precond = adjoint_preconditioner(ints, eps, c, block_mb=0.01)  # several blocks
    _, vjp = jax.vjp(lambda g: scf_map(g, ints, params, hartree, TERM), gamma)

    @jax.jit
    def diag(a, i):
        u = ints.S @ (jnp.outer(c[:, a], c[:, i]) + jnp.outer(c[:, i], c[:, a])) @ ints.S
        m = precond(u)
        am = m - 0.5 * (vjp(m)[0] + vjp(m)[0].T)
        return (c.T @ am @ c)[a, i], (c.T @ u @ c)[a, i] / (c.T @ m @ c)[a, i]

    n = ints.n_occ
    pairs = [(n, n - 1), (n + 3, 0), (n + 7, n - 2), (ints.n_mo - 1, 1)]
    for a, i in pairs:
        value, d = diag(a, i)
        assert abs(float(value) - 1.0) < 1e-10, (a, i, value)
        assert float(d) > 1.0  # the Coulomb term is positive: M does something


def test_vmap_over_frames_matches_each_frame():
    frames = [_monomer(0.0), _monomer(0.05)]
    ints = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[f[0] for f in frames])
    params = frames[0][1]
    thetas = jnp.stack([params["theta"], 2.0 * params["theta"]])
    nao = frames[0][0].nao
    u0 = jnp.zeros((2, nao, nao))

    def loss(theta, u, probe, ints):
        return _loss(theta, u, probe, ints, params)

    batched = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2))))(thetas, u0, jnp.zeros(2), ints)
    for k, (ints_k, _) in enumerate(frames):
        single = _grad3(thetas[k], u0[k], 0.0, ints_k, params)
        # batched and single products round differently, so the two SCFs stop at points
        # that differ within the SCF tolerance (comm_tol 1e-10): compare on the vector's scale
        np.testing.assert_allclose(batched[0][k], single[0], rtol=0,
                                   atol=1e-10 * float(jnp.max(jnp.abs(single[0]))))
        np.testing.assert_allclose(batched[1][k], single[1], rtol=0,
                                   atol=1e-10 * float(jnp.max(jnp.abs(single[1]))))
        assert abs(int(batched[2][k]) - int(single[2])) <= 1  # same up to that rounding

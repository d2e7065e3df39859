"""Tests of jaxks.orbitals: invariance to signs and to rotations inside degenerate groups, zero at
the reference, agreement with independent NumPy evaluations, gradients vs central finite
differences (also through the degeneracy-safe generalized eigensolver)."""

import jaxks  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxks import linalg, orbitals

N_AO = 7
SPECTRUM = np.array([-1.0, -0.5, -0.5, 0.2, 0.2, 0.2, 0.9])  # Hartree; groups (0) (1,2) (3,4,5) (6)
GROUPS = ((0,), (1, 2), (3, 4, 5), (6,))


def _rng(seed):
    return np.random.default_rng(seed)


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def _spd(rng, n=N_AO):
    b = rng.normal(size=(n, n))
    return b @ b.T / n + 0.5 * np.eye(n)


def _sym(rng, n=N_AO):
    a = rng.normal(size=(n, n))
    return a + a.T


def _system(seed):
    """S (SPD), F with exactly degenerate generalized spectrum SPECTRUM, and S-orthonormal C."""
    rng = _rng(seed)
    s = _spd(rng)
    c = scipy.linalg.solve_triangular(np.linalg.cholesky(s).T, _orthogonal(rng, N_AO), lower=False)
    f = s @ c @ np.diag(SPECTRUM) @ c.T @ s
    return f, s, c


def _gauge_transform(c, groups, rng):
    """C -> C R with R block-diagonal: a random orthogonal matrix (with reflections) per group."""
    r = np.zeros((c.shape[1], c.shape[1]))
    for g in groups:
        idx = np.array(g)
        r[np.ix_(idx, idx)] = _orthogonal(rng, len(g)) * rng.choice([-1.0, 1.0], size=len(g))
    return c @ r


def fd(f, x, d, h=3e-4):
    fp2, fp1, fm1, fm2 = (np.asarray(f(x + t * h * d)) for t in (2, 1, -1, -2))
    return (-fp2 + 8 * fp1 - 8 * fm1 + fm2) / (12 * h)


def test_density_matrix_matches_numpy_and_counts_electrons():
    _, s, c = _system(0)
    occ = np.array([2.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    gamma = orbitals.density_matrix(c, occ)
    expected = sum(o * np.outer(c[:, i], c[:, i]) for i, o in enumerate(occ))
    np.testing.assert_allclose(gamma, expected, atol=1e-12)
    np.testing.assert_allclose(np.trace(gamma @ s), occ.sum(), atol=1e-10)
    with pytest.raises(ValueError, match="occupation"):
        orbitals.density_matrix(c, occ[:3])


def test_occupied_projector_is_invariant_and_idempotent_in_metric():
    _, s, c = _system(1)
    p = orbitals.occupied_projector(c, 3)
    np.testing.assert_allclose(p @ s @ p, p, atol=1e-10)
    np.testing.assert_allclose(2 * p, orbitals.density_matrix(c, np.r_[2.0, 2, 2, 0, 0, 0, 0]), atol=1e-12)
    # any rotation among the occupied orbitals (groups (0,1,2) as one block) leaves P unchanged
    c_rot = _gauge_transform(c, ((0, 1, 2), (3, 4, 5), (6,)), _rng(2))
    np.testing.assert_allclose(orbitals.occupied_projector(c_rot, 3), p, atol=1e-12)
    with pytest.raises(ValueError, match="n_occ"):
        orbitals.occupied_projector(c, 8)


def test_sign_invariant_overlap():
    _, s, c = _system(3)
    np.testing.assert_allclose(orbitals.sign_invariant_overlap(c, c, s), 0.0, atol=1e-12)
    flipped = c * np.array([1, -1, 1, -1, -1, 1, -1.0])
    np.testing.assert_allclose(orbitals.sign_invariant_overlap(c, flipped, s), 0.0, atol=1e-12)
    other = _gauge_transform(c, ((0, 1, 2, 3, 4, 5, 6),), _rng(4))
    expected = [1 - (c[:, i] @ s @ other[:, i]) ** 2 for i in range(N_AO)]
    np.testing.assert_allclose(orbitals.sign_invariant_overlap(c, other, s), expected, atol=1e-12)
    single = orbitals.sign_invariant_overlap(c[:, 2], other[:, 2], s)
    np.testing.assert_allclose(single, expected[2], atol=1e-12)
    assert np.all(np.asarray(orbitals.sign_invariant_overlap(c, other, s)) >= -1e-12)


def test_degenerate_groups():
    eps = SPECTRUM + np.array([0, 0, 3e-7, 0, 2e-7, 4e-7, 0])  # SCF-like noise inside levels
    assert orbitals.degenerate_groups(eps) == GROUPS
    assert orbitals.degenerate_groups(eps, start=1, stop=6) == GROUPS[1:3]
    assert orbitals.degenerate_groups(eps, tol=1e-9) == tuple((i,) for i in range(N_AO))
    with pytest.raises(ValueError, match="splits a degenerate level"):
        orbitals.degenerate_groups(eps, stop=4)
    with pytest.raises(ValueError, match="splits a degenerate level"):
        orbitals.degenerate_groups(eps, start=2)
    with pytest.raises(ValueError, match="ascending"):
        orbitals.degenerate_groups(eps[::-1])
    with pytest.raises(ValueError, match="window"):
        orbitals.degenerate_groups(eps, start=3, stop=3)


def test_subspace_projectors_match_numpy_and_are_gauge_invariant():
    _, _, c = _system(5)
    p = orbitals.subspace_projectors(c, GROUPS)
    assert p.shape == (len(GROUPS), N_AO, N_AO)
    for k, g in enumerate(GROUPS):
        np.testing.assert_allclose(p[k], c[:, list(g)] @ c[:, list(g)].T, atol=1e-12)
    np.testing.assert_allclose(orbitals.subspace_projectors(_gauge_transform(c, GROUPS, _rng(6)), GROUPS), p,
                               atol=1e-12)
    with pytest.raises(ValueError, match="overlap"):
        orbitals.subspace_projectors(c, ((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="only 7 orbitals"):
        orbitals.subspace_projectors(c, ((0,), (7,)))


def test_subspace_loss_zero_at_reference_and_gauge_invariant():
    _, s, c = _system(7)
    rng = _rng(8)
    assert abs(float(orbitals.subspace_loss(c, c, s, GROUPS))) < 1e-12
    assert abs(float(orbitals.subspace_loss(c, _gauge_transform(c, GROUPS, rng), s, GROUPS))) < 1e-12
    # a genuinely different set of orbitals: loss > 0, and unchanged by gauge changes of either side
    c_other = scipy.linalg.solve_triangular(np.linalg.cholesky(s).T, _orthogonal(rng, N_AO), lower=False)
    base = float(orbitals.subspace_loss(c, c_other, s, GROUPS))
    assert 0.0 < base <= 1.0
    for _ in range(3):
        c_a, c_b = _gauge_transform(c, GROUPS, rng), _gauge_transform(c_other, GROUPS, rng)
        np.testing.assert_allclose(orbitals.subspace_loss(c_a, c_b, s, GROUPS), base, atol=1e-12)
    # but not to rotations that mix different levels
    mixed = _gauge_transform(c_other, ((0, 1),), rng)
    mixed = np.concatenate([mixed[:, :2], c_other[:, 2:]], axis=1)
    assert abs(float(orbitals.subspace_loss(c, mixed, s, GROUPS)) - base) > 1e-6


def test_subspace_loss_equals_projector_distance_and_singletons_reduce_to_overlap():
    _, s, c = _system(10)
    rng = _rng(11)
    c_other = scipy.linalg.solve_triangular(np.linalg.cholesky(s).T, _orthogonal(rng, N_AO), lower=False)
    s_half = scipy.linalg.sqrtm(s).real

    def proj(x, g):
        return x[:, list(g)] @ x[:, list(g)].T

    expected = sum(0.5 * np.linalg.norm(s_half @ (proj(c, g) - proj(c_other, g)) @ s_half) ** 2
                   for g in GROUPS) / N_AO
    np.testing.assert_allclose(orbitals.subspace_loss(c, c_other, s, GROUPS), expected, atol=1e-12)
    singles = tuple((i,) for i in range(N_AO))
    np.testing.assert_allclose(orbitals.subspace_loss(c, c_other, s, singles),
                               np.mean(orbitals.sign_invariant_overlap(c, c_other, s)), atol=1e-12)


def test_subspace_loss_gradient_wrt_coefficients_matches_fd():
    _, s, c = _system(12)
    rng = _rng(13)
    c_pred = c + 0.1 * rng.normal(size=c.shape)
    d = rng.normal(size=c.shape)
    loss = lambda x: orbitals.subspace_loss(c, x, s, GROUPS)  # noqa: E731
    g = jax.grad(loss)(c_pred)
    np.testing.assert_allclose(jnp.sum(g * d), fd(loss, c_pred, d), rtol=1e-7)


def test_subspace_loss_through_degenerate_eigensolver():
    """Loss of the eigenvectors of F + t D against the reference C at exactly degenerate F:
    zero at t = 0 whatever basis eigh picks inside each level, finite gradients w.r.t. F and S
    that match finite differences, finite Hessian; and invariant (to ~1e-12) to the gauge."""
    f, s, c_ref = _system(14)
    d = _sym(_rng(15))

    def loss_f(x):
        _, c = linalg.eigh_generalized(x, s)
        return orbitals.subspace_loss(c_ref, c, s, GROUPS)

    def loss_s(x):
        _, c = linalg.eigh_generalized(f, x)
        return orbitals.subspace_loss(c_ref, c, x, GROUPS)

    assert abs(float(loss_f(f))) < 1e-12
    for loss, x0 in ((loss_f, f + 0.05 * d), (loss_s, s + 0.02 * d), (loss_f, f)):
        g = jax.grad(loss)(x0)
        assert np.all(np.isfinite(g))
        direction = _sym(_rng(16))
        np.testing.assert_allclose(jnp.sum(g * direction), fd(loss, x0, direction), rtol=1e-6, atol=1e-10)
    assert np.all(np.isfinite(jax.hessian(loss_f)(f)))
    # a loss on the reference density within a window behaves the same way
    gamma_ref = orbitals.density_matrix(c_ref[:, :3], np.full(3, 2.0))

    def density_loss(x):
        _, c = linalg.eigh_generalized(x, s)
        return jnp.sum((orbitals.density_matrix(c[:, :3], jnp.full(3, 2.0)) - gamma_ref) ** 2)

    g = jax.grad(density_loss)(f + 0.05 * d)
    direction = _sym(_rng(17))
    np.testing.assert_allclose(jnp.sum(g * direction), fd(density_loss, f + 0.05 * d, direction), rtol=1e-6)


def test_subspace_loss_is_jittable_with_static_groups():
    _, s, c = _system(18)
    jitted = jax.jit(orbitals.subspace_loss, static_argnums=3)
    np.testing.assert_allclose(jitted(c, c, s, GROUPS), 0.0, atol=1e-12)

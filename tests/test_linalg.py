"""Tests of jaxks.linalg: degeneracy-safe eigensolvers, checked against NumPy/SciPy/PySCF values
and central finite differences (5-point stencil, so truncation error ~h^4 stays far below 1e-6)."""

import jaxks  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxks import linalg

N = 6
DEGENERATE_SPECTRUM = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
RTOL_FD = 1e-6


def _rng(seed):
    return np.random.default_rng(seed)


def _orthogonal(rng, n=N):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def _sym(rng, n=N):
    a = rng.normal(size=(n, n))
    return a + a.T


def _spd(rng, n=N):
    b = rng.normal(size=(n, n))
    return b @ b.T / n + 0.5 * np.eye(n)


def _degenerate_generalized(rng, s, spectrum=DEGENERATE_SPECTRUM):
    """F with F C = S C diag(spectrum), C^T S C = I: C = L^{-T} Q, S = L L^T, F = S C e C^T S."""
    c = scipy.linalg.solve_triangular(np.linalg.cholesky(s).T, _orthogonal(rng), lower=False)
    return s @ c @ np.diag(spectrum) @ c.T @ s


def fd(f, x, d, h=3e-4):
    """Central 5-point finite-difference directional derivative of f at x along d."""
    fp2, fp1, fm1, fm2 = (np.asarray(f(x + t * h * d)) for t in (2, 1, -1, -2))
    return (-fp2 + 8 * fp1 - 8 * fm1 + fm2) / (12 * h)


def assert_close(actual, expected, rtol=RTOL_FD, atol=1e-9):
    """max|actual - expected| <= rtol * max|expected| + atol (atol for derivatives that are 0)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.all(np.isfinite(actual))
    err = np.max(np.abs(actual - expected))
    bound = rtol * np.max(np.abs(expected)) + atol
    assert err <= bound, f"error {err:.2e} > {bound:.2e} (max|expected| = {np.max(np.abs(expected)):.2e})"


def sign_fixed(v, ref):
    """Eigenvector columns with the sign fixed by the (primal) largest component of ``ref``."""
    idx = np.argmax(np.abs(ref), axis=0)
    signs = jnp.sign(v[idx, np.arange(v.shape[1])])
    return v * signs


# ----------------------------------------------------------------------------- standard eigh


def test_eigh_values_match_numpy_and_reconstruct():
    a = _sym(_rng(0))
    w, v = linalg.eigh(a)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a), atol=1e-12)
    np.testing.assert_allclose(a @ v, v * w, atol=1e-12)
    np.testing.assert_allclose(v.T @ v, np.eye(N), atol=1e-12)


def test_eigh_batched_and_jitted():
    rng = _rng(1)
    stack = np.stack([_sym(rng) for _ in range(3)])
    w, _ = jax.jit(linalg.eigh)(stack)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(stack), atol=1e-12)
    jac = jax.jacfwd(lambda a: linalg.eigh(a)[0])(stack)
    assert np.all(np.isfinite(jac))


def test_eigh_jvp_eigenvalues_and_eigenvectors_match_fd():
    rng = _rng(2)
    a, d = _sym(rng), _sym(rng)
    _, v0 = np.linalg.eigh(a)

    def f(x):
        w, v = linalg.eigh(x)
        return w, sign_fixed(v, v0)

    _, (dw, dv) = jax.jvp(f, (a,), (d,))
    assert_close(dw, fd(lambda x: f(x)[0], a, d))
    assert_close(dv, fd(lambda x: f(x)[1], a, d))


def test_eigh_vjp_matches_fd():
    rng = _rng(3)
    a, d, m = _sym(rng), _sym(rng), rng.normal(size=(N, N))
    _, v0 = np.linalg.eigh(a)
    coef = rng.normal(size=N)

    def loss(x):
        w, v = linalg.eigh(x)
        return jnp.sum(coef * w) + jnp.sum(m * sign_fixed(v, v0))

    g = jax.grad(loss)(a)
    assert_close(jnp.sum(g * d), fd(loss, a, d))


# ------------------------------------------------------------ exactly degenerate spectrum


def _degenerate_matrix(seed):
    q = _orthogonal(_rng(seed))
    return q @ np.diag(DEGENERATE_SPECTRUM) @ q.T


_M = _rng(99).normal(size=(N, N))


def _projector(x, k):
    _, v = linalg.eigh(x)
    return v[:, :k] @ v[:, :k].T


# Gauge-invariant scalars: (name, function, Hessian exact at the degeneracy?)
INVARIANTS = [
    ("sum_eigenvalues_all", lambda x: jnp.sum(linalg.eigh(x)[0]), True),
    ("sum_lowest_2", lambda x: jnp.sum(linalg.eigh(x)[0][:2]), True),
    ("sum_degenerate_group_345", lambda x: jnp.sum(linalg.eigh(x)[0][3:]), True),
    ("sum_squares_lowest_2", lambda x: jnp.sum(linalg.eigh(x)[0][:2] ** 2), False),
    ("sum_squares_lowest_3", lambda x: jnp.sum(linalg.eigh(x)[0][:3] ** 2), False),
    ("projector_lowest_2_dot_M", lambda x: jnp.sum(_projector(x, 2) * _M), True),
    ("projector_lowest_3_dot_M", lambda x: jnp.sum(_projector(x, 3) * _M), True),
    ("trace_PAPA_lowest_3", lambda x: jnp.trace(_projector(x, 3) @ x @ _projector(x, 3) @ x), True),
]


@pytest.mark.parametrize("name,func,_", INVARIANTS, ids=[i[0] for i in INVARIANTS])
def test_degenerate_gradients_finite_and_match_fd(name, func, _):
    a = _degenerate_matrix(4)
    d = _sym(_rng(5))
    g = jax.grad(func)(a)
    assert np.all(np.isfinite(g))
    assert_close(jnp.sum(g * d), fd(func, a, d))


@pytest.mark.parametrize("name,func,exact", INVARIANTS, ids=[i[0] for i in INVARIANTS])
def test_degenerate_hessians_finite_and_match_fd_where_exact(name, func, exact):
    a = _degenerate_matrix(6)
    d = _sym(_rng(7))
    h = jax.hessian(func)(a)
    assert np.all(np.isfinite(h)), name
    if exact:
        grad = jax.grad(func)
        assert_close(jnp.einsum("ijkl,kl->ij", h, d), fd(grad, a, d))


def test_hessian_of_nonlinear_group_function_misses_only_the_documented_term():
    """The documented limit: for sum_{i<3} w_i^2 with w_0 = w_1, our Hessian lacks exactly
    2 V_g offdiag(V_g^T D V_g) V_g^T (g = {0, 1}, V_g the basis eigh returned: the deficient Hessian
    depends on that gauge); with it added it equals finite differences."""
    func = INVARIANTS[4][1]
    a = _degenerate_matrix(8)
    d = _sym(_rng(9))
    hv = jnp.einsum("ijkl,kl->ij", jax.hessian(func)(a), d)
    _, v = linalg.eigh(a)
    vg = np.asarray(v[:, :2])
    k = vg.T @ d @ vg
    missing = 2 * vg @ (k - np.diag(np.diag(k))) @ vg.T
    expected = fd(jax.grad(func), a, d)
    assert np.max(np.abs(hv - expected)) > 1e-3  # the limitation is real ...
    assert_close(hv + missing, expected)  # ... and it is exactly this term


def test_naive_jax_eigh_gives_nan_where_ours_is_finite():
    a = jnp.diag(jnp.asarray(DEGENERATE_SPECTRUM))  # exactly equal eigenvalues, no rounding split

    def proj_loss(x, eig):
        _, v = eig(x)
        return jnp.sum(v[:, :2] @ v[:, :2].T * _M)

    naive = jax.grad(proj_loss)(a, jnp.linalg.eigh)
    ours = jax.grad(proj_loss)(a, linalg.eigh)
    assert not np.all(np.isfinite(naive))
    assert np.all(np.isfinite(ours))
    d = _sym(_rng(10))
    assert_close(jnp.sum(ours * d), fd(lambda x: proj_loss(x, linalg.eigh), a, d))
    assert np.all(np.isfinite(jax.hessian(lambda x: proj_loss(x, linalg.eigh))(a)))


def test_near_degenerate_within_tolerance_is_treated_as_degenerate():
    """A splitting of 1e-13 (< tol = 1e-9 * 3) gives the same projector gradient as an exact
    degeneracy, instead of terms of size 1/1e-13."""
    q = _orthogonal(_rng(11))
    split = DEGENERATE_SPECTRUM + np.array([0, 1e-13, 0, 0, 2e-13, -1e-13])
    exact = jax.grad(lambda x: jnp.sum(_projector(x, 2) * _M))(q @ np.diag(DEGENERATE_SPECTRUM) @ q.T)
    near = jax.grad(lambda x: jnp.sum(_projector(x, 2) * _M))(q @ np.diag(split) @ q.T)
    np.testing.assert_allclose(near, exact, atol=1e-8)


def test_eigh_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        linalg.eigh(np.ones((3, 4)))


# ----------------------------------------------------------------------- orthogonalizer


def test_orthogonalizer_value_and_orthonormality():
    s = _spd(_rng(12))
    x = linalg.orthogonalizer(s)
    np.testing.assert_allclose(x.T @ s @ x, np.eye(N), atol=1e-12)
    e, u = np.linalg.eigh(s)
    np.testing.assert_allclose(np.abs(x), np.abs(u / np.sqrt(e)), atol=1e-10)  # canonical, up to sign


@pytest.mark.parametrize("degenerate", [False, True], ids=["random_S", "degenerate_S"])
def test_orthogonalizer_derivatives_of_invariants_match_fd(degenerate):
    rng = _rng(13)
    if degenerate:
        q = _orthogonal(rng)
        s = q @ np.diag([0.5, 0.5, 1.0, 2.0, 2.0, 2.0]) @ q.T
    else:
        s = _spd(rng)
    d = _sym(rng)

    def pinv(x):  # X X^T = S^{-1}: gauge invariant
        xx = linalg.orthogonalizer(x)
        return xx @ xx.T

    _, dp = jax.jvp(pinv, (s,), (d,))
    assert_close(dp, fd(pinv, s, d))
    # the tangent keeps X^T S X = I to first order: d(X^T S X) = 0
    x, dx = jax.jvp(linalg.orthogonalizer, (s,), (d,))
    np.testing.assert_allclose(dx.T @ s @ x + x.T @ d @ x + x.T @ s @ dx, 0.0, atol=1e-10)
    scalar = lambda x: jnp.sum(pinv(x) * _M)  # noqa: E731
    hv = jnp.einsum("ijkl,kl->ij", jax.hessian(scalar)(s), d)
    assert_close(hv, fd(jax.grad(scalar), s, d))


def test_orthogonalizer_derivative_of_frame_matches_fd_for_random_s():
    """Non-degenerate S: the frame's own derivative is gauge-covariant, i.e. equals the finite
    difference of U_k s_k^{-1/2} up to an infinitesimal rotation X dR (dR antisymmetric)."""
    rng = _rng(14)
    s, d = _spd(rng), _sym(rng)
    x_raw = np.asarray(linalg.orthogonalizer(s))
    frame = lambda x: sign_fixed(linalg.orthogonalizer(x), x_raw)  # noqa: E731
    x0 = np.asarray(frame(s))
    _, dx = jax.jvp(frame, (s,), (d,))
    diff = np.linalg.solve(x0, np.asarray(dx) - fd(frame, s, d))  # = dR
    np.testing.assert_allclose(diff, -diff.T, atol=1e-7)


def _near_singular_overlap(rng, n=N, tiny=1e-10):
    q = _orthogonal(rng, n)
    return q @ np.diag(np.r_[tiny, np.linspace(0.2, 2.0, n - 1)]) @ q.T


def test_n_independent_matches_pyscf_rule():
    from pyscf.scf import hf

    rng = _rng(15)
    for s in (_near_singular_overlap(rng), _spd(rng)):
        assert linalg.n_independent(s) == hf.check_linear_dependency(s).shape[1]
    assert linalg.n_independent(_near_singular_overlap(rng)) == N - 1
    with pytest.raises(ValueError, match="symmetric"):
        linalg.n_independent(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="square"):
        linalg.n_independent(np.ones((2, 3)))


def test_orthogonalizer_drops_near_linear_dependence():
    rng = _rng(16)
    s, f, d = _near_singular_overlap(rng), _sym(rng), _sym(rng)
    n_keep = linalg.n_independent(s)
    assert n_keep == N - 1
    x = linalg.orthogonalizer(s, n_keep)
    assert x.shape == (N, n_keep)
    np.testing.assert_allclose(x.T @ s @ x, np.eye(n_keep), atol=1e-10)
    # reference: PySCF's canonical orthogonalisation, then a plain symmetric eigenproblem
    from pyscf.scf import hf

    x_ref = hf.check_linear_dependency(s)
    eps, c = linalg.eigh_generalized(f, s, n_keep)
    np.testing.assert_allclose(eps, np.linalg.eigvalsh(x_ref.T @ f @ x_ref), atol=1e-10)
    # in the truncated basis the residual F C - S C eps is orthogonal to the kept space only
    np.testing.assert_allclose(x.T @ (f @ c - s @ c * eps), 0.0, atol=1e-8)
    # derivatives in the kept space: generalized eigenvalues w.r.t. S and F
    ev = lambda ss: linalg.eigh_generalized(f, ss, n_keep)[0]  # noqa: E731
    assert_close(jax.jvp(ev, (s,), (d,))[1], fd(ev, s, d, h=1e-4))
    ef = lambda ff: linalg.eigh_generalized(ff, s, n_keep)[0]  # noqa: E731
    assert_close(jax.jvp(ef, (f,), (d,))[1], fd(ef, f, d))


def test_orthogonalizer_rejects_bad_n_keep():
    with pytest.raises(ValueError, match="n_keep"):
        linalg.orthogonalizer(np.eye(3), 4)
    with pytest.raises(ValueError, match="n_keep"):
        linalg.orthogonalizer(np.eye(3), 0)


# --------------------------------------------------------------------- generalized eigh


def test_eigh_generalized_matches_scipy():
    rng = _rng(17)
    f, s = _sym(rng), _spd(rng)
    eps, c = linalg.eigh_generalized(f, s)
    np.testing.assert_allclose(eps, scipy.linalg.eigh(f, s, eigvals_only=True), atol=1e-10)
    np.testing.assert_allclose(c.T @ s @ c, np.eye(N), atol=1e-10)
    np.testing.assert_allclose(f @ c, s @ c * eps, atol=1e-10)


@pytest.mark.parametrize("wrt", ["F", "S"])
def test_eigh_generalized_jvp_and_vjp_match_fd(wrt):
    rng = _rng(18)
    f, s, d, m = _sym(rng), _spd(rng), _sym(rng), rng.normal(size=(N, N))
    _, c0 = scipy.linalg.eigh(f, s)

    def solve(x):
        args = (x, s) if wrt == "F" else (f, x)
        eps, c = linalg.eigh_generalized(*args)
        return eps, sign_fixed(c, c0)

    x0 = f if wrt == "F" else s
    _, (deps, dc) = jax.jvp(solve, (x0,), (d,))
    assert_close(deps, fd(lambda x: solve(x)[0], x0, d))
    assert_close(dc, fd(lambda x: solve(x)[1], x0, d))

    def loss(x):
        eps, c = solve(x)
        return jnp.sum(eps**2) + jnp.sum(m * c)

    assert_close(jnp.sum(jax.grad(loss)(x0) * d), fd(loss, x0, d))


def _generalized_invariant(f, s, k):
    eps, c = linalg.eigh_generalized(f, s)
    return jnp.sum(c[:, :k] @ c[:, :k].T * _M) + jnp.sum(eps[:k])


CASES = ["degenerate_F", "degenerate_S", "identity_S", "degenerate_F_and_S"]


def _case(name):
    rng = _rng(19)
    q = _orthogonal(rng)
    s_deg = q @ np.diag([0.5, 0.5, 1.0, 2.0, 2.0, 2.0]) @ q.T
    if name == "degenerate_F":
        s = _spd(rng)
        return _degenerate_generalized(rng, s), s
    if name == "degenerate_S":
        return _sym(rng), s_deg
    if name == "identity_S":
        return _sym(rng), np.eye(N)
    return _degenerate_generalized(rng, s_deg), s_deg


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [2, 3])
def test_eigh_generalized_degenerate_invariants(case, k):
    """Projector onto the lowest k states (contracted with M) plus the sum of the lowest k
    eigenvalues: first derivatives w.r.t. F and S and Hessian-vector products match FD."""
    f, s = _case(case)
    eps = scipy.linalg.eigh(f, s, eigvals_only=True)
    assert eps[k] - eps[k - 1] > 0.1  # k does not split a degenerate level
    d = _sym(_rng(20))
    for argnum, x0 in ((0, f), (1, s)):
        def func(x, argnum=argnum):
            return _generalized_invariant(x, s, k) if argnum == 0 else _generalized_invariant(f, x, k)

        grad = jax.grad(func)
        assert_close(jnp.sum(grad(x0) * d), fd(func, x0, d))
        hess = jax.hessian(func)(x0)
        assert np.all(np.isfinite(hess))
        assert_close(jnp.einsum("ijkl,kl->ij", hess, d), fd(grad, x0, d))


def test_eigh_generalized_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same size"):
        linalg.eigh_generalized(np.eye(3), np.eye(4))

"""jaxks.krylov.gmres against dense solves, with products counted independently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.krylov import gmres


def _system(n=30, seed=0):
    rng = np.random.default_rng(seed)
    a = np.diag(np.linspace(1.0, 30.0, n)) + 0.5 * rng.normal(size=(n, n))  # nonsymmetric
    return jnp.asarray(a), jnp.asarray(rng.normal(size=n))


def _counted(a, calls):
    def matvec(v):
        jax.debug.callback(lambda: calls.append(1))
        return a @ v
    return matvec


@pytest.mark.parametrize("restart", [7, 40])
def test_solves_and_counts_products(restart):
    a, b = _system()
    calls = []
    x, rel, n = jax.jit(lambda b: gmres(_counted(a, calls), b, tol=1e-11, restart=restart,
                                        maxiter=50))(b)
    jax.block_until_ready(x)
    exact = np.linalg.solve(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(x, exact, rtol=0, atol=1e-8 * np.max(np.abs(exact)))
    true_rel = np.linalg.norm(np.asarray(a) @ np.asarray(x) - b) / np.linalg.norm(b)
    assert true_rel <= 1e-11 and abs(float(rel) - true_rel) < 1e-13
    assert int(n) == len(calls)
    if restart == 40:  # one cycle, stopped early inside it: k Arnoldi steps + 1 residual
        assert int(n) <= 31


def test_warm_start_from_the_solution_costs_one_product():
    a, b = _system()
    x, _, _ = gmres(lambda v: a @ v, b, tol=1e-12, restart=40)
    x2, rel, n = gmres(lambda v: a @ v, b, x, tol=1e-10, restart=40)
    assert int(n) == 1 and float(rel) <= 1e-10
    np.testing.assert_array_equal(x2, x)


def test_preconditioner_and_vmap():
    a, b = _system(seed=1)
    d = jnp.diag(a)
    plain = gmres(lambda v: a @ v, b, tol=1e-10, restart=40)
    pre = gmres(lambda v: a @ v, b, precond=lambda r: r / d, tol=1e-10, restart=40)
    np.testing.assert_allclose(pre[0], plain[0], rtol=1e-8)
    assert int(pre[2]) < int(plain[2])
    bs = jnp.stack([b, jnp.zeros_like(b), 3.0 * b + 1.0])
    xs, rels, ns = jax.vmap(lambda v: gmres(lambda w: a @ w, v, tol=1e-10, restart=40))(bs)
    for k in range(3):
        x, rel, n = gmres(lambda w: a @ w, bs[k], tol=1e-10, restart=40)
        np.testing.assert_allclose(xs[k], x, rtol=1e-12, atol=1e-14)
        assert int(ns[k]) == int(n)
    assert int(ns[1]) == 0 and float(jnp.max(jnp.abs(xs[1]))) == 0.0  # b = 0: x = 0, no work

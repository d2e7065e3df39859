"""Restarted GMRES that reports its work: a jittable, vmappable Krylov solver for A x = b.

Right-preconditioned GMRES(m) (Saad & Schultz 1986): each cycle builds an orthonormal basis
V of the Krylov space K_k(A M, r) by Arnoldi (classical Gram-Schmidt applied twice, which keeps
V orthonormal to rounding), minimises ‖r − A M V y‖ with Givens rotations, updates
x ← x + M V y, and recomputes the true residual r = b − A x. Because the preconditioner acts
on the right, the residual it minimises and tests is the unpreconditioned one, so ``tol``
means the same with or without M.

Unlike ``jax.scipy.sparse.linalg.gmres`` it stops inside a cycle as soon as the residual
estimate meets the tolerance, and returns the number of products with A it used (every
``lax.while_loop``, no host callback), so a caller can log the cost of each solve.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _dot(basis, w):
    """⟨V_i, w⟩ for every row i of the stacked basis V [m+1, ...] and w [...]."""
    return jnp.tensordot(basis, w, axes=w.ndim)


def gmres(matvec: Callable, b: jax.Array, x0: jax.Array | None = None, *,
          precond: Callable | None = None, tol: float = 1e-10, atol: float = 0.0,
          restart: int = 30, maxiter: int = 20):
    """Solve A x = b by right-preconditioned restarted GMRES, counting products with A.

    Stops when ‖b − A x‖ ≤ max(tol‖b‖, atol) or after ``maxiter * restart`` Arnoldi steps.
    Vectors may be arrays of any shape (the inner product is the Frobenius one).

    Args:
        matvec: linear map x ↦ A x (same shape in and out).
        b: right-hand side.
        x0: initial guess; ``None`` starts from x = 0 without spending a product on b − A·0.
        precond: linear map r ↦ M r approximating A⁻¹ (identity if ``None``).
        tol, atol: relative and absolute residual tolerances.
        restart: Krylov dimension per cycle (m).
        maxiter: maximum number of cycles.
    Returns:
        (x, relative residual ‖b − A x‖/‖b‖ as a scalar, number of products with A as int32).
        Products: one per Arnoldi step, one per recomputed residual at the end of each cycle,
        plus one for b − A x0 when a guess is given. x = 0 (and no product) when b = 0.
    """
    m = int(restart)
    max_steps = int(maxiter) * m
    precond = precond or (lambda r: r)
    dtype = b.dtype
    bnorm = jnp.linalg.norm(b)
    nonzero = bnorm > 0
    # b = 0 has the solution 0; an infinite target ends the loops at once
    target = jnp.where(nonzero, jnp.maximum(tol * bnorm, atol), jnp.inf)
    if x0 is None:
        x, r, n_mv = jnp.zeros_like(b), b, jnp.zeros((), jnp.int32)
    else:
        x = jnp.where(nonzero, x0, 0.0)
        r, n_mv = b - matvec(x), jnp.ones((), jnp.int32)

    def cycle(state):
        x, r, rnorm, n_mv, steps = state
        basis = jnp.zeros((m + 1,) + b.shape, dtype).at[0].set(r / rnorm)
        hess = jnp.zeros((m + 1, m), dtype)  # the Hessenberg matrix after the rotations: R
        cs, sn = jnp.zeros(m, dtype), jnp.zeros(m, dtype)
        g = jnp.zeros(m + 1, dtype).at[0].set(rnorm)

        def arnoldi_cond(t):
            *_, g, j = t
            return (j < m) & (jnp.abs(g[j]) > target) & (steps + j < max_steps)

        def arnoldi_step(t):
            basis, hess, cs, sn, g, j = t
            w = matvec(precond(basis[j]))
            live = jnp.arange(m + 1) <= j
            h = jnp.where(live, _dot(basis, w), 0.0)
            w = w - jnp.tensordot(h, basis, axes=1)
            h2 = jnp.where(live, _dot(basis, w), 0.0)  # second pass: orthogonal to rounding
            w = w - jnp.tensordot(h2, basis, axes=1)
            h = h + h2
            wnorm = jnp.linalg.norm(w)
            basis = basis.at[j + 1].set(w / jnp.where(wnorm > 0, wnorm, 1.0))
            h = h.at[j + 1].set(wnorm)

            def rotate(i, h):  # the earlier rotations, i < j
                hi, hk = h[i], h[i + 1]
                on = i < j
                return (h.at[i].set(jnp.where(on, cs[i] * hi + sn[i] * hk, hi))
                         .at[i + 1].set(jnp.where(on, -sn[i] * hi + cs[i] * hk, hk)))

            h = jax.lax.fori_loop(0, m, rotate, h)
            den = jnp.hypot(h[j], h[j + 1])
            safe = jnp.where(den > 0, den, 1.0)
            c, s = jnp.where(den > 0, h[j] / safe, 1.0), h[j + 1] / safe
            h = h.at[j].set(den).at[j + 1].set(0.0)
            g = g.at[j + 1].set(-s * g[j]).at[j].set(c * g[j])
            return basis, hess.at[:, j].set(h), cs.at[j].set(c), sn.at[j].set(s), g, j + 1

        basis, hess, _, _, g, k = jax.lax.while_loop(
            arnoldi_cond, arnoldi_step, (basis, hess, cs, sn, g, jnp.zeros((), jnp.int32)))
        used = jnp.arange(m) < k
        r_k = jnp.where(used[:, None] & used[None, :], hess[:m], jnp.eye(m, dtype=dtype))
        y = jax.scipy.linalg.solve_triangular(r_k, jnp.where(used, g[:m], 0.0), lower=False)
        x = x + precond(jnp.tensordot(y, basis[:m], axes=1))
        r = b - matvec(x)
        return x, r, jnp.linalg.norm(r), n_mv + k + 1, steps + k

    def unconverged(state):
        _, _, rnorm, _, steps = state
        return (rnorm > target) & (steps < max_steps)

    x, _, rnorm, n_mv, _ = jax.lax.while_loop(
        unconverged, cycle, (x, r, jnp.linalg.norm(r), n_mv, jnp.zeros((), jnp.int32)))
    rel = jnp.where(nonzero, rnorm / jnp.where(nonzero, bnorm, 1.0), 0.0)
    return x, rel, n_mv

"""Derivatives of the self-consistent solution by the implicit function theorem.

The SCF density is a fixed point of the Kohn-Sham map

    Γ* = Φ(Γ*, θ),    Φ(Γ, θ) = 2 X P_occ(Xᵀ F[Γ, θ] X) Xᵀ

with P_occ(A) the projector on the lowest N/2 eigenvectors of A. Differentiating,
dΓ* = (1 − ∂Φ/∂Γ)⁻¹ ∂Φ/∂θ dθ, so a cotangent Γ̄ reaches θ as

    u = Γ̄ + (∂Φ/∂Γ)ᵀ u        (one matrix-free adjoint linear solve, GMRES)
    θ̄ = (∂Φ/∂θ)ᵀ u.

Only Γ* is stored for the backward pass: memory does not grow with the number of SCF cycles and
no derivative is taken through DIIS. The observables (energy, ε, C, F) then come from one
differentiable Fock build and one degeneracy-safe diagonalisation at Γ* (:func:`jaxks.scf.finalize`).

The derivative of P_occ only involves occupied-virtual pairs,

    dP = V_v (K ∘ V_vᵀ dA V_o) V_oᵀ + transpose,    K_ai = 1/(ε_i − ε_a),

so it is finite whenever there is a HOMO-LUMO gap, whatever degeneracies exist within the
occupied or virtual spaces.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import gmres

from jaxks import exchange, linalg
from jaxks.integrals import Integrals
from jaxks.linalg import orthogonalizer
from jaxks.scf import (SCFOptions, SCFResult, _scf_loop, finalize, fock_matrix,
                       resolve_xc)


@dataclasses.dataclass(frozen=True)
class AdjointOptions:
    """Settings of the adjoint linear solve (hashable).

    Attributes:
        tol: relative residual tolerance of GMRES.
        restart: Krylov subspace size per restart.
        maxiter: maximum number of restarts.
        warn: report (via a host callback) when the solve misses its tolerance.
    """

    tol: float = 1e-10
    restart: int = 30
    maxiter: int = 20
    warn: bool = True


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def occupied_projector(a: jax.Array, n_occ: int) -> jax.Array:
    """P = Σ_{i<n_occ} v_i v_iᵀ for symmetric A [n, n] with eigenvectors v_i (ascending ε).

    The JVP uses only occupied-virtual pairs (see the module docstring): finite for any
    degeneracy inside the occupied or the virtual space, as long as ε_{n_occ} > ε_{n_occ−1}.
    """
    _, v = jnp.linalg.eigh(a)
    vo = v[:, :n_occ]
    return vo @ vo.T


@occupied_projector.defjvp
def _occupied_projector_jvp(n_occ, primals, tangents):
    (a,), (da,) = primals, tangents
    eps, v = jnp.linalg.eigh(a)
    vo, vv = v[:, :n_occ], v[:, n_occ:]
    k = 1.0 / (eps[:n_occ][None, :] - eps[n_occ:][:, None])  # [n_virt, n_occ]
    x = vv @ (k * (vv.T @ da @ vo)) @ vo.T
    return vo @ vo.T, x + x.T


def scf_map(gamma, ints: Integrals, params, xc, term) -> jax.Array:
    """The Kohn-Sham map Φ(Γ, θ) = 2 X P_occ(Xᵀ F[Γ, θ] X) Xᵀ [nao, nao]."""
    fock, _ = fock_matrix(gamma, ints, xc, term, params)
    x = orthogonalizer(ints.S, ints.n_mo)
    return 2.0 * x @ occupied_projector(x.T @ fock @ x, ints.n_occ) @ x.T


def _sym(m):
    return 0.5 * (m + m.T)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def scf_density(xc, term, options: SCFOptions, adjoint: AdjointOptions, ints, params, guess):
    """Self-consistent density Γ* [nao, nao] with the loop's diagnostics, differentiable in
    ``ints`` and ``params`` by the implicit function theorem (not in ``guess``).

    Returns:
        (Γ*, info) with info a dict of ``converged``, ``cycle``, ``delta_e``, ``comm``.
    """
    s = _scf_loop(ints, params, guess, xc, term, options)
    return s["gamma"], _info(s)


def _info(s):
    return dict(converged=s["converged"], cycle=s["cycle"], delta_e=s["delta_e"], comm=s["comm"])


def _scf_density_fwd(xc, term, options, adjoint, ints, params, guess):
    s = _scf_loop(ints, params, guess, xc, term, options)
    return (s["gamma"], _info(s)), (ints, params, s["gamma"], guess)


class AdjointNotConvergedWarning(RuntimeWarning):
    """The adjoint linear solve of an SCF gradient missed its tolerance."""


def _warn_adjoint(residual, tol):
    import warnings

    import numpy as np

    worst = float(np.max(residual))  # batched under vmap/jacrev
    if worst > 100 * tol:
        warnings.warn(f"adjoint SCF linear solve did not converge: relative residual "
                      f"{worst:.2e} > tol {tol:.0e}; gradients may be inaccurate",
                      AdjointNotConvergedWarning, stacklevel=1)


def _scf_density_bwd(xc, term, options, adjoint, res, cotangents):
    ints, params, gamma, guess = res
    gbar = _sym(cotangents[0])
    _, vjp_gamma = jax.vjp(lambda g: scf_map(g, ints, params, xc, term), gamma)

    def matvec(u):  # (1 − ∂Φ/∂Γ)ᵀ u on the symmetric subspace
        return u - _sym(vjp_gamma(u)[0])

    u, _ = gmres(matvec, gbar, x0=gbar, tol=adjoint.tol, atol=0.0, restart=adjoint.restart,
                 maxiter=adjoint.maxiter, solve_method="batched")
    if adjoint.warn:
        rel = jnp.linalg.norm(matvec(u) - gbar) / jnp.maximum(jnp.linalg.norm(gbar), 1e-300)
        # the host decides: under vmap a lax.cond would run both branches
        jax.debug.callback(_warn_adjoint, rel, adjoint.tol)
    _, vjp_theta = jax.vjp(lambda i, p: scf_map(gamma, i, p, xc, term), ints, params)
    ints_bar, params_bar = vjp_theta(u)
    return ints_bar, params_bar, jnp.zeros_like(guess)


scf_density.defvjp(_scf_density_fwd, _scf_density_bwd)


def solve(ints: Integrals, xc="pbe", *, term=None, params=None,
          options: SCFOptions = SCFOptions(), adjoint: AdjointOptions = AdjointOptions(),
          guess: jax.Array | None = None) -> SCFResult:
    """The SCF solution as a differentiable function of θ (``params``) and of the integrals.

    Forward: the jit-compiled SCF loop. Backward: one adjoint solve at Γ* (see module docstring),
    then one differentiable Fock build and degeneracy-safe diagonalisation, so that ``energy``,
    ``mo_energy``, ``mo_coeff``, ``gamma`` and ``fock`` of the returned :class:`SCFResult` all
    carry exact derivatives. Jittable; no host synchronisation (check ``result.converged``).
    """
    xc = resolve_xc(xc)
    exchange.check_integrals(ints, xc)
    if guess is None:
        guess = ints.guess
    gamma, info = scf_density(xc, term, options, adjoint, ints, params, jax.lax.stop_gradient(guess))
    return finalize(ints, params, gamma, xc, term, loop_state=info, eigh=linalg.eigh)

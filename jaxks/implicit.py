"""Derivatives of the self-consistent solution by the implicit function theorem.

The SCF density is a fixed point of the Kohn-Sham map

    Γ* = Φ(Γ*, θ),    Φ(Γ, θ) = 2 X P_occ(Xᵀ F[Γ, θ] X) Xᵀ

with P_occ(A) the projector on the lowest N/2 eigenvectors of A. Differentiating,
dΓ* = (1 − ∂Φ/∂Γ)⁻¹ ∂Φ/∂θ dθ, so a cotangent Γ̄ reaches θ as

    u = Γ̄ + (∂Φ/∂Γ)ᵀ u        (one matrix-free adjoint linear solve, GMRES)
    θ̄ = (∂Φ/∂θ)ᵀ u.

Each product with the adjoint operator is one forward-mode derivative of the Fock build:
∂Φ/∂Γ = L ∘ ∂F/∂Γ with L = ∂Φ/∂F (:func:`projector_response`) and ∂F/∂Γ = ∂²E/∂Γ² both
self-adjoint, so (∂Φ/∂Γ)ᵀ u = ∂F/∂Γ[L u]. The solve is :func:`jaxks.krylov.gmres`, which
counts these products (readable by the caller, see :func:`solve`).

Optional preconditioner (``AdjointOptions.precondition``), in the molecular-orbital basis of
the converged Fock matrix (C = [C_o C_v], CᵀSC = 1). Writing u = S C Y Cᵀ S, only the
occupied-virtual block Y_ai of u enters (∂Φ/∂Γ)ᵀ u (see dP below), and the Coulomb part of
the operator has the diagonal

    D_ai = 1 + 4 (ai|ai) / (ε_a − ε_i),    (ai|ai) = Σ_P (c_aᵀ B_P c_i)²,

(1 on occupied-occupied and virtual-virtual pairs, where the operator is the identity). M
divides the ov block of Cᵀ r C by D and leaves the rest of r alone; exchange-correlation and
the energy term are left out of D. GMRES runs with M on the right, so its tolerance is on the
true residual ‖Γ̄ − (1 − ∂Φ/∂Γ)ᵀ u‖ / ‖Γ̄‖ with or without M. For water clusters the
diagonal is already 1–1.6 (exchange-correlation cancels part of the Coulomb term) and
this M does not reduce the number of products ((H2O)1–4); for the monomer not even the exact
diagonal (from 95 products) does: the solve's cost is set by the collective (off-diagonal)
response, so M is off by default.

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
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxks import exchange, linalg
from jaxks.integrals import Integrals
from jaxks.krylov import gmres
from jaxks.linalg import orthogonalizer
from jaxks.pairs import PairList, unpack
from jaxks.scf import (SCFOptions, SCFResult, _scf_loop, diagonalize, finalize, fock_matrix,
                       resolve_xc)


@dataclasses.dataclass(frozen=True)
class AdjointOptions:
    """Settings of the adjoint linear solve (hashable).

    Attributes:
        tol: relative residual tolerance of GMRES, ‖Γ̄ − (1 − ∂Φ/∂Γ)ᵀ u‖ ≤ tol ‖Γ̄‖. Training
            can use ~1e-6: for (H2O)2 (PBE/def2-SVP) the gradient is then within 1.4e-7
            (relative) of the tol-1e-12 one, with 8 products instead of 12 at 1e-10.
        atol: absolute residual tolerance (the solve stops at max(tol ‖Γ̄‖, atol)).
        restart: Krylov subspace size per restart.
        maxiter: maximum number of restarts.
        precondition: use the orbital-energy/Coulomb diagonal preconditioner (module
            docstring). Off by default: for water clusters the diagonal of the operator is
            already within 1–1.6 and M does not reduce the number of products (counts in
            benchmarks/results/grad_timing_cpu.md).
        block_mb: memory (MB) for one block of the 3-centre tensor while building it.
        warn: report (via a host callback) when the solve misses its tolerance.
    """

    tol: float = 1e-10
    atol: float = 0.0
    restart: int = 30
    maxiter: int = 20
    precondition: bool = False
    block_mb: float = 64.0
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
    vo = v[:, :n_occ]
    # orthonormal basis (S = 1) and P = Φ/2
    return vo @ vo.T, 0.5 * projector_response(eps, v, n_occ)(da)


def scf_map(gamma, ints: Integrals, params, xc, term) -> jax.Array:
    """The Kohn-Sham map Φ(Γ, θ) = 2 X P_occ(Xᵀ F[Γ, θ] X) Xᵀ [nao, nao]."""
    fock, _ = fock_matrix(gamma, ints, xc, term, params)
    x = orthogonalizer(ints.S, ints.n_mo)
    return 2.0 * x @ occupied_projector(x.T @ fock @ x, ints.n_occ) @ x.T


def projector_response(eps: jax.Array, c: jax.Array, n_occ: int):
    """The linear map L: dF ↦ dΦ = 2 (Y + Yᵀ), Y = C_v (K ∘ C_vᵀ dF C_o) C_oᵀ, K_ai = 1/(ε_i − ε_a).

    The derivative of Φ with respect to the Fock matrix (module docstring) at orbitals
    ε [n_mo], C [nao, n_mo] (CᵀSC = 1). L is self-adjoint on symmetric matrices (Frobenius).
    """
    c_occ, c_virt = c[:, :n_occ], c[:, n_occ:]
    k = 1.0 / (eps[:n_occ][None, :] - eps[n_occ:][:, None])

    def apply(df):
        y = c_virt @ (k * (c_virt.T @ df @ c_occ)) @ c_occ.T
        return 2.0 * (y + y.T)

    return apply


def _sym(m):
    return 0.5 * (m + m.T)


def coulomb_diagonal(cderi: jax.Array, c_occ: jax.Array, c_virt: jax.Array,
                     block_mb: float = 64.0, pairs: PairList | None = None) -> jax.Array:
    """Exchange-type self-repulsions (ai|ai) = Σ_P (c_aᵀ B_P c_i)² [n_virt, n_occ] (Hartree).

    Args:
        cderi: packed whitened 3-centre tensor B [naux, n_pair] on ``pairs`` (:mod:`jaxks.pairs`;
            None: the whole triangle).
        c_occ, c_virt: orbital coefficients [nao, n_occ], [nao, n_virt].
        block_mb: memory for one block of unpacked B_P (the whole tensor is never unpacked).
    """
    naux = cderi.shape[0]
    nao = c_occ.shape[0]
    blk = int(max(1, min(naux, block_mb * 1e6 // (8 * nao * nao))))
    n_blocks = -(-naux // blk)

    def add_block(k, acc):
        start = k * blk
        # dynamic_slice clamps the last block inside the tensor; rows already counted are masked
        first = jnp.minimum(start, naux - blk)
        rows = jax.lax.dynamic_slice_in_dim(cderi, first, blk, axis=0)
        fresh = (first + jnp.arange(blk)) >= start
        b = unpack(rows, nao, pairs)  # [blk, nao, nao]
        b_ai = jnp.einsum("ma,pmi->pai", c_virt, b @ c_occ)
        return acc + jnp.einsum("p,pai->ai", fresh.astype(b_ai.dtype), b_ai * b_ai)

    acc = jnp.zeros((c_virt.shape[1], c_occ.shape[1]), cderi.dtype)
    return jax.lax.fori_loop(0, n_blocks, add_block, acc)


def adjoint_preconditioner(ints: Integrals, eps: jax.Array, c: jax.Array,
                           block_mb: float = 64.0):
    """M ≈ (1 − ∂Φ/∂Γ)ᵀ⁻¹ at the orbitals ε [n_mo], C [nao, n_mo] of F[Γ*] (module docstring).

    Returns:
        a linear map r ↦ M r on symmetric [nao, nao] matrices:
        M r = r + S C_v (s ∘ C_vᵀ r C_o) C_oᵀ S + transpose,  s_ai = 1/D_ai − 1,
        i.e. the ov block of Cᵀ r C divided by D_ai = 1 + 4 (ai|ai)/(ε_a − ε_i), all else kept.
    """
    n = ints.n_occ
    c_occ, c_virt = c[:, :n], c[:, n:]
    gap = eps[n:, None] - eps[None, :n]
    d = 1.0 + 4.0 * coulomb_diagonal(ints.cderi, c_occ, c_virt, block_mb, ints.pairs) / gap
    scale = 1.0 / d - 1.0
    s_occ, s_virt = ints.S @ c_occ, ints.S @ c_virt

    def apply(r):
        z = s_virt @ (scale * (c_virt.T @ r @ c_occ)) @ s_occ.T
        return r + z + z.T

    return apply


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def scf_density(xc, term, options: SCFOptions, adjoint: AdjointOptions, warm: bool, ints, params,
                guess, adjoint_guess, probe):
    """Self-consistent density Γ* [nao, nao] with the loop's diagnostics, differentiable in
    ``ints`` and ``params`` by the implicit function theorem (not in ``guess``).

    ``adjoint_guess`` [nao, nao] and ``probe`` (a float scalar) do not change the value; their
    cotangents are the adjoint solution u and the number of products with (1 − ∂Φ/∂Γ)ᵀ the
    solve used (see :func:`solve`). ``warm`` (static): start GMRES from ``adjoint_guess``
    rather than from 0.

    Returns:
        (Γ*, info) with info a dict of ``converged``, ``cycle``, ``delta_e``, ``comm``,
        ``rung`` (the fallback rung, :data:`jaxks.scf.FALLBACK_LADDER`).
    """
    s = _scf_loop(ints, params, guess, xc, term, options)
    return s["gamma"], _info(s)


def _info(s):
    return dict(converged=s["converged"], cycle=s["cycle"], delta_e=s["delta_e"], comm=s["comm"],
                rung=s["rung"])


def _values(tree):
    """The values of a pytree of ``CustomVJPPrimal`` leaves, and whether any leaf is perturbed."""
    leaves, treedef = jax.tree_util.tree_flatten(
        tree, is_leaf=lambda x: isinstance(x, CustomVJPPrimal))
    values = [x.value if isinstance(x, CustomVJPPrimal) else x for x in leaves]
    perturbed = any(getattr(x, "perturbed", False) for x in leaves)
    return jax.tree_util.tree_unflatten(treedef, values), perturbed


def _scf_density_fwd(xc, term, options, adjoint, warm, ints, params, guess, adjoint_guess, probe):
    # symbolic zeros: which inputs are differentiated. Training differentiates θ only; the
    # cotangent of the integrals (reverse mode through the AO evaluation on the whole grid)
    # is then neither traced nor compiled.
    ints, ints_on = _values(ints)
    params, params_on = _values(params)
    guess, adjoint_guess, probe = (_values(x)[0] for x in (guess, adjoint_guess, probe))
    s = _scf_loop(ints, params, guess, xc, term, options)
    # the flags travel in the residuals' tree structure (None vs ()), not as traced values
    flags = tuple(() if on else None for on in (ints_on, params_on))
    return (s["gamma"], _info(s)), (ints, params, s["gamma"], guess, adjoint_guess, probe, flags)


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


def _scf_density_bwd(xc, term, options, adjoint, warm, res, cotangents):
    ints, params, gamma, guess, adjoint_guess, probe, (ints_on, params_on) = res
    gbar = cotangents[0]
    if isinstance(gbar, SymbolicZero):
        gbar = jnp.zeros_like(gamma)
    gbar = _sym(gbar)

    # ∂Φ/∂Γ = L ∘ ∂F/∂Γ with both factors self-adjoint on symmetric matrices (L: see
    # projector_response; ∂F/∂Γ is the Hessian of E), so (∂Φ/∂Γ)ᵀ u = ∂F/∂Γ[L u]: one
    # forward-mode derivative of the Fock build, cheaper than reverse mode through the
    # checkpointed grid integration.
    fock, fock_lin = jax.linearize(lambda g: fock_matrix(g, ints, xc, term, params)[0], gamma)
    eps, c = diagonalize(fock, orthogonalizer(ints.S, ints.n_mo))
    response = projector_response(eps, c, ints.n_occ)

    def matvec(u):  # (1 − ∂Φ/∂Γ)ᵀ u on the symmetric subspace
        return u - _sym(fock_lin(response(u)))

    precond = adjoint_preconditioner(ints, eps, c, adjoint.block_mb) if adjoint.precondition \
        else None
    u, rel, n_matvec = gmres(matvec, gbar, _sym(adjoint_guess) if warm else None,
                             precond=precond, tol=adjoint.tol, atol=adjoint.atol,
                             restart=adjoint.restart, maxiter=adjoint.maxiter)
    if adjoint.warn:
        # the host decides: under vmap a lax.cond would run both branches
        jax.debug.callback(_warn_adjoint, rel, adjoint.tol)
    ints_bar = params_bar = None  # None: a zero cotangent for an input not differentiated
    if ints_on is not None and params_on is not None:
        _, vjp_theta = jax.vjp(lambda i, p: scf_map(gamma, i, p, xc, term), ints, params)
        ints_bar, params_bar = vjp_theta(u)
    elif params_on is not None:
        params_bar, = jax.vjp(lambda p: scf_map(gamma, ints, p, xc, term), params)[1](u)
    elif ints_on is not None:
        ints_bar, = jax.vjp(lambda i: scf_map(gamma, i, params, xc, term), ints)[1](u)
    return (ints_bar, params_bar, jnp.zeros_like(guess), u.astype(adjoint_guess.dtype),
            n_matvec.astype(probe.dtype))


scf_density.defvjp(_scf_density_fwd, _scf_density_bwd, symbolic_zeros=True)


def solve(ints: Integrals, xc="pbe", *, term=None, params=None,
          options: SCFOptions = SCFOptions(), adjoint: AdjointOptions = AdjointOptions(),
          guess: jax.Array | None = None, adjoint_guess: jax.Array | None = None,
          probe: jax.Array | None = None) -> SCFResult:
    """The SCF solution as a differentiable function of θ (``params``) and of the integrals.

    Forward: the jit-compiled SCF loop. Backward: one adjoint GMRES solve at Γ*
    (see module docstring), then one differentiable Fock build and degeneracy-safe
    diagonalisation, so that ``energy``, ``mo_energy``, ``mo_coeff``, ``gamma`` and ``fock`` of
    the returned :class:`SCFResult` all carry exact derivatives. Jittable and vmappable; no host
    synchronisation (check ``result.converged``; ``adjoint.warn`` adds one host callback in the
    backward pass, turn it off in a training step).

    Warm start and work count, without side effects. ``adjoint_guess`` u₀ [nao, nao] starts
    GMRES from u₀ (e.g. the previous step's solution) instead of 0. ``probe`` is a float
    scalar. Neither changes any value; in the backward pass the cotangent of ``adjoint_guess``
    IS the adjoint solution u [nao, nao] and the cotangent of ``probe`` IS the number of
    products with (1 − ∂Φ/∂Γ)ᵀ (VJPs of the Kohn-Sham map) that GMRES used. Differentiate
    with respect to them to read both::

        def loss(theta, u0, probe):
            r = solve(ints, "pbe", term=term, params=theta, adjoint_guess=u0, probe=probe,
                      adjoint=AdjointOptions(tol=1e-6, warn=False))
            return r.energy + r.homo ** 2

        u0 = jnp.zeros((ints.nao, ints.nao))
        g, u, n_matvec = jax.grad(loss, argnums=(0, 1, 2))(theta, u0, 0.0)
        g, u, n_matvec = jax.grad(loss, argnums=(0, 1, 2))(theta_next, u, 0.0)  # warm

    Under ``jax.vmap`` over frames give each frame its own u₀ and probe (a probe shared by
    frames receives the sum of their counts). Cotangents add up: if one call's result feeds a
    loss several times that is still one solve, but two calls of ``solve`` sharing u₀ give
    the sum of two solutions. Without ``adjoint_guess`` the solve starts from u = 0 and spends
    no product on the initial residual; with it, one.

    Args:
        ints: :class:`Integrals`; xc, term, params, options, guess: as in :func:`jaxks.scf.run_scf`.
        adjoint: :class:`AdjointOptions` (tolerance, restarts, preconditioner).
        adjoint_guess: optional u₀ [nao, nao].
        probe: optional float scalar (its value is ignored).
    Returns:
        :class:`SCFResult`.
    """
    xc = resolve_xc(xc)
    exchange.check_integrals(ints, xc)
    if guess is None:
        guess = ints.guess
    warm = adjoint_guess is not None
    dtype = ints.S.dtype
    if adjoint_guess is None:
        adjoint_guess = jnp.zeros((ints.nao, ints.nao), dtype)
    probe = jnp.zeros((), dtype) if probe is None else jnp.asarray(probe, dtype)
    gamma, info = scf_density(xc, term, options, adjoint, warm, ints, params,
                              jax.lax.stop_gradient(guess), adjoint_guess, probe)
    return finalize(ints, params, gamma, xc, term, loop_state=info, eigh=linalg.eigh)

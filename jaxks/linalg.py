"""Symmetric eigensolvers with derivatives that stay finite at degenerate eigenvalues.

JAX has no generalized eigensolver, and the derivative rule of ``jnp.linalg.eigh`` divides by
eigenvalue gaps ``w_j - w_i``: at an exact degeneracy (the p and d shells of an atom, the
orbitals of a symmetric cluster) it returns inf/NaN, and near one it returns huge, meaningless
numbers. This module provides

* :func:`eigh`             -- standard problem ``A v = w v`` with a degeneracy-safe ``custom_jvp``;
* :func:`orthogonalizer`   -- canonical orthogonalisation ``X = U_k s_k^{-1/2}`` of an overlap ``S``;
* :func:`n_independent`    -- host-side count of the overlap eigenvalues kept (PySCF's rule);
* :func:`eigh_generalized` -- ``F C = S C eps`` solved as ``eigh(X^T F X)``, ``C = X U``.

The derivative rule (forward mode; reverse mode and higher orders follow from it)
------------------------------------------------------------------------------------
With ``A = V diag(w) V^T`` (ascending ``w``) and a symmetric tangent ``dA``, let
``K = V^T dA V``. Then

    dw_i = K_ii                                      (always; exact also inside a degenerate group
                                                      for sums of the group's eigenvalues)
    dV   = V (F o K),   F_ij = 1 / (w_j - w_i)   if |w_j - w_i| >  tol
                        F_ij = 0                 if |w_j - w_i| <= tol   (same group, and i = j)

``o`` is the elementwise product. Inside a (near-)degenerate group the eigenvectors are not
defined individually, only the subspace they span is; setting ``F = 0`` there drops the
arbitrary rotation inside the group ("parallel transport" of the group's basis) while the
motion of the subspace itself, set by the couplings to the *other* groups, is exact.
Consequently every function that depends on a degenerate group only through its projector
``P_g = V_g V_g^T`` and through the *sum* of its eigenvalues gets an exact, finite gradient;
eigenvector cotangents that would rotate inside the group are projected out.

The default tolerance is relative: ``tol = rtol * max_i |w_i| + atol`` with ``rtol = 1e-9`` and
``atol = 0``; eigenvalues closer than that count as one degenerate group. Rounding splits an
exact degeneracy by ~1e-16 ``max|w|``, while genuine gaps in chemistry are >> 1e-9 Eh.

Second derivatives. ``jax.hessian`` differentiates the rule above once more. All divisions use
the "double where" pattern, so no NaN/inf appears even for exactly degenerate input. To make
second derivatives of projector-type invariants exact at a degeneracy, the rule also carries
the term ``- F o ((F o K) E - E (F o K))``, where ``E`` holds the off-diagonal, intra-group
entries of ``V^T A V`` *minus their own value* (``E - stop_gradient(E)``): it is exactly zero, so
first derivatives are unchanged, but its derivative supplies the intra-group couplings
``V_g^T dA V_g`` that the exact group-wise (Sylvester) equation for the subspace motion,
``Y Lambda_g - Lambda_h Y = V_h^T dA V_g`` between groups g and h, contains once the
eigenvalues of a group have split (dropping them gave ~10% wrong Hessians of ``tr(P_g M)``).
Known limit: functions that are *nonlinear* in the individual eigenvalues of one degenerate
group (e.g. ``sum_i w_i^2`` over the group) get finite but not exact Hessians (the exact one
needs divided differences ``(f'(w_i) - f'(w_j)) / (w_i - w_j)`` that no per-eigenpair rule can
supply). Write such invariants through projectors instead: ``sum_{i<k} w_i^2 = tr(P_k A P_k A)``.

Everything is in the units of the input (Hartree for Fock matrices, dimensionless for overlaps)
and works on stacks of matrices (leading batch axes).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: Default relative tolerance below which two eigenvalues form one degenerate group.
DEFAULT_RTOL = 1e-9
#: Default absolute part of the degeneracy tolerance (units of the eigenvalues).
DEFAULT_ATOL = 0.0
#: PySCF (2.x, ``scf.hf.overlap_zero_eigenvalue_threshold``) drops overlap eigenvalues <= 1e-6.
DEFAULT_LINDEP_THRESHOLD = 1e-6


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def _symmetrize(a):
    return 0.5 * (a + _mT(a))


def _check_square(name, a):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (or a stack of them), got shape {a.shape}")


def degeneracy_tolerance(w, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Tolerance ``tol = rtol * max_i |w_i| + atol`` below which eigenvalues count as degenerate.

    Args:
        w: eigenvalues, shape [..., n] (any unit; ``atol`` is in the same unit).
    Returns:
        shape [..., 1], gradient-free (the grouping is a discrete decision).
    """
    w = jax.lax.stop_gradient(w)
    return rtol * jnp.max(jnp.abs(w), axis=-1, keepdims=True) + atol


def _same_group(w, tol):
    """[..., n, n] boolean: |w_j - w_i| <= tol (diagonal included)."""
    gap = w[..., None, :] - w[..., :, None]
    return jnp.abs(gap) <= tol[..., None]


def _inverse_gaps(w, same):
    """F_ij = 1/(w_j - w_i) between groups, 0 inside a group; NaN-free in all derivatives."""
    gap = w[..., None, :] - w[..., :, None]
    safe = jnp.where(same, 1.0, gap)  # the inner where keeps 1/0 out of the backward pass
    return jnp.where(same, 0.0, 1.0 / safe)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _eigh(a, rtol, atol):
    # a plain tuple, not EighResult: the JVP rule's primal output must have the same pytree type
    w, v = jnp.linalg.eigh(a, symmetrize_input=False)
    return w, v


@_eigh.defjvp
def _eigh_jvp(rtol, atol, primals, tangents):
    (a,), (da,) = primals, tangents
    # Recursing into _eigh (not jnp.linalg.eigh) keeps higher derivatives degeneracy-safe too.
    w, v = _eigh(a, rtol, atol)
    same = _same_group(w, degeneracy_tolerance(w, rtol, atol))
    f = _inverse_gaps(w, same)
    k = _mT(v) @ _symmetrize(da) @ v
    dw = jnp.diagonal(k, axis1=-2, axis2=-1)
    fk = f * k
    # Zero-valued intra-group coupling whose *derivative* is (V^T dA' V)_{lj}, l != j in one
    # group: it completes the second derivative (see module docstring); no effect on the first.
    n = w.shape[-1]
    offdiag_same = same & ~jnp.eye(n, dtype=bool)
    lam = _mT(v) @ a @ v
    e = jnp.where(offdiag_same, lam - jax.lax.stop_gradient(lam), 0.0)
    dv = v @ (fk - f * (fk @ e - e @ fk))
    return (w, v), (dw, dv)


def eigh(a, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL):
    """Eigen-decomposition ``A V = V diag(w)`` of a real symmetric matrix, degeneracy-safe.

    The input is symmetrised, ``A <- (A + A^T) / 2``. Derivatives follow the rule in the module
    docstring: ``dw_i = v_i^T dA v_i``; ``dV = V (F o (V^T dA V))`` with ``F_ij = 1/(w_j - w_i)``
    between groups and ``F_ij = 0`` inside a group of eigenvalues closer than
    ``tol = rtol * max|w| + atol``. Finite (no NaN/inf) in first and second derivatives even for
    exactly degenerate input; exact for gauge-invariant functions (group sums of eigenvalues,
    projectors onto whole groups).

    Args:
        a: [..., n, n] real symmetric matrix (units u, e.g. Hartree).
        rtol, atol: degeneracy tolerance (static Python floats; ``atol`` in units u).
    Returns:
        w: [..., n] eigenvalues, ascending (units u).
        v: [..., n, n] orthonormal eigenvectors as columns, ``v[..., :, i]`` belongs to ``w[..., i]``.
    """
    a = jnp.asarray(a)
    _check_square("eigh: A", a)
    return _eigh(_symmetrize(a), float(rtol), float(atol))


def _orthogonalizer(s, n_keep, rtol, atol):
    w, u = _eigh(s, rtol, atol)
    n = s.shape[-1]
    s_k, u_k = w[..., n - n_keep:], u[..., :, n - n_keep:]
    # Value: the canonical frame X0 = U_k s_k^{-1/2}. Derivative: that of the frame
    # X(S') = Y L^{-T}, Y = P_k(S') X0, L L^T = Y^T S' Y, with X0 held fixed. It equals X0 at
    # S' = S and is smooth in S' (projector onto whole groups + Cholesky, no eigenvalue gaps
    # inside the kept space), so first AND second derivatives of every gauge-invariant result are
    # exact even when S has degenerate eigenvalues (differentiating U_k s_k^{-1/2} directly would
    # need the arbitrary rotations inside those groups).
    x0 = jax.lax.stop_gradient(u_k / jnp.sqrt(s_k)[..., None, :])
    y = x0 if n_keep == n else (u_k @ _mT(u_k)) @ x0
    chol = jnp.linalg.cholesky(_mT(y) @ s @ y)
    return _mT(jax.scipy.linalg.solve_triangular(chol, _mT(y), lower=True))


def orthogonalizer(s, n_keep: int | None = None, rtol: float = DEFAULT_RTOL,
                   atol: float = DEFAULT_ATOL):
    """Canonical (Löwdin) orthogonalisation ``X = U_k s_k^{-1/2}``, ``X^T S X = I_k``.

    ``S = U diag(s) U^T`` (ascending); the ``n_keep`` largest eigenvalues are kept, which drops
    near-linear-dependent combinations of basis functions (choose ``n_keep`` with
    :func:`n_independent` on the host; it must be static under ``jit``).

    Derivatives. A frame X is only defined up to ``X -> X R`` (R orthogonal; inside a degenerate
    group of ``s`` even the value is arbitrary), so the derivative returned is that of a smooth
    S-orthonormal frame through the same value: ``X(S') = Y L^{-T}`` with ``Y = P_k(S') X``,
    ``L L^T = Y^T S' Y`` (Cholesky), ``P_k`` the projector onto the kept eigenvectors of ``S'`` and
    ``X`` held fixed. It differs from the finite difference of ``U_k s_k^{-1/2}`` only by an
    infinitesimal rotation ``X dR`` that every gauge-invariant result (``X X^T``, ``X^T S X = I``,
    generalized eigenvalues and eigenvectors) ignores; those get exact first and second
    derivatives, also for degenerate ``s``. The kept/dropped cut must not split a (near-)degenerate
    group of ``s`` (it never does with a gap-respecting threshold: dropped eigenvalues are ~0).

    Args:
        s: [..., n, n] symmetric positive (semi-)definite overlap matrix (dimensionless).
        n_keep: number of eigenvalues kept, 1 <= n_keep <= n; ``None`` keeps all n.
        rtol, atol: degeneracy tolerance, as in :func:`eigh`.
    Returns:
        x: [..., n, n_keep].
    """
    s = jnp.asarray(s)
    _check_square("orthogonalizer: S", s)
    n = s.shape[-1]
    n_keep = n if n_keep is None else int(n_keep)
    if not 1 <= n_keep <= n:
        raise ValueError(f"orthogonalizer: n_keep must be between 1 and {n} (basis size), got {n_keep}")
    return _orthogonalizer(_symmetrize(s), n_keep, float(rtol), float(atol))


def n_independent(s, threshold: float = DEFAULT_LINDEP_THRESHOLD) -> int:
    """Number of overlap eigenvalues strictly above ``threshold`` (host-side, NumPy).

    The threshold is *absolute*, applied to the eigenvalues of S as given, exactly as PySCF 2.x
    does in its SCF (``scf.hf.check_linear_dependency`` keeps ``e > 1e-6``), so that
    ``eigh_generalized(F, S, n_independent(S))`` returns as many orbitals as PySCF's ``mo_energy``.
    (PySCF's older ``addons.canonical_orth_`` normalises S first and uses 1e-7; for normalised
    AOs, diag(S) = 1, the two agree up to the threshold value.)

    Args:
        s: [n, n] overlap matrix (NumPy or concrete JAX array; not a tracer).
        threshold: absolute cut-off on the eigenvalues of S.
    Returns:
        int, 0 < result <= n.
    Raises:
        ValueError: S not square, not symmetric, not finite, or no eigenvalue above threshold.
    """
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"n_independent: the overlap must be a square matrix, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("n_independent: the overlap matrix contains NaN or inf")
    scale = max(1.0, float(np.max(np.abs(s)))) if s.size else 1.0
    if not np.allclose(s, s.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError("n_independent: the overlap matrix is not symmetric")
    count = int(np.sum(np.linalg.eigvalsh(s) > threshold))
    if count == 0:
        raise ValueError(
            f"n_independent: no overlap eigenvalue above {threshold:g}; the basis is empty or degenerate")
    return count


def eigh_generalized(f, s, n_keep: int | None = None, rtol: float = DEFAULT_RTOL,
                     atol: float = DEFAULT_ATOL):
    """Generalized symmetric eigenproblem ``F C = S C diag(eps)``, ``C^T S C = I``.

    Solved through canonical orthogonalisation: ``X = orthogonalizer(S, n_keep)``,
    ``F' = X^T F X = U diag(eps) U^T`` (with :func:`eigh`), ``C = X U``. Derivatives with respect
    to both F and S, degeneracy-safe in F (the rule of :func:`eigh`) and in S (that of
    :func:`orthogonalizer`).

    Args:
        f: [..., n, n] symmetric matrix (e.g. the Fock matrix, Hartree).
        s: [..., n, n] symmetric positive definite overlap (dimensionless).
        n_keep: number of overlap eigen-directions kept (static); ``None`` keeps all n. Use
            :func:`n_independent` to drop near-linear dependencies as PySCF does.
        rtol, atol: degeneracy tolerance for both eigenproblems, as in :func:`eigh`.
    Returns:
        eps: [..., n_keep] eigenvalues, ascending (units of F).
        c:   [..., n, n_keep] eigenvectors as columns (AO coefficients), ``C^T S C = I``.
    """
    f, s = jnp.asarray(f), jnp.asarray(s)
    _check_square("eigh_generalized: F", f)
    _check_square("eigh_generalized: S", s)
    if f.shape[-2:] != s.shape[-2:]:
        raise ValueError(f"eigh_generalized: F {f.shape} and S {s.shape} must have the same size")
    x = orthogonalizer(s, n_keep, rtol, atol)
    eps, u = eigh(_mT(x) @ f @ x, rtol, atol)
    return eps, x @ u

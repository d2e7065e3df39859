"""Gauge-invariant functions of molecular orbitals, for losses on eigenvectors.

An eigenvector ``c_i`` of ``F C = S C eps`` is defined only up to its sign, and the orbitals of a
degenerate level (p-like lone pairs of a symmetric cluster, the d shell of an atom) only up to an
orthogonal rotation among themselves. A loss that compares coefficients directly jumps when the
eigensolver flips a sign or picks another basis of a degenerate subspace, and its gradient is
undefined there. Everything here depends on the orbitals only through quantities that are
invariant under both: the density matrix, projectors onto whole degenerate groups, and squared
S-overlaps.

Conventions: ``C`` holds AO coefficients as columns, shape [n_ao, n_orb], S-orthonormal
(``C^T S C = I``); ``S`` is the AO overlap [n_ao, n_ao] (dimensionless). Orbital energies are in
Hartree. Degenerate groups are *static* (tuples of orbital indices, decided on the host from
eigenvalues) so that every function here has static shapes under ``jit``.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

#: Default tolerance (Hartree) for two orbital energies to count as degenerate: well above SCF
#: noise (~1e-8 Eh at conv_tol 1e-10) and well below chemical splittings (>~ 1e-3 Eh).
DEFAULT_DEGENERACY_TOL = 1e-5

Groups = tuple[tuple[int, ...], ...]


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def density_matrix(c, occ):
    """Density matrix ``Gamma = sum_i occ_i c_i c_i^T = C diag(occ) C^T``.

    Args:
        c: [..., n_ao, n_orb] orbital coefficients (columns).
        occ: [..., n_orb] occupation numbers (electrons; 2 for a doubly occupied orbital).
    Returns:
        [..., n_ao, n_ao] symmetric; ``tr(Gamma S) = sum(occ)`` for S-orthonormal C.
    """
    c, occ = jnp.asarray(c), jnp.asarray(occ)
    if occ.shape[-1] != c.shape[-1]:
        raise ValueError(f"density_matrix: {c.shape[-1]} orbitals but {occ.shape[-1]} occupation numbers")
    return (c * occ[..., None, :]) @ _mT(c)


def occupied_projector(c, n_occ: int):
    """AO-basis projector onto the lowest ``n_occ`` orbitals, ``P = sum_{i<n_occ} c_i c_i^T``.

    ``P S`` is the (oblique) projector onto the occupied space: ``P S P = P`` for S-orthonormal C.
    For a closed shell ``Gamma = 2 P``. Invariant to signs and to any rotation among the occupied
    orbitals (it needs no degeneracy information, as long as ``n_occ`` does not split a group).

    Args:
        c: [..., n_ao, n_orb] orbital coefficients, orbitals in ascending energy.
        n_occ: static number of occupied orbitals, 0 <= n_occ <= n_orb.
    Returns:
        [..., n_ao, n_ao].
    """
    c = jnp.asarray(c)
    n_occ = int(n_occ)
    if not 0 <= n_occ <= c.shape[-1]:
        raise ValueError(f"occupied_projector: n_occ={n_occ} outside 0..{c.shape[-1]} (number of orbitals)")
    c_occ = c[..., :, :n_occ]
    return c_occ @ _mT(c_occ)


def sign_invariant_overlap(c_ref, c, s):
    """Per-orbital mismatch ``1 - (c_ref,i^T S c_i)^2``, invariant to the sign of either vector.

    Zero when ``c_i = +-c_ref,i``; in [0, 1] for S-normalised vectors (1 = orthogonal). Compared
    with the published ``min_s ||c_ref - s c||^2`` it has no kink where the best sign switches.
    It is *not* invariant to rotations inside a degenerate group: use :func:`subspace_loss` there.

    Args:
        c_ref, c: [..., n_ao, n_orb] (or [..., n_ao] for one orbital), S-normalised columns.
        s: [..., n_ao, n_ao] AO overlap.
    Returns:
        [..., n_orb] (or [...]) dimensionless.
    """
    c_ref, c, s = jnp.asarray(c_ref), jnp.asarray(c), jnp.asarray(s)
    if c_ref.shape != c.shape:
        raise ValueError(f"sign_invariant_overlap: shapes differ, {c_ref.shape} vs {c.shape}")
    if c.ndim == 1:
        return 1.0 - (c_ref @ s @ c) ** 2
    overlap = jnp.sum(c_ref * (s @ c), axis=-2)
    return 1.0 - overlap**2


def degenerate_groups(eps, tol: float = DEFAULT_DEGENERACY_TOL, start: int = 0,
                      stop: int | None = None) -> Groups:
    """Group orbitals ``start..stop-1`` into (near-)degenerate levels, on the host (NumPy).

    Consecutive orbitals whose energies differ by at most ``tol`` (absolute, Hartree) share a group
    (single linkage, so a ladder of small steps forms one group). Use the *reference* energies,
    so the grouping is fixed data, not a function of the model.

    Args:
        eps: [n_orb] orbital energies in ascending order (Hartree), NumPy or concrete JAX array.
        tol: absolute degeneracy tolerance (Hartree).
        start, stop: orbital window (Python slice convention); ``stop=None`` means ``n_orb``.
    Returns:
        tuple of tuples of orbital indices, in ascending order, covering ``start..stop-1``;
        hashable, so it can be a static argument of ``jit``.
    Raises:
        ValueError: energies not 1-D, not finite or not ascending; empty window; a window edge
            that splits a degenerate group (a loss on such a window would not be invariant:
            widen or narrow the window to the group's edge).
    """
    eps = np.asarray(eps, dtype=np.float64)
    if eps.ndim != 1 or not np.all(np.isfinite(eps)):
        raise ValueError("degenerate_groups: orbital energies must be a finite 1-D array")
    n = eps.shape[0]
    stop = n if stop is None else int(stop)
    start = int(start)
    if not 0 <= start < stop <= n:
        raise ValueError(
            f"degenerate_groups: empty or invalid orbital window [{start}, {stop}) of {n} orbitals")
    steps = np.diff(eps)
    if np.any(steps < -tol):
        raise ValueError("degenerate_groups: orbital energies must be in ascending order")
    close = steps <= tol  # close[i]: orbitals i and i+1 are degenerate
    if start > 0 and close[start - 1]:
        raise ValueError(
            f"degenerate_groups: the window start {start} splits a degenerate level "
            f"(eps[{start - 1}] = {eps[start - 1]:.8f}, eps[{start}] = {eps[start]:.8f} Eh)")
    if stop < n and close[stop - 1]:
        raise ValueError(
            f"degenerate_groups: the window end {stop} splits a degenerate level "
            f"(eps[{stop - 1}] = {eps[stop - 1]:.8f}, eps[{stop}] = {eps[stop]:.8f} Eh)")
    groups, current = [], [start]
    for i in range(start + 1, stop):
        if close[i - 1]:
            current.append(i)
        else:
            groups.append(tuple(current))
            current = [i]
    groups.append(tuple(current))
    return tuple(groups)


def _membership(groups: Sequence[Sequence[int]], n_orb: int) -> np.ndarray:
    """Static [n_groups, n_orb] 0/1 matrix: orbital i belongs to group g."""
    groups = tuple(tuple(int(i) for i in g) for g in groups)
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("groups must be a non-empty sequence of non-empty index tuples")
    flat = [i for g in groups for i in g]
    if len(set(flat)) != len(flat):
        raise ValueError(f"groups overlap: an orbital appears in two groups ({groups})")
    if min(flat) < 0 or max(flat) >= n_orb:
        raise ValueError(f"groups refer to orbital {max(flat)} but only {n_orb} orbitals were given")
    member = np.zeros((len(groups), n_orb))
    for g, idx in enumerate(groups):
        member[g, list(idx)] = 1.0
    return member


def subspace_projectors(c, groups):
    """AO-basis projectors onto each degenerate group, ``P_g = sum_{i in g} c_i c_i^T``.

    Invariant to signs and to rotations inside each group.

    Args:
        c: [..., n_ao, n_orb] orbital coefficients.
        groups: static groups of orbital indices (e.g. from :func:`degenerate_groups`).
    Returns:
        [..., n_groups, n_ao, n_ao], stacked in the order of ``groups``.
    """
    c = jnp.asarray(c)
    member = jnp.asarray(_membership(groups, c.shape[-1]))
    return jnp.einsum("gi,...ai,...bi->...gab", member, c, c)


def subspace_loss(c_ref, c, s, groups):
    """Mean per-orbital subspace mismatch, invariant to signs and rotations inside each group.

        L = (1 / N) sum_g [ d_g - || C_ref,g^T S C_g ||_F^2 ],    N = sum_g d_g,

    d_g = size of group g. For S-orthonormal columns each bracket equals
    ``d_g - tr(P_ref,g S P_g S) = 1/2 || S^1/2 (P_ref,g - P_g) S^1/2 ||_F^2``: zero iff the two
    groups span the same subspace, at most d_g. For groups of one orbital the bracket is
    :func:`sign_invariant_overlap`. Rotating ``C_g -> C_g R`` (R orthogonal, signs included) leaves
    L unchanged, for either argument.

    Args:
        c_ref, c: [..., n_ao, n_orb] reference and predicted coefficients (same AO basis; only the
            orbitals named in ``groups`` enter).
        s: [..., n_ao, n_ao] AO overlap.
        groups: static groups of orbital indices (from the *reference* energies).
    Returns:
        [...] dimensionless loss in [0, 1].
    """
    c_ref, c, s = jnp.asarray(c_ref), jnp.asarray(c), jnp.asarray(s)
    if c_ref.shape != c.shape:
        raise ValueError(f"subspace_loss: shapes differ, {c_ref.shape} vs {c.shape}")
    member = _membership(groups, c.shape[-1])
    same = jnp.asarray(member.T @ member)  # [n_orb, n_orb]: 1 where i, j share a group
    n_total = float(member.sum())
    overlap = _mT(c_ref) @ s @ c
    return (n_total - jnp.sum(same * overlap**2, axis=(-2, -1))) / n_total

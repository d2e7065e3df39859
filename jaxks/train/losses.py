"""The DeePKS-ES loss terms, evaluated on a self-consistent (or frozen-density) prediction.

Per frame, with t the target (HSE06) and d the model (method.md §4):

    L = λ_E ΔE² + λ_F ΔF² + λ_H ΔH² + λ_Hv ΔH_v² + λ_ψ Δψ² + λ_ε Δε² + λ_Γ ΔΓ² + λ_gap Δgap²
    ΔE   = (E_t − E_d) / N_atoms                                      (Hartree per atom)
    ΔF²  = Σ_I |F_t,I − F_d,I|² / (3 N_atoms)                          ((Hartree/Bohr)²)
    ΔH²  = ‖H_t − H_d‖²_F / N_basis                                   (Hartree²)
    ΔH_v² = ‖C_t,wᵀ (H_t − H_d) C_t,w‖²_F / N_window: the Hamiltonian error in the target's
           orbital window (valence + virtual), core blocks left out   (Hartree²)
    Δε²  = Σ_{i∈window} (ε_t,i − ε_d,i)² / N_window                   (Hartree²)
    Δψ²  = subspace loss over the window, invariant to signs and to rotations inside degenerate
           groups of the target (:func:`eigenvector_loss`)             (dimensionless)
    ΔΓ²  = ‖Γ_t − Γ_d‖²_F / N_basis                                   (dimensionless)
    Δgap = (ε_LUMO − ε_HOMO)_t − (ε_LUMO − ε_HOMO)_d                  (Hartree)

The orbital window defaults to the valence occupied levels plus the LUMO (core levels are
shifted an order of magnitude more by the hybrid and would dominate; method.md §6).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np



@dataclasses.dataclass(frozen=True)
class LossWeights:
    """λ of each term; the defaults are the published tutorial's (density and gap off)."""

    energy: float = 1.0
    force: float = 1.0
    hamiltonian: float = 0.005
    valence_hamiltonian: float = 0.0
    eigenvector: float = 0.1
    eigenvalue: float = 0.01
    density: float = 0.0
    gap: float = 0.0


#: Number of core orbitals (doubly occupied) per element, by period: excluded from the window.
def n_core_orbitals(atomic_numbers) -> int:
    """Σ_A n_core(Z_A): 0 for H–He, 1 for Li–Ne, 5 for Na–Ar, 9 for K–Kr, ..."""
    z = np.asarray(atomic_numbers)
    edges = np.array([2, 10, 18, 36, 54, 86])
    cores = np.array([0, 1, 5, 9, 18, 27, 43])
    return int(np.sum(cores[np.searchsorted(edges, z, side="left")]))


@dataclasses.dataclass(frozen=True)
class OrbitalWindow:
    """Orbital indices [start, stop) compared by the eigenvalue/eigenvector losses (static)."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def default_window(atomic_numbers, n_occ: int, n_virtual: int = 1,
                   include_core: bool = False) -> OrbitalWindow:
    """Valence occupied orbitals plus ``n_virtual`` virtual ones (core excluded by default)."""
    start = 0 if include_core else n_core_orbitals(atomic_numbers)
    return OrbitalWindow(start, n_occ + n_virtual)


def group_mask(target_eps, window: OrbitalWindow, tol: float = 1e-5) -> np.ndarray:
    """M_ij = 1 when window orbitals i and j belong to one (near-)degenerate level of the
    target (|ε_i − ε_j| chained below ``tol`` Hartree), else 0: [size, size] (host, NumPy).

    A data array rather than a static grouping, so frames with different degeneracies share
    one compiled loss.
    """
    eps = np.asarray(target_eps)[window.start:window.stop]
    labels = np.concatenate([[0], np.cumsum(np.diff(eps) >= tol)])
    return (labels[:, None] == labels[None, :]).astype(np.float64)


def energy_loss(e_pred, e_ref, n_atoms):
    """ΔE² = ((E_t − E_d)/N_atoms)²."""
    return ((e_ref - e_pred) / n_atoms) ** 2


def force_loss(f_pred, f_ref):
    """ΔF² = Σ |ΔF_I|² / (3 N_atoms); forces [N_atoms, 3] Hartree/Bohr."""
    return jnp.mean((f_ref - f_pred) ** 2)


def hamiltonian_loss(h_pred, h_ref):
    """ΔH² = ‖H_t − H_d‖²_F / N_basis; Fock matrices [nao, nao] in the same AO basis."""
    return jnp.sum((h_ref - h_pred) ** 2) / h_ref.shape[0]


def valence_hamiltonian_loss(h_pred, h_ref, c_ref, window: OrbitalWindow):
    """ΔH_v² = ‖C_wᵀ (H_t − H_d) C_w‖²_F / N_window, C_w = the target's window orbitals
    c_ref[:, start:stop] (S-orthonormal), so C_wᵀ H_t C_w = diag(ε_t,w).

    Its diagonal is the first-order eigenvalue error of each window orbital, its off-diagonal
    the couplings that rotate them (eigenvector error scaled by energy): the eigenvalue and
    eigenvector terms in one, without differentiating an eigendecomposition of H_d, and without
    the core blocks (O 1s is shifted ~10× more by the hybrid and dominates ΔH², method.md §6).
    Invariant to rotations of the window orbitals, so degeneracies need no care. The window's
    Frobenius norm is a sum over its localisable orbitals, so per orbital it is intensive in the
    cluster size. h_pred, h_ref [nao, nao] Hartree; c_ref [nao, n_mo]. Returns Hartree².
    """
    c_w = c_ref[:, window.start:window.stop]
    dh = c_w.T @ (h_ref - h_pred) @ c_w
    return jnp.sum(dh ** 2) / window.size


def density_loss(g_pred, g_ref):
    """ΔΓ² = ‖Γ_t − Γ_d‖²_F / N_basis."""
    return jnp.sum((g_ref - g_pred) ** 2) / g_ref.shape[0]


def eigenvalue_loss(eps_pred, eps_ref, window: OrbitalWindow):
    """Δε² = mean over the window of (ε_t − ε_d)²."""
    sl = slice(window.start, window.stop)
    return jnp.mean((eps_ref[sl] - eps_pred[sl]) ** 2)


def eigenvector_loss(c_pred, c_ref, overlap, window: OrbitalWindow, mask):
    """Δψ² = 1 − Σ_ij M_ij (c_t,iᵀ S c_d,j)² / N_window over the window.

    With M the target's degenerate-group mask (:func:`group_mask`) this is the mean over levels
    of d_g − ‖C_t,gᵀ S C_d,g‖²_F: zero at the target, invariant to the sign of every orbital and
    to rotations inside degenerate groups (dimensionless, in [0, 1]).
    """
    sl = slice(window.start, window.stop)
    overlap_td = c_ref[:, sl].T @ overlap @ c_pred[:, sl]
    return 1.0 - jnp.sum(mask * overlap_td ** 2) / window.size


def gap_loss(eps_pred, eps_ref, n_occ: int):
    """Δgap² with gap = ε_LUMO − ε_HOMO."""
    gap_p = eps_pred[n_occ] - eps_pred[n_occ - 1]
    gap_r = eps_ref[n_occ] - eps_ref[n_occ - 1]
    return (gap_r - gap_p) ** 2


def loss_terms(pred: dict, ref: dict, weights: LossWeights, window: OrbitalWindow,
               n_atoms: int, n_occ: int) -> dict:
    """Every weighted term (skipping those with zero weight) and their sum under ``"total"``.

    Args:
        pred, ref: dicts with ``energy`` (scalar), ``forces`` [N, 3], ``fock`` [nao, nao],
            ``mo_energy`` [n_mo], ``mo_coeff`` [nao, n_mo], ``gamma`` [nao, nao]; ``ref`` also
            ``overlap`` [nao, nao] and ``group_mask`` [window, window] (:func:`group_mask`). ``forces`` is needed only when the force weight is non-zero.
    Returns:
        dict of unweighted terms and ``total`` = Σ λ_k term_k.
    """
    terms = {}
    if weights.energy:
        terms["energy"] = energy_loss(pred["energy"], ref["energy"], n_atoms)
    if weights.force:
        terms["force"] = force_loss(pred["forces"], ref["forces"])
    if weights.hamiltonian:
        terms["hamiltonian"] = hamiltonian_loss(pred["fock"], ref["fock"])
    if weights.valence_hamiltonian:
        terms["valence_hamiltonian"] = valence_hamiltonian_loss(pred["fock"], ref["fock"],
                                                                ref["mo_coeff"], window)
    if weights.eigenvalue:
        terms["eigenvalue"] = eigenvalue_loss(pred["mo_energy"], ref["mo_energy"], window)
    if weights.eigenvector:
        terms["eigenvector"] = eigenvector_loss(pred["mo_coeff"], ref["mo_coeff"],
                                                ref["overlap"], window, ref["group_mask"])
    if weights.density:
        terms["density"] = density_loss(pred["gamma"], ref["gamma"])
    if weights.gap:
        terms["gap"] = gap_loss(pred["mo_energy"], ref["mo_energy"], n_occ)
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    terms["total"] = jnp.asarray(total)
    return terms

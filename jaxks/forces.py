"""Analytic nuclear forces of the density-fitted restricted Kohn-Sham energy, in JAX.

The SCF energy is variational in the orbitals, so at self-consistency (atomic units)

    dE/dR_A = tr(Γ ∂h/∂R_A) − tr(W ∂S/∂R_A) + ∂E_J/∂R_A + ∂E_xc/∂R_A + ∂E_nuc/∂R_A
    F_A     = −dE/dR_A                                                   [natm, 3], Hartree/Bohr

with Γ the total density matrix and W = Σ_i n_i ε_i c_i c_iᵀ the energy-weighted density matrix.
At convergence W = ½ Γ F Γ (F the Fock matrix): no eigenvectors are needed, so the force is a smooth,
gauge-invariant function of (Γ, F) and can be differentiated through the implicit SCF gradient
(:func:`jaxks.implicit.solve`) — what a force loss in training needs.

Terms (every "∂" at fixed Γ; μ ∈ A: AO μ sits on atom A; ∇ acts on the electron coordinate):

* one-electron:  tr(Γ ∂h/∂R_A) = −2 Σ_{μ∈A,ν} ⟨∇μ|T+V|ν⟩ Γ_μν − 2 Z_A Σ_μν ⟨∇μ|1/|r−R_A||ν⟩ Γ_μν
  (the second term is the derivative of the nuclear-attraction operator of nucleus A itself).
* overlap:       −tr(W ∂S/∂R_A) = 2 Σ_{μ∈A,ν} ⟨∇μ|ν⟩ W_μν.
* Coulomb (density fitting with auxiliary functions P, metric M_PQ = (P|Q)):
  E_J = ½ dᵀ M⁻¹ d,  d_P = Σ_μν (P|μν) Γ_μν,  c = M⁻¹ d (fitted coefficients), and with
  T_xμP = Σ_ν (∂_x μ ν|P) Γ_μν (PySCF ``int3c2e_ip1``) and translational invariance
  (∇_μ + ∇_ν + ∇_P)(μν|P) = 0, which removes the need for the ``int3c2e_ip2`` tensor,
      ∂E_J/∂R_A = −2 Σ_{μ∈A,P} T_μP c_P + 2 Σ_{P∈A} c_P Σ_μ T_μP + Σ_{P∈A} c_P Σ_Q (∇P|Q) c_Q.
  c is recovered from the SCF's whitened tensor B = L⁻¹(P|μν): c = L⁻ᵀ (B·Γ).
* exchange-correlation: E_xc = Σ_g w_g e(ρ(r_g)) differentiated by JAX autodiff with respect to
  the AO centres (grid fixed: PySCF's ``grid_response=False``), or with grid points and Becke
  weights moving with the atoms (:mod:`jaxks.grid_weights`, PySCF's ``grid_response=True``).
* nuclear repulsion: autodiff of Σ_{A<B} Z_A Z_B / R_AB.
* exact exchange of hybrids: :func:`jaxks.exchange.exchange_gradient` (the same 3-centre and
  2-centre derivative integrals; for short-range exchange those of erfc(ωr)/r, ``fints.sr``).

Memory: the one tensor of size 3·n_aux·n_ao² (``int3c2e_ip1``) is contracted block by block of
auxiliary shells in a ``lax.scan``; small ones are stored, large ones are computed by PySCF block
by block as the scan reaches them (:mod:`jaxks.integrals.derivatives`), so the dense tensor is
never held and (H2O)32 forces fit in 24 GB. The Γ-contraction of each block
(:func:`jaxks.integrals.derivatives.ip1_contract`, with a reverse-mode rule for force losses) runs
in XLA for a stored tensor and on the host, at memory speed, for a streamed block.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxks import exchange
from jaxks.grid_weights import GridGeometry
# Derivative integrals come from the integrals stage (the one place that calls PySCF).
from jaxks.integrals.derivatives import ForceIntegrals, force_integrals, ip1_contract  # noqa: F401
from jaxks.pairs import PairList, pack_weights
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR


# ----------------------------------------------------------------------------- energy terms
def _segment(values: jax.Array, segment_ids: jax.Array, natm: int) -> jax.Array:
    """Sum rows of ``values`` [n, 3] into atoms: [natm, 3]."""
    return jax.ops.segment_sum(values, segment_ids, num_segments=natm)


def one_electron_gradient(gamma, w, fints: ForceIntegrals) -> jax.Array:
    """tr(Γ ∂h/∂R_A) − tr(W ∂S/∂R_A) [natm, 3] (Hartree/Bohr) for density Γ and energy-weighted
    density W (both [nao, nao], symmetric)."""
    per_ao = (-2.0 * jnp.einsum("xmn,mn->mx", fints.iphcore, gamma)
              + 2.0 * jnp.einsum("xmn,mn->mx", fints.ipovlp, w))
    operator = jnp.einsum("axp,p->ax", fints.rinv, pack_weights(gamma))
    return _segment(per_ao, fints.ao_atom, fints.natm) + operator


def coulomb_gradient(gamma, cderi, fints: ForceIntegrals, pairs: PairList | None = None
                     ) -> jax.Array:
    """∂E_J/∂R_A [natm, 3] (Hartree/Bohr) of the density-fitted Coulomb energy at fixed Γ.

    Args:
        gamma: density matrix [nao, nao].
        cderi: the SCF's packed whitened 3-centre tensor B [naux', n_pair] on ``pairs``
            (:mod:`jaxks.pairs`; None: the whole triangle).
        fints: :class:`ForceIntegrals`.

    A screened tensor gives the fitted coefficients c of its own (screened) energy; the
    derivative integrals keep every pair, whose dropped part is below the screening threshold.
    """
    natm = fints.natm
    e = cderi @ pack_weights(gamma, pairs)  # B·Γ
    c = fints.fit @ e  # M⁻¹ d
    c_pad = jnp.concatenate([c, jnp.zeros(1, c.dtype)])

    # no jax.checkpoint: ip1_contract's reverse rule keeps no block (a streamed one is computed
    # once for the value and once for the gradient)
    def block(i, index, atom):
        # T_xPμ = Σ_ν (∂_x μ ν|P) Γ_νμ c_P: one pass over the block, in its stored order
        t = ip1_contract(fints, i, gamma) * c_pad[index][None, :, None]
        return jnp.sum(t, axis=1), _segment(jnp.sum(t, axis=2).T, atom, natm)

    def body(carry, x):
        d_ao, d_aux = block(*x)
        return (carry[0] + d_ao, carry[1] + d_aux), None

    init = (jnp.zeros((3, gamma.shape[0]), gamma.dtype), jnp.zeros((natm, 3), gamma.dtype))
    xs = (jnp.arange(fints.aux_index.shape[0]), fints.aux_index, fints.aux_atom)
    (g_ao, g_aux), _ = jax.lax.scan(body, init, xs)
    metric = c[:, None] * jnp.einsum("xpq,q->px", fints.ip2c, c)
    return (-2.0 * _segment(g_ao.T, fints.ao_atom, natm) + 2.0 * g_aux
            + _segment(metric, fints.aux_atom_flat, natm))


def nuclear_repulsion(atom_coords: jax.Array, charges: jax.Array) -> jax.Array:
    """E_nuc = Σ_{A<B} Z_A Z_B / |R_A − R_B| (Hartree), differentiable (R [natm, 3] Bohr)."""
    natm = atom_coords.shape[0]
    diff = atom_coords[:, None, :] - atom_coords[None, :, :]
    off = ~jnp.eye(natm, dtype=bool)
    d2 = jnp.where(off, jnp.sum(diff * diff, axis=-1), 1.0)
    zz = charges[:, None] * charges[None, :]
    return 0.5 * jnp.sum(jnp.where(off, zz / jnp.sqrt(d2), 0.0))


def xc_energy_at(gamma, ints, xc, atom_coords, grid: GridGeometry | None = None) -> jax.Array:
    """E_xc[Γ] (Hartree) with the AO centres at ``atom_coords`` [natm, 3] and Γ fixed.

    With ``grid`` None the SCF grid (points and weights) stays fixed; otherwise the points move
    with their parent atoms and the Becke weights follow (:func:`jaxks.grid_weights.grid_points_weights`).
    Differentiable with respect to ``atom_coords`` and Γ. The SCF's own block loop
    (:func:`jaxks.numint.xc_energy`), AO screen included.
    """
    from jaxks.numint import xc_energy

    return xc_energy(gamma, ints, xc, atom_coords=atom_coords, grid=grid)


# ----------------------------------------------------------------------------- forces
def energy_gradient(gamma, fock, ints, fints: ForceIntegrals, xc, *,
                    grid_response: bool = False) -> jax.Array:
    """dE/dR [natm, 3] (Hartree/Bohr) of the SCF energy at a converged (Γ, F); W = ½ΓFΓ.

    Args:
        gamma: converged total density matrix [nao, nao].
        fock: Fock matrix at Γ [nao, nao] (including any extra energy term's potential).
        ints: :class:`jaxks.integrals.Integrals` of the geometry.
        fints: :class:`ForceIntegrals` of the same geometry.
        xc: :class:`jaxks.xc.XCFunctional` (or its name).
        grid_response: include the response of the grid (points and Becke weights).
    """
    from jaxks.scf import resolve_xc

    if getattr(ints, "lattice", None) is not None:
        from jaxks.system import InputError
        raise InputError("forces are implemented for molecules (clusters) only; these are the "
                         "integrals of a periodic cell")

    xc = resolve_xc(xc)
    if getattr(xc, "sr_exchange", 0.0) and fints.sr is None:
        raise ValueError(f"forces of {xc.name} need the short-range derivative integrals: build "
                         f"them with force_integrals(..., omega={xc.omega})")
    if grid_response and fints.grid is None:
        raise ValueError("grid_response=True needs the grid geometry: build the force integrals "
                         "with force_integrals(..., grid_level=...) or grids=...")
    if grid_response and fints.grid.n_grid > ints.n_grid:
        raise ValueError("the force integrals' grid does not match the SCF integrals' grid")
    return _energy_gradient(gamma, fock, ints, fints, xc=xc, grid_response=grid_response)


def _energy_gradient_impl(gamma, fock, ints, fints, xc, grid_response):
    gamma = 0.5 * (gamma + gamma.T)
    w = 0.5 * gamma @ fock @ gamma
    w = 0.5 * (w + w.T)
    grad = one_electron_gradient(gamma, w, fints) + coulomb_gradient(gamma, ints.cderi, fints,
                                                                        ints.pairs)
    r0 = ints.atom_coords
    grad = grad + jax.grad(nuclear_repulsion)(r0, ints.atom_charges)
    grid = fints.grid if grid_response else None
    grad = grad + jax.grad(lambda r: xc_energy_at(gamma, ints, xc, r, grid))(r0)
    if exchange.needs_exchange(xc):
        grad = grad + exchange.exchange_gradient(gamma, ints, fints, xc)
    return grad


_energy_gradient = jax.jit(_energy_gradient_impl, static_argnames=("xc", "grid_response"))


def forces(result, ints, fints: ForceIntegrals, xc, *, grid_response: bool = False) -> jax.Array:
    """Nuclear forces F_A = −dE/dR_A [natm, 3] (Hartree/Bohr) of an SCF solution.

    A JAX function of ``result.gamma`` and ``result.fock``: with ``result`` from
    :func:`jaxks.implicit.solve`, ``jax.grad`` of any loss on the forces reaches the model
    parameters through the implicit SCF gradient. The explicit geometry dependence of an extra
    energy term (e.g. a DeePKS correction) is not included here; add −∂E_term/∂R yourself.

    Args:
        result: :class:`jaxks.scf.SCFResult` (converged).
        ints, fints: integrals and derivative integrals of the geometry.
        xc: functional name or :class:`jaxks.xc.XCFunctional` (the one the SCF used).
        grid_response: include the grid-weight response (PySCF ``grid_response=True``).
    """
    return -energy_gradient(result.gamma, result.fock, ints, fints, xc,
                            grid_response=grid_response)


# ----------------------------------------------------------------------------- output
def format_forces(symbols, forces) -> str:
    """Human-readable table of forces in Hartree/Bohr and eV/Å (one row per atom)."""
    f = np.asarray(forces, dtype=float)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] != len(symbols):
        raise ValueError(f"forces must have shape [{len(symbols)}, 3], got {f.shape}")
    # values below the printed precision show as 0 rather than "-0.00000000"
    f = np.where(np.abs(f) < 5e-9, 0.0, f)
    ev = f * EV_ANGSTROM_PER_HARTREE_BOHR
    lines = ["Forces (F = -dE/dR)",
             f"{'atom':>8} {'Fx':>13} {'Fy':>13} {'Fz':>13}   {'Fx':>11} {'Fy':>11} {'Fz':>11}",
             f"{'':>8} {'(Hartree/Bohr)':>41}   {'(eV/Angstrom)':>35}"]
    for i, (s, row, row_ev) in enumerate(zip(symbols, f, ev)):
        lines.append(f"{i:>4} {s:<3} " + " ".join(f"{v:13.8f}" for v in row) + "   "
                     + " ".join(f"{v:11.6f}" for v in row_ev))
    lines.append(f"max |F| = {np.max(np.linalg.norm(f, axis=1)):.3e} Hartree/Bohr"
                 if len(f) else "no atoms")
    return "\n".join(lines)


def forces_json(forces) -> dict:
    """JSON-ready dict of forces in both units: lists [natm][3] of floats."""
    f = np.asarray(forces, dtype=float)
    if not np.all(np.isfinite(f)):
        raise ValueError("forces contain NaN or infinity")
    return {"forces_hartree_per_bohr": f.tolist(),
            "forces_ev_per_angstrom": (f * EV_ANGSTROM_PER_HARTREE_BOHR).tolist(),
            "forces_definition": "F = -dE/dR"}

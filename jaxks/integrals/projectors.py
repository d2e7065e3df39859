"""Overlaps of the orbital basis with the DeePKS projectors, and their nuclear derivatives
(PySCF, host side, once per geometry): the integrals stage's part of :mod:`jaxks.deepks`.

The projectors sit on ghost atoms (no charge, no electrons) at the nuclei;
P[μ, I, k] = ⟨φ_μ|α^I_k⟩ (``int1e_ovlp`` cross integrals) and ⟨∇φ|α⟩, ⟨∇α|φ⟩
(``int1e_ipovlp``). The projector basis and the result types live in
:mod:`jaxks.deepks.projectors` (imported inside the functions: that module re-exports these).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jaxks.deepks.projectors import ProjectorBasis, ProjectorData, ProjectorDerivs


def projector_mol(mol, basis: ProjectorBasis | None = None):
    """PySCF ``Mole`` of ghost atoms (no charge) carrying ``basis`` at the nuclei of ``mol``."""
    from pyscf import gto

    from jaxks.deepks.projectors import resolve_basis

    basis = resolve_basis(basis)
    pmol = gto.Mole()
    pmol.atom = [["X", c] for c in mol.atom_coords(unit="Bohr")]
    pmol.unit = "Bohr"
    pmol.basis = {"X": basis.to_pyscf()}
    pmol.cart = False
    pmol.verbose = 0
    pmol.build(dump_input=False, parse_arg=False)
    return pmol


def _check_mol(mol):
    from jaxks.system import InputError

    if mol.cart:
        raise InputError("DeePKS projectors need spherical orbital basis functions "
                         "(mol.cart=False)")


def projector_overlaps(mol, basis: ProjectorBasis | None = None) -> ProjectorData:
    """P[μ, I, k] = ⟨φ_μ|α^I_k⟩ for every atom I (PySCF ``int1e_ovlp`` cross integrals).

    Args:
        mol: PySCF ``Mole`` of the system (spherical AOs).
        basis: projector basis (default: DeePKS-kit's).
    Returns:
        :class:`ProjectorData` with overlaps [nao, natm, nproj].
    """
    from pyscf import gto

    from jaxks.deepks.projectors import ProjectorData, resolve_basis

    _check_mol(mol)
    basis = resolve_basis(basis)
    pmol = projector_mol(mol, basis)
    s = gto.intor_cross("int1e_ovlp", mol, pmol)
    return ProjectorData(jnp.asarray(s.reshape(mol.nao, mol.natm, basis.n_proj)),
                         shells=basis.shell_structure)


def projector_derivatives(mol, basis: ProjectorBasis | None = None) -> ProjectorDerivs:
    """Derivative integrals of P with respect to the AO centres and the projector centres.

    ``int1e_ipovlp`` puts ∇ on the bra: ⟨∇φ|α⟩ from (mol, pmol), ⟨∇α|φ⟩ from (pmol, mol).

    Returns:
        :class:`ProjectorDerivs` (arrays in Bohr⁻¹).
    """
    from pyscf import gto

    from jaxks.deepks.projectors import ProjectorDerivs, resolve_basis

    _check_mol(mol)
    basis = resolve_basis(basis)
    pmol = projector_mol(mol, basis)
    nao, natm, nproj = mol.nao, mol.natm, basis.n_proj
    ao_ip = gto.intor_cross("int1e_ipovlp", mol, pmol).reshape(3, nao, natm, nproj)
    proj_ip = gto.intor_cross("int1e_ipovlp", pmol, mol)  # [3, natm*nproj, nao]
    proj_ip = proj_ip.transpose(0, 2, 1).reshape(3, nao, natm, nproj)
    ao_atom = np.zeros((nao, natm))
    for a, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        ao_atom[p0:p1, a] = 1.0
    return ProjectorDerivs(jnp.asarray(ao_ip), jnp.asarray(proj_ip), jnp.asarray(ao_atom))

"""Projector basis and overlap integrals: against analytic Gaussian overlaps, an independently
built PySCF projector molecule, and finite differences of the overlaps."""

import numpy as np
import pytest
from pyscf import gto

from jaxks.integrals.projectors import (DEFAULT_BASIS_NAME, ProjectorBasis,
                                        basis_from_exponents, basis_from_pyscf, default_basis,
                                        projector_derivatives, projector_mol, projector_overlaps,
                                        resolve_basis)
from jaxks.system import InputError
from tests.deepks.conftest import WATER_BOHR, make_mol


@pytest.fixture(scope="module")
def water_mol():
    """Water without symmetry, STO-3G (the molecule of the DeePKS tests)."""
    return make_mol(["O", "H", "H"], WATER_BOHR)

# method.md §3, written out here independently of the package
ZETA = 1.5 ** np.array([17, 13, 10, 7, 5, 3, 2, 1, 0, -1, -2, -3], dtype=float)


def radial_overlap_reference(l):
    """<R_i|R_j> of the default radial functions from the closed-form overlap of normalised
    concentric Gaussians, <g̃_a|g̃_b> = (2 sqrt(ab)/(a+b))^(l+3/2)."""
    a, b = ZETA[:, None], ZETA[None, :]
    s_prim = (2 * np.sqrt(a * b) / (a + b)) ** (l + 1.5)
    c = np.eye(12)
    c[np.arange(11), np.arange(1, 12)] = -1.0  # R_j = g̃_j - g̃_{j-1}
    s = c.T @ s_prim @ c
    n = 1 / np.sqrt(np.diag(s))
    return n[:, None] * s * n[None, :]


def test_default_basis_layout():
    b = default_basis()
    assert b.n_proj == 108
    assert b.shell_structure == ((0, 12), (1, 12), (2, 12))
    assert b.shell_sections == (1,) * 12 + (3,) * 12 + (5,) * 12
    for shell in b.shells:
        np.testing.assert_array_equal(shell.exponents, ZETA)
    assert resolve_basis(None) == b and resolve_basis("default") == b


@pytest.mark.parametrize("l", [0, 1, 2])
def test_default_radial_functions_normalised_and_ordered(l):
    """The atom's projector overlap matrix: radial index outer, m inner, blocks s, p, d."""
    mol = gto.M(atom="He 0 0 0", basis="sto-3g", verbose=0)
    s = projector_mol(mol).intor("int1e_ovlp")
    assert s.shape == (108, 108)
    m = 2 * l + 1
    start = 12 * sum(2 * k + 1 for k in range(l))
    block = s[start:start + 12 * m, start:start + 12 * m].reshape(12, m, 12, m)
    ref = radial_overlap_reference(l)
    for mm in range(m):
        np.testing.assert_allclose(block[:, mm, :, mm], ref, atol=1e-12)
        for m2 in range(m):
            if m2 != mm:
                np.testing.assert_allclose(block[:, mm, :, m2], 0, atol=1e-12)


def test_overlaps_match_independent_projector_molecule(water_mol):
    """P[μ, I, k] against PySCF cross overlaps with DeePKS-kit-style 'Ne' carriers built here."""
    table = np.concatenate([ZETA[:, None], np.eye(12) - np.eye(12, k=1)], axis=1).tolist()
    pmol = gto.M(atom=[("Ne", c) for c in water_mol.atom_coords()], unit="Bohr",
                 basis=[[l, *table] for l in range(3)], verbose=0)
    ref = gto.intor_cross("int1e_ovlp", water_mol, pmol)
    proj = projector_overlaps(water_mol)
    assert proj.overlaps.shape == (water_mol.nao, 3, 108)
    assert proj.shells == ((0, 12), (1, 12), (2, 12))
    for a in range(3):
        np.testing.assert_allclose(proj.overlaps[:, a, :], ref[:, 108 * a:108 * (a + 1)],
                                   atol=1e-14)


def test_user_defined_bases():
    b = basis_from_exponents([4.0, 1.0, 0.25], l_values=(0, 1))
    assert b.n_proj == 3 + 9 and b.shell_sections == (1, 1, 1, 3, 3, 3)
    p = basis_from_exponents([4.0, 1.0], l_values=(2,), contraction="primitive")
    assert p.n_proj == 10
    cc = basis_from_pyscf("cc-pvdz@O")
    ref = gto.M(atom="O 0 0 0", basis="cc-pvdz", spin=2, verbose=0)
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    assert cc.n_proj == ref.nao
    assert projector_overlaps(mol, cc).overlaps.shape == (2, 2, ref.nao)
    assert ProjectorBasis.from_dict(cc.to_dict()) == cc
    assert default_basis().name == DEFAULT_BASIS_NAME


@pytest.mark.parametrize("bad", [dict(exponents=[]), dict(exponents=[1.0, -2.0]),
                                 dict(exponents=[1.0, 1.0]),
                                 dict(exponents=[1.0], l_values=(-1,)),
                                 dict(exponents=[1.0], contraction="orthogonal")])
def test_bad_user_basis_is_rejected(bad):
    with pytest.raises(InputError):
        basis_from_exponents(**bad)


def test_unknown_pyscf_basis():
    with pytest.raises(InputError, match="no basis"):
        basis_from_pyscf("no-such-basis-xyz")


def test_cartesian_orbital_basis_rejected():
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", cart=True, verbose=0)
    with pytest.raises(InputError, match="spherical"):
        projector_overlaps(mol)


def test_derivative_integrals_match_finite_differences(water_mol):
    """dP/dR_A = −ao_ip (AOs on A) − proj_ip (projectors on A) vs central differences."""
    basis = basis_from_exponents([3.0, 0.8, 0.2], l_values=(0, 1, 2))
    der = projector_derivatives(water_mol, basis)
    ao_ip, proj_ip, onehot = (np.asarray(x) for x in (der.ao_ip, der.proj_ip, der.ao_atom))
    coords = water_mol.atom_coords()
    h = 1e-4
    for atom, axis in [(0, 0), (1, 1), (2, 2), (1, 0)]:
        def overlaps(step):
            c = coords.copy()
            c[atom, axis] += step
            return np.asarray(projector_overlaps(water_mol.set_geom_(c, unit="Bohr",
                                                                     inplace=False),
                                                 basis).overlaps)
        fd = (overlaps(h) - overlaps(-h)) / (2 * h)
        analytic = -ao_ip[axis] * onehot[:, atom][:, None, None]
        analytic[:, atom, :] -= proj_ip[axis, :, atom, :]
        np.testing.assert_allclose(analytic, fd, atol=1e-8)

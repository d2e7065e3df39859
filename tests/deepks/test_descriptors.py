"""Descriptors against an independent NumPy evaluation, symmetry invariances, degenerate atoms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto

from jaxks.deepks.descriptors import descriptors, projected_density_blocks
from jaxks.integrals.projectors import default_basis, projector_mol, projector_overlaps
from tests.deepks.conftest import WATER_BOHR, make_mol, rhf_density


def numpy_descriptors(mol, dm):
    """eigvalsh(Pᵀ Γ P) atom by atom, shell by shell, in DeePKS-kit order (s, p, d; radial index
    outer; ascending eigenvalues), with P taken straight from PySCF."""
    pmol = projector_mol(mol, default_basis())
    p_all = gto.intor_cross("int1e_ovlp", mol, pmol)
    rows = []
    for atom in range(mol.natm):
        p_atom = p_all[:, 108 * atom:108 * (atom + 1)]
        row, col = [], 0
        for l in range(3):
            m = 2 * l + 1
            for n in range(12):
                p = p_atom[:, col:col + m]
                row.extend(np.linalg.eigvalsh(p.T @ dm @ p))
                col += m
        rows.append(row)
    return np.array(rows)


def test_descriptors_match_numpy(water_mol, water_dm):
    d = descriptors(jnp.asarray(water_dm), projector_overlaps(water_mol))
    assert d.shape == (3, 108)
    np.testing.assert_allclose(d, numpy_descriptors(water_mol, water_dm), rtol=0, atol=1e-12)


def test_descriptors_match_numpy_def2svp_dimer():
    mol = make_mol(["O", "H", "H", "O", "H", "H"],
                   np.concatenate([WATER_BOHR, WATER_BOHR @ np.diag([1, -1, 1]) + [5.3, 0.4, 0.2]]),
                   basis="def2-svp")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(mol.nao, mol.nao))
    dm = a @ a.T / mol.nao  # any symmetric matrix will do for the algebra
    d = jax.jit(descriptors)(jnp.asarray(dm), projector_overlaps(mol))
    assert d.shape == (6, 108)
    np.testing.assert_allclose(d, numpy_descriptors(mol, dm), rtol=0, atol=1e-12)


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("basis", ["sto-3g", "def2-svp"])
def test_rotation_translation_invariance(basis):
    mol = make_mol(["O", "H", "H"], WATER_BOHR, basis)
    ref = descriptors(jnp.asarray(rhf_density(mol)), projector_overlaps(mol))
    coords = WATER_BOHR @ random_rotation(3).T + np.array([0.7, -1.9, 2.4])
    mol2 = make_mol(["O", "H", "H"], coords, basis)
    d = descriptors(jnp.asarray(rhf_density(mol2)), projector_overlaps(mol2))
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-9)
    # the projected blocks themselves do change: the test is not trivially satisfied
    b1 = projected_density_blocks(jnp.asarray(rhf_density(mol)), projector_overlaps(mol).overlaps,
                                  default_basis().shell_structure)[1]
    b2 = projected_density_blocks(jnp.asarray(rhf_density(mol2)),
                                  projector_overlaps(mol2).overlaps,
                                  default_basis().shell_structure)[1]
    assert np.abs(np.asarray(b1) - np.asarray(b2)).max() > 1e-3


def test_atom_permutation_permutes_rows(water_mol, water_dm):
    ref = descriptors(jnp.asarray(water_dm), projector_overlaps(water_mol))
    perm = [2, 0, 1]
    mol2 = make_mol(["H", "O", "H"], WATER_BOHR[perm])
    d = descriptors(jnp.asarray(rhf_density(mol2)), projector_overlaps(mol2))
    np.testing.assert_allclose(d, np.asarray(ref)[perm], rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", ["Ne", "CH4"])
def test_degenerate_blocks_give_finite_derivatives(case):
    """A free atom (p, d blocks exactly degenerate) and a Td molecule: descriptors, gradient and
    second derivative of a nonlinear function of them stay finite, and the gradient of a
    symmetric function of a degenerate block agrees with central differences."""
    if case == "Ne":
        mol = gto.M(atom="Ne 0 0 0", basis="sto-3g", verbose=0)
    else:
        r = 1.19
        mol = gto.M(atom=[("C", (0, 0, 0))] + [("H", tuple(r * np.array(v))) for v in
                                               [(1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)]],
                    unit="Bohr", basis="sto-3g", verbose=0)
    dm = jnp.asarray(rhf_density(mol))
    proj = projector_overlaps(mol)
    d = descriptors(dm, proj)
    assert np.all(np.isfinite(d))
    p_c = np.asarray(d[0, 12:48]).reshape(12, 3)
    assert np.ptp(p_c, axis=1).max() < 1e-10  # exactly degenerate p blocks on the centre

    def f(g):
        x = descriptors(g, proj)
        return jnp.sum(jnp.tanh(3 * x) * jnp.arange(x.shape[-1])) + jnp.sum(x ** 3)

    direction = jnp.asarray(np.random.default_rng(1).normal(size=dm.shape))
    direction = direction + direction.T
    grad, hvp = jax.jit(lambda g, t: jax.jvp(jax.grad(f), (g,), (t,)))(dm, direction)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hvp))

    def sym(g):  # symmetric in each block's eigenvalues: differentiable at the degeneracy
        return jnp.sum(descriptors(g, proj) ** 2)

    h = 1e-5
    sym_jit = jax.jit(sym)
    fd = (sym_jit(dm + h * direction) - sym_jit(dm - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(jax.jit(jax.grad(sym))(dm), direction), fd, rtol=1e-7)

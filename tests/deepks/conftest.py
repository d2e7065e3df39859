"""Shared fixtures of the DeePKS tests: small molecules, tightly converged PySCF densities."""

import numpy as np
import pytest

import jaxks  # noqa: F401  (float64 on)

#: Water without symmetry (Bohr): no accidental degeneracies in the descriptor blocks.
WATER_BOHR = np.array([[0.05, -0.02, 0.22], [0.0, 1.43, -0.89], [0.11, -1.40, -0.93]])


def make_mol(symbols, coords_bohr, basis="sto-3g"):
    from pyscf import gto

    return gto.M(atom=[(s, c) for s, c in zip(symbols, coords_bohr)], unit="Bohr", basis=basis,
                 verbose=0)


def rhf_density(mol):
    """A PySCF RHF density converged far below the tolerances of the tests (no grid involved,
    so it is exactly rotation invariant up to the convergence threshold)."""
    from pyscf import scf

    mf = scf.RHF(mol)
    mf.conv_tol = 1e-13
    mf.conv_tol_grad = 1e-10
    mf.kernel()
    assert mf.converged
    return mf.make_rdm1()


@pytest.fixture(scope="session")
def water_mol():
    return make_mol(["O", "H", "H"], WATER_BOHR)


@pytest.fixture(scope="session")
def water_dm(water_mol):
    return rhf_density(water_mol)


def richardson(f, h):
    """df/ds at s = 0 from central differences at h and h/2, extrapolated (error O(h⁴))."""
    d_h = (f(h) - f(-h)) / (2 * h)
    d_h2 = (f(h / 2) - f(-h / 2)) / h
    return (4 * d_h2 - d_h) / 3


def fd_forces_at_fixed_density(term, model_params, mol, gamma, basis=None, h=1e-4):
    """−dE_δ/dR_A [natm, 3] (Hartree/Bohr) at fixed Γ by finite differences: every atom (its
    AOs and projectors) moved along every axis, the projector overlaps P recomputed by PySCF."""
    import jax

    from jaxks.deepks.correction import deepks_params
    from jaxks.integrals.projectors import projector_overlaps

    energy = jax.jit(term)
    coords = mol.atom_coords()
    out = np.zeros((mol.natm, 3))
    for atom in range(mol.natm):
        for axis in range(3):
            def e(step):
                c = coords.copy()
                c[atom, axis] += step
                moved = mol.set_geom_(c, unit="Bohr", inplace=False)
                return float(energy(gamma, deepks_params(model_params,
                                                         projector_overlaps(moved, basis))))
            out[atom, axis] = -richardson(e, h)
    return out

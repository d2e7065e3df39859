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

"""The integrals stage: the whitened DF tensor against PySCF, and its zero-copy hand-over to JAX."""

import jax
import numpy as np
import pytest
from pyscf import gto, lib
from pyscf.df import incore

from jaxks.integrals import _to_device, auxmol_for, cholesky_cderi

from .geometries import WATER_DIMER


@pytest.fixture(scope="module")
def dimer():
    mol = gto.M(atom=list(zip(*WATER_DIMER)), basis="def2-svp", verbose=0)
    return mol, auxmol_for(mol, "def2-universal-jkfit")


def test_cderi_reproduces_pyscf_df_eri(dimer):
    """Bᵀ B is the DF Coulomb matrix (μν|P)(P|Q)⁻¹(Q|λσ), the same as PySCF's."""
    mol, auxmol = dimer
    b = cholesky_cderi(mol, auxmol)
    ref = incore.cholesky_eri(mol, auxmol=auxmol)
    assert b.shape == ref.shape
    np.testing.assert_allclose(b.T @ b, ref.T @ ref, atol=1e-11)


def test_cderi_blocking_does_not_change_the_result(dimer):
    """Shell blocks small enough to force many blocks give the one-block tensor."""
    mol, auxmol = dimer
    whole = cholesky_cderi(mol, auxmol)
    blocked = cholesky_cderi(mol, auxmol, max_block_mb=0.05)
    np.testing.assert_allclose(blocked, whole, atol=1e-13)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="zero-copy hand-over is CPU only")
def test_cderi_goes_to_jax_without_a_copy(dimer):
    """The largest array of a calculation must not exist twice: JAX takes the NumPy buffer."""
    mol, auxmol = dimer
    b = cholesky_cderi(mol, auxmol)
    expected = b.copy()
    x = _to_device(b)
    assert x.unsafe_buffer_pointer() == b.ctypes.data
    del b
    lib.num_threads()  # touch the heap; the JAX array must still own valid data
    np.testing.assert_array_equal(np.asarray(x), expected)

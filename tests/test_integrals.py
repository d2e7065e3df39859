"""The integrals stage: the whitened DF tensor against PySCF, and its zero-copy hand-over to JAX."""

import jax
import numpy as np
import pytest
from pyscf import gto
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


def test_cderi_in_many_blocks_reproduces_pyscf(dimer):
    """Shell blocks small enough to force dozens of blocks still give PySCF's DF Coulomb matrix."""
    mol, auxmol = dimer
    blocked = cholesky_cderi(mol, auxmol, max_block_mb=0.05)
    ref = incore.cholesky_eri(mol, auxmol=auxmol)
    np.testing.assert_allclose(blocked.T @ blocked, ref.T @ ref, atol=1e-11)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="zero-copy hand-over is CPU only")
def test_cderi_goes_to_jax_without_a_copy(dimer):
    """The largest array of a calculation must not exist twice: JAX takes the NumPy buffer."""
    mol, auxmol = dimer
    b = cholesky_cderi(mol, auxmol)
    expected = b.copy()
    x = _to_device(b)
    assert x.unsafe_buffer_pointer() == b.ctypes.data
    del b
    # Had the buffer been freed with b, this same-sized allocation would reuse its pages.
    scratch = np.full(expected.shape, -1.0)
    np.testing.assert_array_equal(np.asarray(x), expected)
    del scratch

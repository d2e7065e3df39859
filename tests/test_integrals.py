"""The integrals stage: the whitened DF tensor against PySCF, and its zero-copy hand-over to JAX."""

import jax
import numpy as np
import pytest
from pyscf import gto
from pyscf.df import incore

from jaxks.integrals import _to_device, auxmol_for, cholesky_cderi, df_tensor, range_separated_cderi

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


@pytest.mark.parametrize("max_block_mb", [512.0, 0.05])
def test_screened_tensor_keeps_pyscf_columns_above_the_cutoff(dimer, max_block_mb):
    """Pair screening keeps exactly the columns of PySCF's tensor whose 2-norm reaches the cutoff
    (in one block and in dozens), in packed-triangle order, and drops only smaller ones."""
    mol, auxmol = dimer
    ref = incore.cholesky_eri(mol, auxmol=auxmol)
    norms = np.linalg.norm(ref, axis=0)
    cutoff = 1e-3  # drops 31 % of this dimer's pairs
    b, keep = df_tensor(mol, auxmol, pair_cutoff=cutoff, max_block_mb=max_block_mb)
    np.testing.assert_array_equal(keep, norms >= cutoff)
    assert 0.1 < 1 - keep.mean() < 0.9
    kept = ref[:, keep]
    # the Cholesky factor's rows are unique up to sign: compare Bᵀ B
    np.testing.assert_allclose(b.T @ b, kept.T @ kept, atol=1e-11)
    assert b.ctypes.data % 64 == 0
    # the same pairs, asked for by mask (the short-range tensor's path), give the same columns
    b2, keep2 = df_tensor(mol, auxmol, keep=keep)
    np.testing.assert_array_equal(b2, b)
    np.testing.assert_array_equal(keep2, keep)


def test_nothing_screened_reports_no_pair_list(dimer):
    mol, auxmol = dimer
    b, keep = df_tensor(mol, auxmol, pair_cutoff=0.0)
    assert keep is None and b.shape[1] == mol.nao * (mol.nao + 1) // 2


def test_short_range_tensor_on_kept_pairs(dimer):
    """The short-range tensor on a pair mask is PySCF's range-separated tensor's columns there."""
    mol, auxmol = dimer
    omega = 0.11
    full = range_separated_cderi(mol, auxmol, omega)
    keep = np.linalg.norm(cholesky_cderi(mol, auxmol), axis=0) >= 1e-3
    part = range_separated_cderi(mol, auxmol, omega, keep)
    with mol.with_range_coulomb(-omega), auxmol.with_range_coulomb(-omega):
        ref = incore.cholesky_eri(mol, auxmol=auxmol)
    np.testing.assert_allclose(full.T @ full, ref.T @ ref, atol=1e-11)
    np.testing.assert_allclose(part.T @ part, (ref.T @ ref)[np.ix_(keep, keep)], atol=1e-11)
    with pytest.raises(ValueError, match="expected"):
        df_tensor(mol, auxmol, keep=keep[:-1])


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

"""Packing symmetric matrices onto the DF tensor's AO pairs, against NumPy's triangle and PySCF's
``pack_tril`` / ``unpack_tril``."""

import numpy as np
import pytest
from pyscf import lib

from jaxks.pairs import n_pairs, pack, pack_weights, pair_list, unpack

NAO = 7


@pytest.fixture(scope="module")
def sym():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(NAO, NAO))
    return a + a.T


@pytest.fixture(scope="module")
def keep():
    rng = np.random.default_rng(4)
    k = rng.random(NAO * (NAO + 1) // 2) < 0.6
    k[0] = False  # the first pair dropped too
    return k


def test_whole_triangle_is_pyscf_pack_tril(sym):
    np.testing.assert_array_equal(np.asarray(pack(sym)), lib.pack_tril(sym))
    v = lib.pack_tril(sym)
    np.testing.assert_array_equal(np.asarray(unpack(v, NAO)), lib.unpack_tril(v))
    assert n_pairs(NAO, None) == v.size


def test_kept_pairs_are_those_of_the_triangle(sym, keep):
    pairs = pair_list(keep, NAO)
    assert n_pairs(NAO, pairs) == keep.sum()
    np.testing.assert_array_equal(np.asarray(pack(sym, pairs)), lib.pack_tril(sym)[keep])
    full = lib.pack_tril(sym).copy()
    full[~keep] = 0.0  # dropped pairs unpack to zero, on both sides of the diagonal
    np.testing.assert_array_equal(np.asarray(unpack(full[keep], NAO, pairs)), lib.unpack_tril(full))


def test_unpack_keeps_leading_axes(keep):
    pairs = pair_list(keep, NAO)
    rng = np.random.default_rng(5)
    v = rng.normal(size=(3, 2, int(keep.sum())))
    out = np.asarray(unpack(v, NAO, pairs))
    assert out.shape == (3, 2, NAO, NAO)
    np.testing.assert_array_equal(out[1, 0], np.asarray(unpack(v[1, 0], NAO, pairs)))


def test_pack_weights_gives_the_full_contraction(sym, keep):
    """Σ_μν X_μν m_μν = pack(X)·pack_weights(m) for symmetric X stored on the kept pairs."""
    rng = np.random.default_rng(6)
    m = rng.normal(size=(NAO, NAO))
    m = m + m.T
    for pairs, mask in ((None, np.ones_like(keep)), (pair_list(keep, NAO), keep)):
        x = lib.pack_tril(sym).copy()
        x[~mask] = 0.0
        full = lib.unpack_tril(x)
        got = float(np.asarray(pack(full, pairs)) @ np.asarray(pack_weights(m, pairs)))
        assert got == pytest.approx(np.sum(full * m), rel=1e-13)


def test_pair_list_rejects_a_wrong_mask():
    with pytest.raises(ValueError, match="expected"):
        pair_list(np.ones(5, bool), NAO)

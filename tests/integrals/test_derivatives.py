"""The blocked 3-centre derivative integrals (jaxks.integrals.derivatives): block layout and the
Γ-contraction with its reverse-mode transpose (XLA for a stored tensor, host for a streamed one),
against PySCF's dense ``int3c2e_ip1`` tensor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.integrals import auxmol_for
from jaxks.integrals.derivatives import force_integrals, ip1_block, ip1_contract
from tests import geometries as geo
from tests.conftest import make_system

AUX = "def2-universal-jkfit"


@pytest.fixture(scope="module")
def water():
    mol = make_system(geo.WATER, basis="def2-svp").to_pyscf()
    aux = auxmol_for(mol, AUX)
    from pyscf.df import incore

    # (∂_x μ ν|P) [3, μ, ν, P]
    dense = np.asarray(incore.aux_e2(mol, aux, intor="int3c2e_ip1", aosym="s1", comp=3))
    rng = np.random.default_rng(0)
    gamma = rng.normal(size=(mol.nao, mol.nao))
    gamma = gamma + gamma.T
    return mol, dense, gamma


def _blocks(fints, fn):
    """fn(i) for every block, scattered back onto the auxiliary index: [naux, ...]."""
    naux = int(fints.aux_atom_flat.shape[0])
    out = {}
    for i, index in enumerate(np.asarray(fints.aux_index)):
        vals = np.asarray(fn(i))
        for k, p in enumerate(index):
            if p < naux:
                out[int(p)] = vals[k]
    assert sorted(out) == list(range(naux))
    return np.stack([out[p] for p in range(naux)])


@pytest.mark.parametrize("streamed", [False, True])
def test_contraction_and_transpose_match_dense_tensor(water, streamed, monkeypatch):
    mol, dense, gamma = water
    fints = force_integrals(mol, AUX, store_mb=0.0 if streamed else 512.0, max_block_mb=0.3)
    assert fints.streamed == streamed and fints.aux_index.shape[0] > 2
    g = jnp.asarray(gamma)

    # T_xPμ = Σ_ν (∂_x μ ν|P) Γ_νμ
    contract = jax.jit(lambda i, g: jnp.transpose(ip1_contract(fints, i, g), (1, 0, 2)))
    t = _blocks(fints, lambda i: contract(i, g))                         # [naux, 3, nao]
    np.testing.assert_allclose(t, np.einsum("xmnp,nm->pxm", dense, gamma), rtol=0, atol=1e-12)

    # reverse mode: Γ̄_νμ = Σ_xP (∂_x μ ν|P) T̄_xPμ, through jit and scan as the forces use it
    nblk, blk = fints.aux_index.shape
    tbar = np.random.default_rng(1).normal(size=(nblk, 3, blk, mol.nao))
    tbar = tbar * (np.asarray(fints.aux_index) < dense.shape[-1])[:, None, :, None]

    def loss(g):
        def body(acc, x):
            i, tb = x
            return acc + jnp.vdot(ip1_contract(fints, i, g), tb), None
        return jax.lax.scan(body, 0.0, (jnp.arange(nblk), jnp.asarray(tbar)))[0]

    import jaxks.integrals.derivatives as derivs

    calls = []
    real = derivs._ip1_streamed
    monkeypatch.setattr(derivs, "_ip1_streamed", lambda *a: calls.append(1) or real(*a))
    _, gbar = jax.jit(jax.value_and_grad(loss))(g)
    gbar = np.asarray(gbar)
    # value and gradient: each streamed block computed twice (no third, checkpointed pass)
    assert len(calls) == (2 * nblk if streamed else 0)
    tb_flat = _blocks(fints, lambda i: np.transpose(tbar[i], (1, 0, 2)))   # [naux, 3, nao]
    np.testing.assert_allclose(gbar, np.einsum("xmnp,pxm->nm", dense, tb_flat), rtol=0,
                               atol=1e-11)


def test_ip1_block_layout(water):
    """ip1_block (used by the exchange gradient) is [blk, 3, μ, ν] of the same tensor."""
    mol, dense, _ = water
    for store_mb in (0.0, 512.0):
        fints = force_integrals(mol, AUX, store_mb=store_mb, max_block_mb=0.3)
        blocks = _blocks(fints, lambda i: ip1_block(fints, i))               # [naux, 3, μ, ν]
        np.testing.assert_allclose(blocks, np.transpose(dense, (3, 0, 1, 2)), rtol=0, atol=1e-14)

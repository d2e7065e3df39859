"""AO pairs (μ ≥ ν): the columns of the density-fitting tensor, and packing matrices onto them.

The whitened 3-centre tensor B_P,μν is symmetric in μν, so it stores each pair once, on the packed
lower triangle in PySCF's ``pack_tril`` order (column k = μ(μ+1)/2 + ν for μ ≥ ν). With pair
screening (:func:`jaxks.integrals.df_tensor`) it keeps only the pairs whose column can matter, in
that order; a :class:`PairList` names them. ``pairs=None`` everywhere means the whole triangle,
nao(nao+1)/2 columns, with index arrays that are compile-time constants (what batched training
frames use: their shapes do not depend on the geometry).

Every function here is linear, so a Coulomb build J = unpack(B·pack_weights(Γ)·B) is exactly the
density-fitted J of the tensor's pairs, and its derivatives follow by autodiff.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PairList:
    """The AO pairs kept as columns of a screened DF tensor (int32 arrays, pytree leaves).

    Attributes:
        rows, cols: μ and ν (μ ≥ ν) of column k, [n_pair] each, in packed-triangle order.
        column: [nao, nao] column k of the pair (max(μ,ν), min(μ,ν)); n_pair for a dropped pair
            (an out-of-range index that :func:`unpack` turns into 0).
    """

    rows: jax.Array
    cols: jax.Array
    column: jax.Array

    @property
    def n_pair(self) -> int:
        return self.rows.shape[0]


def pair_list(keep: np.ndarray, nao: int) -> PairList:
    """:class:`PairList` of the packed-triangle positions where ``keep`` [nao(nao+1)/2] is True."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (nao * (nao + 1) // 2,):
        raise ValueError(f"keep has shape {keep.shape}, expected ({nao * (nao + 1) // 2},)")
    rows, cols = np.tril_indices(nao)
    column = np.full(keep.shape, int(keep.sum()), dtype=np.int32)
    column[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    return PairList(rows=jnp.asarray(rows[keep], jnp.int32), cols=jnp.asarray(cols[keep], jnp.int32),
                    column=jnp.asarray(column[tril_position(nao)]))


def n_pairs(nao: int, pairs: PairList | None) -> int:
    """Columns of the DF tensor: n_pair, or nao(nao+1)/2 for the whole triangle."""
    return nao * (nao + 1) // 2 if pairs is None else pairs.n_pair


def tril_position(nao: int) -> np.ndarray:
    """[nao, nao] position of (μ, ν) in the whole packed lower triangle: k = i(i+1)/2 + j with
    i = max(μ, ν), j = min(μ, ν)."""
    i = np.maximum.outer(np.arange(nao), np.arange(nao))
    j = np.minimum.outer(np.arange(nao), np.arange(nao))
    return i * (i + 1) // 2 + j


def pack(m: jax.Array, pairs: PairList | None = None) -> jax.Array:
    """m_μν on the tensor's pairs (μ ≥ ν): [n_pair] from [nao, nao] (PySCF's ``pack_tril``
    order when ``pairs`` is None)."""
    if pairs is None:
        rows, cols = np.tril_indices(m.shape[0])
        return m[rows, cols]
    return m[pairs.rows, pairs.cols]


def pack_weights(m: jax.Array, pairs: PairList | None = None) -> jax.Array:
    """:func:`pack` of a symmetric m with off-diagonal entries doubled, so that for symmetric X
    stored on the same pairs Σ_μν X_μν m_μν = pack(X) · pack_weights(m)  ([n_pair])."""
    n = m.shape[0]
    return pack(m * (2.0 - jnp.eye(n, dtype=m.dtype)), pairs)


def unpack(v: jax.Array, nao: int, pairs: PairList | None = None) -> jax.Array:
    """Symmetric matrices from values on the tensor's pairs: [..., n_pair] → [..., nao, nao],
    zero on dropped pairs (inverse of :func:`pack` on the kept pairs). One gather, no scatter."""
    if pairs is None:
        return v[..., tril_position(nao)]
    return jnp.take(v, pairs.column, axis=-1, mode="fill", fill_value=0)

"""Nuclear-derivative integrals of one geometry for the analytic forces (PySCF, host side).

* ``ipovlp``  ⟨∇μ|ν⟩, ``iphcore`` ⟨∇μ|T + V|ν⟩, and the operator derivative of the nuclear
  attraction −Z_A (⟨∇μ|1/r_A|ν⟩ + transpose) per atom (``rinv``),
* ``ip2c``    (∇P|Q) of the auxiliary metric and the fit matrix G with c = G (B·Γ)
  (:class:`jaxks.integrals.Whitening`, the same whitening as the SCF's tensor B),
* the 3-centre derivatives (∂_x μ ν|P) (PySCF ``int3c2e_ip1``), 3·n_aux·n_ao² numbers (6.4 GB for
  (H2O)16 in def2-SVP, ≈ 51 GB for (H2O)32). Below ``store_mb`` they are computed once and kept
  in blocks of auxiliary functions; above it they are never held whole: the forces scan over the
  blocks and each block is computed by PySCF when the scan reaches it (a host callback,
  :func:`ip1_native`), as PySCF's own gradient code does. Peak memory is then one block.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.grid_weights import GridGeometry, grid_geometry

#: Dense ``int3c2e_ip1`` tensors up to this size (MB) are stored; larger ones are streamed.
STORE_MB = 512.0

#: OpenMP threads of PySCF's 3-centre derivative integrals (XLA is idle while they run); the
#: environment variable JAXKS_HOST_THREADS overrides the default (all cores).
HOST_THREADS = int(os.environ.get("JAXKS_HOST_THREADS", os.cpu_count() or 1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ForceIntegrals:
    """Derivative integrals of one geometry (PySCF, host side, once), as JAX arrays.

    Attributes:
        ipovlp: ⟨∇μ|ν⟩ [3, nao, nao] (PySCF ``int1e_ipovlp``).
        iphcore: ⟨∇μ|T + V|ν⟩ [3, nao, nao] (``int1e_ipkin`` + ``int1e_ipnuc``).
        rinv: operator derivative of the nuclear attraction, −Z_A (⟨∇μ|1/r_A|ν⟩ + transpose),
            symmetric, stored on the packed lower triangle [natm, 3, nao(nao+1)/2] (Hartree/Bohr).
        ao_atom: atom of each AO [nao] (int).
        ip1: (∂_x μ ν|P) in blocks of auxiliary functions, libcint's order [nblk, 3, blk, ν, μ]
            (slots past the last auxiliary function of a block are zero), or None when streamed.
        ip1_source: int32 scalar naming the streamed tensor's host-side source (-1 if stored).
        aux_index: position of each block slot in the auxiliary basis [nblk, blk]; n_aux for padding.
        aux_atom: atom of each block slot [nblk, blk] (0 for padding; its integrals are zero).
        ip2c: (∇P|Q) [3, naux, naux] (``int2c2e_ip1``).
        aux_atom_flat: atom of each auxiliary function [naux].
        fit: G [naux, naux'] with fitted coefficients c = G (B·Γ).
        grid: :class:`jaxks.grid_weights.GridGeometry` of the SCF grid, or None (no grid response).
    """

    ipovlp: jax.Array
    iphcore: jax.Array
    rinv: jax.Array
    ao_atom: jax.Array
    ip1: jax.Array | None
    ip1_source: jax.Array
    aux_index: jax.Array
    aux_atom: jax.Array
    ip2c: jax.Array
    aux_atom_flat: jax.Array
    fit: jax.Array
    grid: GridGeometry | None = None
    sr: "ForceIntegrals | None" = None

    @property
    def natm(self) -> int:
        return self.rinv.shape[0]

    @property
    def streamed(self) -> bool:
        return self.ip1 is None


def _ao_atom(mol) -> np.ndarray:
    out = np.empty(mol.nao, dtype=np.int32)
    for a, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        out[p0:p1] = a
    return out


def _aux_blocks(auxmol, max_functions: int) -> list[tuple[int, int]]:
    """Contiguous auxiliary-shell ranges [(s0, s1)] of at most ``max_functions`` functions."""
    loc = auxmol.ao_loc_nr()
    blocks, s0 = [], 0
    while s0 < auxmol.nbas:
        s1 = s0 + 1
        while s1 < auxmol.nbas and loc[s1 + 1] - loc[s0] <= max_functions:
            s1 += 1
        blocks.append((s0, s1))
        s0 = s1
    return blocks


# Host-side sources of streamed tensors: id -> (mol, auxmol, aux shell blocks, block length).
# An id is a plain array leaf of ForceIntegrals, so geometries of one composition share code.
_SOURCES: dict[int, tuple] = {}
_NEXT_ID = itertools.count()


def _ip1_raw(mol, auxmol, s0: int, s1: int, out: np.ndarray | None = None) -> np.ndarray:
    """(∂_x μ ν|P) for auxiliary shells s0:s1 as [3, n, ν, μ] (libcint's memory order; written
    into ``out``, a flat float64 buffer of at least that size, when given)."""
    from pyscf import lib
    from pyscf.df import incore

    with lib.with_omp_threads(HOST_THREADS):
        raw = incore.aux_e2(mol, auxmol, intor="int3c2e_ip1", aosym="s1", comp=3,
                            shls_slice=(0, mol.nbas, 0, mol.nbas, s0, s1), out=out)
    # PySCF returns a [3, μ, ν, P] view of memory laid out [3, P, ν, μ]: reverse it (no copy)
    return np.asarray(raw).transpose(0, 3, 2, 1)


def _ip1_host(mol, auxmol, s0: int, s1: int, blk: int) -> np.ndarray:
    """(∂_x μ ν|P) for auxiliary shells s0:s1 as [3, blk, ν, μ] (zero past the last P)."""
    raw = _ip1_raw(mol, auxmol, s0, s1)
    n = raw.shape[1]
    if n == blk:
        return raw
    out = np.zeros((3, blk) + raw.shape[2:])
    out[:, :n] = raw
    return out


_SCRATCH = threading.local()


def _scratch(size: int) -> np.ndarray:
    """A reused flat float64 buffer of ``size`` (one per thread, kept for the process): a fresh
    256 MB array per streamed block costs its page faults at every force evaluation."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < size:
        buf = _SCRATCH.buf = np.empty(size)
    return buf[:size]


def _ip1_streamed(source, index) -> np.ndarray:
    """Streamed block ``index`` as [3, n, ν, μ] (n real auxiliary functions), in the scratch."""
    mol, auxmol, blocks, blk = _SOURCES[int(source)]
    s0, s1 = blocks[int(index)]
    return _ip1_raw(mol, auxmol, s0, s1, out=_scratch(3 * blk * mol.nao ** 2))


def _ip1_callback(source, index):
    mol, auxmol, blocks, blk = _SOURCES[int(source)]
    s0, s1 = blocks[int(index)]
    return _ip1_host(mol, auxmol, s0, s1, blk)


def ip1_native(fints: ForceIntegrals, index) -> jax.Array:
    """Block ``index`` of (∂_x μ ν|P) in libcint's order [3, blk, ν, μ] (stored, or computed by
    PySCF now; ∂_x acts on μ, the last axis).

    Usable inside jit and scan; the streamed block is a constant to autodiff (it depends on no
    differentiated input), and callers wrap its use in ``jax.checkpoint`` so that reverse mode
    recomputes it rather than storing every block.
    """
    if fints.ip1 is not None:
        return fints.ip1[index]
    nao = fints.ipovlp.shape[-1]
    blk = fints.aux_index.shape[1]
    shape = jax.ShapeDtypeStruct((3, blk, nao, nao), jnp.float64)
    return jax.pure_callback(_ip1_callback, shape, fints.ip1_source, index,
                             vmap_method="sequential")


def ip1_block(fints: ForceIntegrals, index) -> jax.Array:
    """Block ``index`` of (∂_x μ ν|P) as [blk, 3, μ, ν] (:func:`ip1_native` transposed; a copy —
    new code should contract :func:`ip1_native` directly)."""
    return jnp.transpose(ip1_native(fints, index), (1, 0, 3, 2))


# ----------------------------------------------------------------------------- Γ-contraction
# T_xPμ = Σ_ν (∂_x μ ν|P) Γ_νμ is a memory-bound pass over the block. XLA:CPU compiles it to a
# slow reduction (≈1.5 GB/s, 0.13-0.17 s per 256 MB block on the 2-core machine); numpy's
# einsum runs it at memory speed (≈15-20 GB/s), so the contraction is done on the host, inside
# the callback that (for a streamed tensor) has just computed the block: the block never enters
# XLA at all. Reverse mode (force losses) gets the transpose Γ̄_νμ = Σ_xP (∂_x μ ν|P) T̄_xPμ from
# a second callback (``_contract_streamed_bwd``). Stored tensors are contracted by XLA (below).
def _contract_np(block, gamma):
    """T_xPμ = Σ_ν block_xPνμ Γ_νμ: block [3, n, ν, μ], Γ [ν, μ] -> [3, n, μ]."""
    return np.einsum("xpnm,nm->xpm", block, gamma)


def _contract_t_np(block, tbar):
    """Γ̄_νμ = Σ_xP block_xPνμ T̄_xPμ (the transpose of :func:`_contract_np`): -> [ν, μ]."""
    out = np.zeros(block.shape[2:])
    for x in range(block.shape[0]):
        for p in range(block.shape[1]):
            out += block[x, p] * tbar[x, p][None, :]
    return out


def _streamed_np(source, index, gamma):
    block = _ip1_streamed(source, index)
    blk = _SOURCES[int(source)][3]
    out = np.zeros((3, blk, gamma.shape[0]))
    out[:, : block.shape[1]] = _contract_np(block, gamma)
    return out


def _streamed_t_np(source, index, tbar):
    block = _ip1_streamed(source, index)
    return _contract_t_np(block, tbar[:, : block.shape[1]])


def _callback(fn, shape, *args):
    return jax.pure_callback(fn, jax.ShapeDtypeStruct(shape, jnp.float64), *args,
                             vmap_method="sequential")


# A stored tensor is contracted by XLA, not on the host: it lives on the device (a GPU would
# copy it to the host at every call), and a host callback inside a computation sharded over
# several devices deadlocked XLA:CPU's all-reduce (two-device training step, jaxlib 0.10.1).
@jax.custom_vjp
def _contract_stored(ip1, index, gamma):
    return jnp.einsum("xpnm,nm->xpm", ip1[index], gamma)


def _contract_stored_fwd(ip1, index, gamma):
    # residuals: the whole stored tensor (a loop-invariant input: a scan keeps one reference,
    # not one copy per block) and the index
    return _contract_stored(ip1, index, gamma), (ip1, index)


def _contract_stored_bwd(res, tbar):
    ip1, index = res
    return None, None, jnp.einsum("xpnm,xpm->nm", ip1[index], tbar)


_contract_stored.defvjp(_contract_stored_fwd, _contract_stored_bwd)


@jax.custom_vjp
def _contract_streamed(source, index, gamma, blk):
    return _callback(_streamed_np, (3, blk.shape[0], gamma.shape[0]), source, index, gamma)


def _contract_streamed_fwd(source, index, gamma, blk):
    return _contract_streamed(source, index, gamma, blk), (source, index, blk)


def _contract_streamed_bwd(res, tbar):
    source, index, blk = res
    nao = tbar.shape[2]
    return None, None, _callback(_streamed_t_np, (nao, nao), source, index, tbar), None


_contract_streamed.defvjp(_contract_streamed_fwd, _contract_streamed_bwd)


def ip1_contract(fints: ForceIntegrals, index, gamma: jax.Array) -> jax.Array:
    """T_xPμ = Σ_ν (∂_x μ ν|P) Γ_νμ [3, blk, nao] for block ``index`` of auxiliary functions P.

    Linear in the symmetric Γ [nao, nao]. A stored block is contracted by XLA; a streamed one
    on the host, in the callback where PySCF has just computed it. Differentiable in Γ by
    reverse mode: the forward pass saves no block (only the index), the transpose
    Γ̄ = Σ_xP (∂_x μ ν|P) T̄_xPμ reads the stored block again or computes a streamed block once
    more — two evaluations per block for value and gradient, so callers need no
    ``jax.checkpoint``. Usable inside jit and scan.
    """
    if fints.ip1 is not None:
        return _contract_stored(fints.ip1, index, gamma)
    blk = jnp.zeros((fints.aux_index.shape[1], 0))  # carries the static block length
    return _contract_streamed(fints.ip1_source, index, gamma, blk)


# module level, so that it compiles once per shape rather than at every force_integrals call
@functools.partial(jax.jit, donate_argnums=0)
def _set_block(buf, block, i):
    return jax.lax.dynamic_update_index_in_dim(buf, block, i, 0)


def force_integrals(mol_or_system, auxbasis=None, *, grid_level: int | None = None, grids=None,
                    max_block_mb: float = 256.0, store_mb: float = STORE_MB,
                    omega: float = 0.0) -> ForceIntegrals:
    """Compute the derivative integrals of one geometry (see :class:`ForceIntegrals`).

    Args:
        mol_or_system: a :class:`jaxks.system.System` or a PySCF ``Mole``.
        auxbasis: density-fitting basis (default: the system's).
        grid_level: grid level of the SCF grid; with it (or ``grids``) the grid geometry needed for
            ``grid_response=True`` is included. Default: the system's level (None for a ``Mole``).
        grids: an already built PySCF ``Grids`` (the very grid the SCF integrals used).
        max_block_mb: size of one block of ``int3c2e_ip1`` (MB).
        store_mb: store the whole ``int3c2e_ip1`` tensor when it is at most this large (MB),
            otherwise stream it block by block at every force evaluation.
        omega: > 0 (Bohr⁻¹): also the derivative integrals of erfc(ωr)/r (field ``sr``) that the
            short-range exchange of HSE-type functionals needs; always stored (a streamed block
            would be computed after the range setting of the Mole is restored).
    Returns:
        :class:`ForceIntegrals`. Memory: O(natm·n_ao² + n_aux²) plus either the stored 3-centre
        derivatives (8·3·n_aux·n_ao² bytes) or one block of them while the forces run.
    """
    from jaxks.integrals import Whitening, auxmol_for, make_grids
    from jaxks.system import System

    if isinstance(mol_or_system, System):
        mol = mol_or_system.to_pyscf()
        auxbasis = auxbasis or mol_or_system.auxbasis
        if grid_level is None and grids is None:
            grid_level = mol_or_system.grid_level
    else:
        mol = mol_or_system
        auxbasis = auxbasis or getattr(mol, "auxbasis", None) or "def2-universal-jkfit"
    auxmol = auxmol_for(mol, auxbasis)
    nao, natm, naux = mol.nao, mol.natm, auxmol.nao

    ipovlp = mol.intor("int1e_ipovlp", comp=3)
    iphcore = mol.intor("int1e_ipkin", comp=3) + mol.intor("int1e_ipnuc", comp=3)
    rows, cols = np.tril_indices(nao)
    rinv = np.empty((natm, 3, rows.size))
    charges = mol.atom_charges()
    for a in range(natm):
        with mol.with_rinv_at_nucleus(a):
            v = mol.intor("int1e_iprinv", comp=3)
        v = -charges[a] * (v + v.transpose(0, 2, 1))
        rinv[a] = v[:, rows, cols]

    blk = max(1, min(naux, int(max_block_mb * 1e6 / (8 * 3 * nao * nao))))
    aux_loc = auxmol.ao_loc_nr()
    blk = max(blk, int(np.max(np.diff(aux_loc))))
    blocks = _aux_blocks(auxmol, blk)
    nblk = len(blocks)
    aux_atom_flat = np.empty(naux, dtype=np.int32)
    for a, (_, _, p0, p1) in enumerate(auxmol.aoslice_by_atom()):
        aux_atom_flat[p0:p1] = a
    aux_index = np.full((nblk, blk), naux, dtype=np.int32)
    aux_atom = np.zeros((nblk, blk), dtype=np.int32)
    for i, (s0, s1) in enumerate(blocks):
        p0, p1 = aux_loc[s0], aux_loc[s1]
        aux_index[i, : p1 - p0] = np.arange(p0, p1)
        aux_atom[i, : p1 - p0] = aux_atom_flat[p0:p1]

    ip1, source = None, -1
    if 8.0 * 3 * naux * nao * nao / 1e6 <= store_mb:
        # Fill a donated device buffer block by block: peak memory = the tensor + one block.
        ip1 = jnp.zeros((nblk, 3, blk, nao, nao))
        for i, (s0, s1) in enumerate(blocks):
            ip1 = _set_block(ip1, _ip1_host(mol, auxmol, s0, s1, blk), i)
    else:
        source = next(_NEXT_ID)
        _SOURCES[source] = (mol, auxmol, tuple(blocks), blk)

    sr = None
    if omega:
        with mol.with_range_coulomb(-omega):
            sr = force_integrals(mol, auxbasis, max_block_mb=max_block_mb,
                                 store_mb=float("inf"))

    geom = None
    if grids is None and grid_level is not None:
        grids = make_grids(mol, grid_level)
    if grids is not None:
        geom = grid_geometry(mol, grids)

    return ForceIntegrals(
        ipovlp=jnp.asarray(ipovlp), iphcore=jnp.asarray(iphcore), rinv=jnp.asarray(rinv),
        ao_atom=jnp.asarray(_ao_atom(mol)), ip1=ip1,
        ip1_source=jnp.asarray(source, dtype=jnp.int32), aux_index=jnp.asarray(aux_index),
        aux_atom=jnp.asarray(aux_atom), ip2c=jnp.asarray(auxmol.intor("int2c2e_ip1", comp=3)),
        aux_atom_flat=jnp.asarray(aux_atom_flat),
        fit=jnp.asarray(Whitening.of(auxmol).fit_matrix()), grid=geom, sr=sr)

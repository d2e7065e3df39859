"""Density-fitted exact (Hartree-Fock) exchange of hybrid functionals: K, its energy, Fock term
and nuclear gradient (closed shell, atomic units).

With a whitened 3-centre tensor B_P,μν = Σ_Q (L⁻¹)_PQ (Q|μν), (P|Q) = L Lᵀ, of the full-range
operator 1/r (``Integrals.cderi``) or of the short-range operator erfc(ωr)/r (``Integrals.cderi_sr``,
the 3-centre and 2-centre integrals both of erfc(ωr)/r, as PySCF's range-separated density fitting)

    K_μν[Γ] = Σ_P Σ_λσ B_P,μλ Γ_λσ B_P,σν = Σ_P (B_P Γ B_P)_μν                [nao, nao], Hartree
    E_K     = −¼ tr(Γ (α K[Γ] + β K_SR[Γ]))                                   Hartree
    F_K     = ∂E_K/∂Γ = −½ (α K[Γ] + β K_SR[Γ])

α = ``XCFunctional.exact_exchange`` (PBE0: 0.25), β = ``XCFunctional.sr_exchange`` (HSE06: 0.25).

How K is evaluated. The SCF carries the density matrix Γ, not orbitals. Γ is factored as Γ = Y Yᵀ,
Y = V_r diag(√λ_r) from its r = n_occ largest eigenpairs (one n_ao³ eigendecomposition), and

    K = Σ_P (B_P Y)(B_P Y)ᵀ                    2·n_aux·n_ao²·n_occ flops

instead of the 2·n_aux·n_ao³ of Σ_P B_P Γ B_P, in blocks of auxiliary functions (``lax.scan``;
one block of unpacked B_P is the only intermediate of size n_ao²). The factor is exact when
rank Γ ≤ n_occ: every aufbau density of the SCF loop and the converged density. For a density of
higher rank (the MINAO guess, a damped iterate Γ = (1−a)Γ_k + aΓ_{k−1}) K is that of its best
rank-n_occ approximation; for damped iterates the difference is O(|Γ_k − Γ_{k−1}|²), so it only
changes the path of the SCF, not the converged solution.

Derivatives. K is linear in Γ and bilinear in B, so a custom JVP gives them exactly, without
differentiating the eigendecomposition (whose eigenvalues may be degenerate):

    dK = Σ_P B_P dΓ B_P + Σ_P [(dB_P Y)(B_P Y)ᵀ + (B_P Y)(dB_P Y)ᵀ]

(the first term at the n_ao³ cost; it is only needed for derivatives — implicit SCF gradients).

Nuclear gradient (:func:`exchange_gradient`): with e_ij,P = (P|ij) in the factor basis
(i, j columns of Y), M the 2-centre metric and D_ij = M⁻¹ e_ij,

    E_K = −¼ f Σ_ij e_ijᵀ M⁻¹ e_ij,   dE_K/dR_A = −½ f [T3_A + Σ_{P∈A} Σ_Q (∇P|Q) X_PQ]
    T3_A = −2 Σ_{μ∈A} Σ_νP (∇μ ν|P) W_P,μν + 2 Σ_{P∈A} Σ_μν (∇μ ν|P) W_P,μν
    W_P = Y D_P Yᵀ [nao, nao],   X_PQ = Σ_ij D_P,ij D_Q,ij

(f = α or β; the derivative of (μν|∇P) is removed by translational invariance, as for the
Coulomb term in :mod:`jaxks.forces`). The 3-centre derivatives are contracted block by block over
auxiliary functions: no intermediate of size 3·n_aux·n_ao² is formed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxks.pairs import PairList, unpack

#: Elements of one block of unpacked B_P (n_aux_block · n_ao²): 4 M doubles = 32 MB.
BLOCK_ELEMENTS = 1 << 22


def needs_exchange(xc) -> bool:
    """Whether ``xc`` has any exact exchange (full-range or short-range)."""
    return bool(getattr(xc, "exact_exchange", 0.0) or getattr(xc, "sr_exchange", 0.0))


def sr_omega(xc) -> float:
    """ω (Bohr⁻¹) of the short-range exchange tensor ``xc`` needs; 0.0 if it needs none."""
    return float(xc.omega) if getattr(xc, "sr_exchange", 0.0) else 0.0


def check_integrals(ints, xc) -> None:
    """Raise ValueError when ``ints`` lack the exchange tensor ``xc`` needs (or have another ω)."""
    omega = sr_omega(xc)
    if not omega:
        return
    if ints.cderi_sr is None:
        raise ValueError(f"{xc.name} needs short-range exchange integrals (omega = {omega}): build "
                         f"the integrals with compute_integrals(system, omega={omega})")
    if abs(ints.omega - omega) > 1e-12:
        raise ValueError(f"{xc.name} has omega = {omega} but the integrals' short-range tensor "
                         f"was built with omega = {ints.omega}")


# ----------------------------------------------------------------------------- blocks
def block_size(naux: int, nao: int) -> int:
    """Auxiliary functions per block so one unpacked block has about BLOCK_ELEMENTS elements."""
    return int(max(1, min(naux, BLOCK_ELEMENTS // max(nao * nao, 1))))


def _scan_aux(fn, init, tensors, nao: int, pairs: PairList | None):
    """(carry, ys) = fold of ``fn(carry, blocks) -> (carry, y)`` over blocks of auxiliary rows of
    the packed ``tensors`` (a tuple of [naux, n_pair] arrays on ``pairs``, sliced alike; each
    block unpacked to [blk, nao, nao]); ys: the per-row outputs y [blk, ...] joined to
    [naux, ...] (None if fn returns None).

    Full blocks go through ``lax.scan`` (``dynamic_slice``, no padded copy of the tensor), the
    remainder through one more call of ``fn``.
    """
    naux = tensors[0].shape[0]
    blk = block_size(naux, nao)
    nfull, rest = divmod(naux, blk)

    def rows(start, size):
        return tuple(unpack(jax.lax.dynamic_slice_in_dim(t, start, size, 0), nao, pairs)
                     for t in tensors)

    def body(carry, i):
        return fn(carry, rows(i * blk, blk))

    carry, parts = init, []
    if nfull:
        carry, ys = jax.lax.scan(body, carry, jnp.arange(nfull))
        if ys is not None:
            parts.append(ys.reshape((nfull * blk,) + ys.shape[2:]))
    if rest:
        carry, y = fn(carry, tuple(unpack(t[nfull * blk:], nao, pairs) for t in tensors))
        if y is not None:
            parts.append(y)
    ys = (jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]) if parts else None
    return carry, ys


def density_factor(gamma: jax.Array, rank: int) -> jax.Array:
    """Y [nao, rank] with Y Yᵀ = Γ for rank Γ ≤ ``rank`` (the ``rank`` largest eigenpairs of Γ;
    negative rounding-level eigenvalues clipped to 0). Differentiable through the
    degeneracy-safe :func:`jaxks.linalg.eigh` (used by the gradient; K never differentiates it)."""
    from jaxks.linalg import eigh

    w, v = eigh(gamma)
    w, v = w[-rank:], v[:, -rank:]
    # double where: no NaN in the derivative of √0
    pos = w > 0
    return v * jnp.where(pos, jnp.sqrt(jnp.where(pos, w, 1.0)), 0.0)


# ----------------------------------------------------------------------------- K
def _k_from_factor(y, cderi, pairs):
    nao = y.shape[0]

    def fn(k, blocks):
        (b,) = blocks
        by = b @ y  # [blk, nao, r]
        return k + jnp.einsum("pmi,pni->mn", by, by), None

    return _scan_aux(fn, jnp.zeros((nao, nao), y.dtype), (cderi,), nao, pairs)[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def exchange_matrix(gamma: jax.Array, cderi: jax.Array, pairs: PairList | None,
                    rank: int) -> jax.Array:
    """Density-fitted exchange matrix K_μν = Σ_P (B_P Γ B_P)_μν [nao, nao] (Hartree).

    Args:
        gamma: symmetric total density matrix [nao, nao] of rank ≤ ``rank`` (see module docstring).
        cderi: packed whitened 3-centre tensor B [naux, n_pair] (1/r or erfc(ωr)/r).
        pairs: the tensor's AO pairs (:mod:`jaxks.pairs`; None: the whole triangle).
        rank: number of factor columns, n_occ.
    """
    return _k_from_factor(density_factor(jax.lax.stop_gradient(gamma), rank), cderi, pairs)


@exchange_matrix.defjvp
def _exchange_matrix_jvp(rank, primals, tangents):
    gamma, cderi, pairs = primals
    dgamma, dcderi, _ = tangents  # the pair indices are integers
    y = density_factor(jax.lax.stop_gradient(gamma), rank)
    nao = gamma.shape[0]
    dgamma = 0.5 * (dgamma + dgamma.T)

    def fn(carry, blocks):
        k, dk = carry
        b, db = blocks
        by = b @ y
        dby = db @ y
        k = k + jnp.einsum("pmi,pni->mn", by, by)
        t = jnp.einsum("pml,pln->mn", b @ dgamma, b)
        u = jnp.einsum("pmi,pni->mn", dby, by)
        return (k, dk + t + u + u.T), None

    zero = jnp.zeros((nao, nao), gamma.dtype)
    (k, dk), _ = _scan_aux(fn, (zero, zero), (cderi, dcderi), nao, pairs)
    return k, dk


def exchange_energy_fock(gamma: jax.Array, ints, xc):
    """E_K (Hartree, scalar) and F_K = ∂E_K/∂Γ [nao, nao] of ``xc``'s exact exchange at Γ.

    E_K = −¼ tr(Γ (α K + β K_SR)), F_K = −½ (α K + β K_SR); zeros for a semilocal functional.
    """
    nao = gamma.shape[0]
    k = jnp.zeros((nao, nao), gamma.dtype)
    if getattr(xc, "exact_exchange", 0.0):
        k = k + xc.exact_exchange * exchange_matrix(gamma, ints.cderi, ints.pairs,
                                                    ints.n_occ)
    if getattr(xc, "sr_exchange", 0.0):
        k = k + xc.sr_exchange * exchange_matrix(gamma, ints.cderi_sr, ints.pairs,
                                                 ints.n_occ)
    return -0.25 * jnp.vdot(gamma, k), -0.5 * k


# ----------------------------------------------------------------------------- gradient
def _segment(values, ids, natm):
    return jax.ops.segment_sum(values, ids, num_segments=natm)


def exchange_tensor_gradient(gamma: jax.Array, cderi: jax.Array, derivs, rank: int,
                             pairs: PairList | None = None) -> jax.Array:
    """dE/dR_A [natm, 3] (Hartree/Bohr) of E = −¼ tr(Γ K[Γ]) for one operator, at fixed Γ.

    Args:
        gamma: density matrix [nao, nao], rank ≤ ``rank``.
        cderi: that operator's packed whitened tensor B [naux', n_pair] on ``pairs``.
        derivs: :class:`jaxks.forces.ForceIntegrals` of the same operator (fields ``ip1``,
            ``aux_index``, ``aux_atom``, ``ip2c``, ``aux_atom_flat``, ``fit``, ``ao_atom``).
        rank: n_occ.
        pairs: the tensor's AO pairs (:mod:`jaxks.pairs`; None: the whole triangle).
    """
    from jaxks.integrals.derivatives import ip1_block

    natm = derivs.natm
    nao = gamma.shape[0]
    y = density_factor(0.5 * (gamma + gamma.T), rank)
    r = y.shape[1]

    # e_Q' = Yᵀ B_Q' Y for every Q' [naux', r, r], block by block
    _, e = _scan_aux(lambda c, blocks: (c, jnp.einsum("mi,pmn,nj->pij", y, blocks[0], y)),
                     None, (cderi,), nao, pairs)
    naux_w = cderi.shape[0]
    d = (derivs.fit @ e.reshape(naux_w, r * r)).reshape(-1, r, r)  # M⁻¹ e [naux, r, r]
    d_pad = jnp.concatenate([d, jnp.zeros((1, r, r), d.dtype)])

    @jax.checkpoint  # reverse mode recomputes a (possibly streamed) block, never stores all
    def scan_body(carry, blk_data):
        g_ao, g_aux = carry
        b, index, atom = blk_data
        ip1 = ip1_block(derivs, b)
        w = jnp.einsum("mi,pij,nj->pmn", y, d_pad[index], y)
        t = jnp.einsum("pxmn,pmn->pxm", ip1, w)
        g_aux = g_aux + _segment(jnp.sum(t, axis=2), atom, natm)
        return (g_ao + jnp.sum(t, axis=0), g_aux), None

    init = (jnp.zeros((3, nao), gamma.dtype), jnp.zeros((natm, 3), gamma.dtype))
    nblk = derivs.aux_index.shape[0]
    (g_ao, g_aux), _ = jax.lax.scan(scan_body, init,
                                    (jnp.arange(nblk), derivs.aux_index, derivs.aux_atom))
    t3 = -2.0 * _segment(g_ao.T, derivs.ao_atom, natm) + 2.0 * g_aux
    dflat = d.reshape(d.shape[0], r * r)
    x = dflat @ dflat.T
    metric = _segment(jnp.einsum("xpq,pq->px", derivs.ip2c, x), derivs.aux_atom_flat, natm)
    return -0.5 * (t3 + metric)


def exchange_gradient(gamma: jax.Array, ints, fints, xc) -> jax.Array:
    """dE_K/dR [natm, 3] (Hartree/Bohr) of ``xc``'s exact exchange at fixed Γ; zeros if none.

    Full-range exchange uses ``fints`` (the Coulomb derivative integrals), short-range exchange
    ``fints.sr`` (the same integrals of erfc(ωr)/r; :func:`jaxks.forces.force_integrals` with
    ``omega``).
    """
    grad = jnp.zeros((fints.natm, 3), gamma.dtype)
    if getattr(xc, "exact_exchange", 0.0):
        grad = grad + xc.exact_exchange * exchange_tensor_gradient(gamma, ints.cderi, fints,
                                                                   ints.n_occ, ints.pairs)
    if getattr(xc, "sr_exchange", 0.0):
        grad = grad + xc.sr_exchange * exchange_tensor_gradient(gamma, ints.cderi_sr, fints.sr,
                                                                ints.n_occ, ints.pairs)
    return grad

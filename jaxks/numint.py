"""Exchange-correlation energy and potential matrix by numerical integration on the grid.

For a closed-shell density matrix Γ (total, tr ΓS = N):

    ρ(r)   = Σ_μν Γ_μν φ_μ(r) φ_ν(r)
    ∇ρ(r)  = 2 Σ_μν Γ_μν ∇φ_μ(r) φ_ν(r),      σ = |∇ρ|²
    E_xc   = Σ_g w_g e(ρ_g, σ_g)
    V_μν   = ∂E_xc/∂Γ_μν = Σ_g w_g [ v_ρ φ_μ φ_ν + 2 v_σ ∇ρ·∇(φ_μ φ_ν) ]      (v_ρ = ∂e/∂ρ, v_σ = ∂e/∂σ)

The AO values are evaluated in JAX block by block inside ``lax.scan``; each block is
``jax.checkpoint``-ed so that differentiating through the integration (implicit SCF gradients)
recomputes AO values instead of storing n_grid × n_ao of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxks.basis import eval_ao
from jaxks.xc import XCFunctional, eval_xc


def _blocks(ints):
    nb = ints.n_grid // ints.block_size
    coords = ints.grid_coords.reshape(nb, ints.block_size, 3)
    weights = ints.grid_weights.reshape(nb, ints.block_size)
    return coords, weights


def density_on_grid(gamma, ao, gga: bool):
    """ρ [nb] and ∇ρ [3, nb] (or None) from AO values ``ao`` [ncomp, nb, nao] and Γ [nao, nao]."""
    t = ao[0] @ gamma
    rho = jnp.sum(t * ao[0], axis=1)
    if not gga:
        return rho, None
    grad = 2.0 * jnp.einsum("xgm,gm->xg", ao[1:4], t)
    return rho, grad


def xc_energy_potential(gamma: jax.Array, ints, xc: XCFunctional):
    """E_xc (Hartree, scalar) and V_xc = ∂E_xc/∂Γ ([nao, nao], symmetric) for density matrix Γ.

    Args:
        gamma: total density matrix [nao, nao] (symmetric).
        ints: :class:`jaxks.integrals.Integrals` (grid, weights, basis).
        xc: functional from :func:`jaxks.xc.get_xc`.
    """
    gga = xc.family == "gga"
    deriv = 1 if gga else 0
    basis = ints.basis

    @jax.checkpoint
    def block(coords, w):
        ao = eval_ao(basis, coords, deriv=deriv)
        rho, grad = density_on_grid(gamma, ao, gga)
        sigma = jnp.sum(grad * grad, axis=0) if gga else jnp.zeros_like(rho)
        e, vrho, vsigma = eval_xc(xc, rho, sigma)
        # V = A + Aᵀ with A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν]
        aow = ao[0] * (0.5 * w * vrho)[:, None]
        if gga:
            aow = aow + jnp.einsum("xg,xgm->gm", 2.0 * w * vsigma * grad, ao[1:4])
        return jnp.sum(w * e), ao[0].T @ aow

    def body(carry, blk):
        exc, vmat = carry
        de, dv = block(*blk)
        return (exc + de, vmat + dv), None

    nao = ints.nao
    init = (jnp.zeros((), gamma.dtype), jnp.zeros((nao, nao), gamma.dtype))
    (exc, a), _ = jax.lax.scan(body, init, _blocks(ints))
    return exc, a + a.T


def electron_count(gamma: jax.Array, ints) -> jax.Array:
    """∫ρ = Σ_g w_g ρ_g: the grid's count of electrons (a quadrature check; ≈ tr ΓS)."""
    basis = ints.basis

    def body(n, blk):
        coords, w = blk
        rho, _ = density_on_grid(gamma, eval_ao(basis, coords, deriv=0), False)
        return n + jnp.sum(w * rho), None

    n, _ = jax.lax.scan(body, jnp.zeros((), gamma.dtype), _blocks(ints))
    return n

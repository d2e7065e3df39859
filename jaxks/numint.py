"""Exchange-correlation energy and potential matrix by numerical integration on the grid.

For a closed-shell density matrix Γ (total, tr ΓS = N):

    ρ(r)   = Σ_μν Γ_μν φ_μ(r) φ_ν(r)
    ∇ρ(r)  = 2 Σ_μν Γ_μν ∇φ_μ(r) φ_ν(r),      σ = |∇ρ|²
    E_xc   = Σ_g w_g e(ρ_g, σ_g)
    V_μν   = ∂E_xc/∂Γ_μν = Σ_g w_g [ v_ρ φ_μ φ_ν + 2 v_σ ∇ρ·∇(φ_μ φ_ν) ]      (v_ρ = ∂e/∂ρ, v_σ = ∂e/∂σ)

One block loop (:func:`scan_blocks`) serves the SCF (energy and potential) and the forces (energy
as a function of the nuclear positions, optionally with the grid moving with the atoms). The AO
values are evaluated in JAX block by block inside ``lax.scan``; each block is
``jax.checkpoint``-ed so that differentiating through the integration (implicit SCF gradients,
forces) recomputes AO values instead of storing n_grid × n_ao of them.

With an AO screen (``ints.screen``, :class:`jaxks.basis.AOScreen`) each block evaluates only the
shells that can reach the screening cutoff on its points, and works with the sub-matrix
Γ[idx, idx] of those AOs; V's block contribution is added back at [idx, idx]. In a periodic cell
(``ints.lattice`` set) the shells are those of the atoms' periodic images: their columns are
summed onto the cell's AOs, φ_μ = Σ_T χ_μ(r − T) (Γ point), and the block uses the whole Γ.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxks.basis import eval_ao, eval_ao_screened
from jaxks.xc import XCFunctional, eval_xc


def density_on_grid(gamma, ao, gga: bool):
    """ρ [nb] and ∇ρ [3, nb] (or None) from AO values ``ao`` [ncomp, nb, nao] and Γ [nao, nao]."""
    t = ao[0] @ gamma
    rho = jnp.sum(t * ao[0], axis=1)
    if not gga:
        return rho, None
    grad = 2.0 * jnp.einsum("xgm,gm->xg", ao[1:4], t)
    return rho, grad


def _block_points(ints, grid):
    """Per-block inputs [nb, bs, ...]: (coords, weights), or the grid geometry when the grid
    moves with the atoms (grid response)."""
    from jaxks.grid_weights import pad_geometry

    nb, bs = ints.n_grid // ints.block_size, ints.block_size
    if grid is None:
        return (ints.grid_coords.reshape(nb, bs, 3), ints.grid_weights.reshape(nb, bs))
    g = pad_geometry(grid, ints.n_grid)
    return (g.offsets.reshape(nb, bs, 3), g.volumes.reshape(nb, bs), g.parent.reshape(nb, bs))


def scan_blocks(ints, block_fn, init, *, deriv: int, atom_coords=None, grid=None):
    """Σ over grid blocks of ``block_fn(w, ao, idx)``, accumulated into ``init``.

    The one grid loop of jaxks: SCF potential, electron count and forces all use it.

    Args:
        ints: :class:`jaxks.integrals.Integrals` (grid, weights, basis, optional screen).
        block_fn: ``(w [bs], ao [ncomp, bs, n], idx) -> (scalar, matrix or None)``; with a screen
            ``idx`` [n] lists the AOs of the columns of ``ao`` (and ``matrix`` is [n, n] on them),
            without one ``idx`` is None and n = nao.
        init: (scalar, [nao, nao] matrix or None) to accumulate into.
        deriv: AO derivative order (static).
        atom_coords: [natm, 3] positions of the AO centres (Bohr); default the integrals'.
            Differentiable (forces).
        grid: :class:`jaxks.grid_weights.GridGeometry` to move the grid points and Becke weights
            with ``atom_coords`` (grid response), or None for the fixed SCF grid.
    Returns:
        the accumulated (scalar, matrix).
    """
    from jaxks.grid_weights import GridGeometry, grid_points_weights

    basis = ints.basis
    if atom_coords is not None:
        basis = dataclasses.replace(basis, centers=atom_coords)
    elif grid is not None:
        atom_coords = basis.centers

    def points(p):
        if grid is None:
            return p
        offsets, volumes, parent = p
        return grid_points_weights(GridGeometry(offsets, volumes, parent, grid.radii_adjust),
                                   atom_coords)

    def add(carry, out, idx):
        s, m = carry
        ds, dm = out
        if dm is None:
            return (s + ds, m)
        if idx is None:
            return (s + ds, m + dm)
        return (s + ds, m.at[idx[:, None], idx[None, :]].add(dm))

    pts = _block_points(ints, grid)
    if getattr(ints, "screen", None) is None:
        @jax.checkpoint
        def full_block(p):
            coords, w = points(p)
            return block_fn(w, eval_ao(basis, coords, deriv=deriv), None)

        def body(carry, p):
            return add(carry, full_block(p), None), None

        carry, _ = jax.lax.scan(body, init, pts)
        return carry

    # A periodic cell's basis holds the AO shells of periodic images, so a block's columns may
    # repeat an AO; they are summed onto the cell's AOs first (the lattice-summed AO values),
    # and the block works with the whole Γ: in a cell of liquid-water size every AO reaches
    # every block through some image, and the products stay nao², not n_images².
    fold = getattr(ints, "lattice", None) is not None

    @jax.checkpoint
    def screened_block(p, row):
        coords, w = points(p)
        ao = eval_ao_screened(basis, coords, row, deriv=deriv)
        if fold:  # Σ over images: a gather of whole rows (scatter-adds are slow on CPU)
            at = jnp.moveaxis(ao, -1, 0)                                   # [n_sig, c, bs]
            at = jnp.concatenate([at, jnp.zeros_like(at[:1])])             # + a zero column
            return block_fn(w, jnp.moveaxis(at[row.fold].sum(1), 0, -1), None)
        return block_fn(w, ao, row.ao_index)

    def body(carry, row):
        p = jax.tree_util.tree_map(lambda x: x[row.blocks], pts)
        return add(carry, screened_block(p, row), None if fold else row.ao_index), None

    carry = init
    for b in ints.screen.bins:
        carry, _ = jax.lax.scan(body, carry, b)
    return carry


def _sub(gamma, idx):
    """Γ[idx, idx] (the whole Γ when idx is None)."""
    return gamma if idx is None else gamma[idx[:, None], idx[None, :]]


def xc_energy_potential(gamma: jax.Array, ints, xc: XCFunctional):
    """E_xc (Hartree, scalar) and V_xc = ∂E_xc/∂Γ ([nao, nao], symmetric) for density matrix Γ.

    Args:
        gamma: total density matrix [nao, nao] (symmetric).
        ints: :class:`jaxks.integrals.Integrals` (grid, weights, basis, screen).
        xc: functional from :func:`jaxks.xc.get_xc`.
    """
    gga = xc.family == "gga"

    def block(w, ao, idx):
        rho, grad = density_on_grid(_sub(gamma, idx), ao, gga)
        sigma = jnp.sum(grad * grad, axis=0) if gga else jnp.zeros_like(rho)
        e, vrho, vsigma = eval_xc(xc, rho, sigma)
        # V = A + Aᵀ with A_μν = Σ_g φ_μ [½ w v_ρ φ_ν + 2 w v_σ ∇ρ·∇φ_ν]
        aow = ao[0] * (0.5 * w * vrho)[:, None]
        if gga:
            aow = aow + jnp.einsum("xg,xgm->gm", 2.0 * w * vsigma * grad, ao[1:4])
        return jnp.sum(w * e), ao[0].T @ aow

    nao = ints.nao
    init = (jnp.zeros((), gamma.dtype), jnp.zeros((nao, nao), gamma.dtype))
    exc, a = scan_blocks(ints, block, init, deriv=1 if gga else 0)
    return exc, a + a.T


def xc_energy(gamma: jax.Array, ints, xc: XCFunctional, atom_coords=None, grid=None) -> jax.Array:
    """E_xc[Γ] (Hartree) with the AO centres at ``atom_coords`` [natm, 3] (Bohr) and Γ fixed.

    With ``grid`` None the SCF grid (points and weights) stays fixed; otherwise the points move
    with their parent atoms and the Becke weights follow
    (:func:`jaxks.grid_weights.grid_points_weights`). Differentiable with respect to
    ``atom_coords`` and Γ (the forces take its gradient).
    """
    gga = xc.family == "gga"

    def block(w, ao, idx):
        rho, grad = density_on_grid(_sub(gamma, idx), ao, gga)
        sigma = jnp.sum(grad * grad, axis=0) if gga else jnp.zeros_like(rho)
        e, _, _ = eval_xc(xc, rho, sigma)
        return jnp.sum(w * e), None

    exc, _ = scan_blocks(ints, block, (jnp.zeros((), gamma.dtype), None),
                         deriv=1 if gga else 0, atom_coords=atom_coords, grid=grid)
    return exc


def electron_count(gamma: jax.Array, ints) -> jax.Array:
    """∫ρ = Σ_g w_g ρ_g: the grid's count of electrons (a quadrature check; ≈ tr ΓS)."""
    def block(w, ao, idx):
        rho, _ = density_on_grid(_sub(gamma, idx), ao, False)
        return jnp.sum(w * rho), None

    n, _ = scan_blocks(ints, block, (jnp.zeros((), gamma.dtype), None), deriv=0)
    return n

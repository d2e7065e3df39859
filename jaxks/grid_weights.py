"""PySCF's Becke-partitioned integration grid as a JAX function of the nuclear positions.

PySCF (``dft.gen_grid.Grids`` with its defaults: Treutler radii adjustment, original Becke
scheme) builds every grid point g from an atom-centred quadrature of its parent atom a(g):

    r_g = R_{a(g)} + o_g,        w_g = v_g · P_{a(g)}(r_g) / Σ_B P_B(r_g)

with o_g the fixed offset and v_g the fixed atomic quadrature weight ("volume"). The cell function
of atom I is P_I(r) = Π_{J≠I} s(ν_IJ(r)), where for each pair I > J

    μ_IJ = (|r − R_I| − |r − R_J|) / |R_I − R_J|
    ν_IJ = μ_IJ + a_IJ (1 − μ_IJ²)                  (Treutler/Bragg radii adjustment)
    f(x) = ½ x (3 − x²),    z = ½ f(f(f(ν_IJ)))
    P_I *= ½ − z,           P_J *= ½ + z

and a_IJ = ¼ (ρ_J/ρ_I − ρ_I/ρ_J) clipped to [−½, ½], ρ_I = sqrt(Bragg radius of atom I)
(exactly PySCF's C routine ``VXCgen_grid`` with ``radi.treutler_atomic_radii_adjust``).

Moving R moves each point with its parent atom and changes the partition weights; differentiating
an integral Σ_g w_g f(r_g) with respect to R therefore gives the "grid response" of PySCF's
analytic gradients (``grid_response=True``).

Only the default PySCF partition (original Becke with Treutler or no radii adjustment) is
reproduced; anything else raises :class:`NotImplementedError`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GridGeometry:
    """Atom-attached description of a PySCF grid (padded points have volume 0).

    Attributes:
        offsets: o_g = r_g − R_{a(g)} [ngrid, 3] (Bohr).
        volumes: v_g, atomic quadrature weights before partitioning [ngrid].
        parent: a(g), index of the parent atom [ngrid] (int; 0 for padding points).
        radii_adjust: a_IJ [natm, natm] (zero matrix when PySCF uses no adjustment).
    """

    offsets: jax.Array
    volumes: jax.Array
    parent: jax.Array
    radii_adjust: jax.Array

    @property
    def n_grid(self) -> int:
        return self.volumes.shape[0]


def grid_geometry(mol, grids) -> GridGeometry:
    """Extract :class:`GridGeometry` from a built PySCF ``Grids`` object (same point order).

    Args:
        mol: the PySCF molecule.
        grids: ``pyscf.dft.gen_grid.Grids`` after ``build()`` (sorted and padded as PySCF does).
    """
    from pyscf.dft import gen_grid, radi

    if grids.becke_scheme is not gen_grid.original_becke:
        raise NotImplementedError("grid response needs the original Becke partition "
                                  f"(got {grids.becke_scheme.__name__})")
    if grids.atm_idx is None or grids.quadrature_weights is None:
        raise ValueError("the PySCF grid has not been built (call grids.build())")
    natm = mol.natm
    if grids.radii_adjust is radi.treutler_atomic_radii_adjust and grids.atomic_radii is not None:
        charges = mol.atom_charges()
        rad = np.sqrt(np.asarray(grids.atomic_radii)[charges]) + 1e-200
    elif grids.radii_adjust is radi.becke_atomic_radii_adjust and grids.atomic_radii is not None:
        rad = np.asarray(grids.atomic_radii)[mol.atom_charges()] + 1e-200
    elif grids.radii_adjust is None or grids.atomic_radii is None:
        rad = None
    else:
        raise NotImplementedError(f"unsupported grids.radii_adjust {grids.radii_adjust!r}")
    if rad is None:
        adjust = np.zeros((natm, natm))
    else:
        rr = rad[:, None] / rad[None, :]
        adjust = np.clip(0.25 * (rr.T - rr), -0.5, 0.5)
    parent = np.asarray(grids.atm_idx).astype(np.int32)
    volumes = np.asarray(grids.quadrature_weights, dtype=np.float64).copy()
    pad = parent < 0
    parent = np.where(pad, 0, parent)
    volumes[pad] = 0.0
    offsets = np.asarray(grids.coords) - mol.atom_coords()[parent]
    return GridGeometry(offsets=jnp.asarray(offsets), volumes=jnp.asarray(volumes),
                        parent=jnp.asarray(parent), radii_adjust=jnp.asarray(adjust))


def pad_geometry(geom: GridGeometry, n_grid: int) -> GridGeometry:
    """Append zero-volume points (parent atom 0, zero offset) up to ``n_grid`` points."""
    n_pad = n_grid - geom.n_grid
    if n_pad < 0:
        raise ValueError(f"cannot pad a grid of {geom.n_grid} points to {n_grid}")
    if n_pad == 0:
        return geom
    return GridGeometry(
        offsets=jnp.concatenate([geom.offsets, jnp.zeros((n_pad, 3), geom.offsets.dtype)]),
        volumes=jnp.concatenate([geom.volumes, jnp.zeros(n_pad, geom.volumes.dtype)]),
        parent=jnp.concatenate([geom.parent, jnp.zeros(n_pad, geom.parent.dtype)]),
        radii_adjust=geom.radii_adjust)


def _safe_norm(d: jax.Array) -> jax.Array:
    """|d| along the last axis with a finite derivative at d = 0 (where it is set to 0)."""
    d2 = jnp.sum(d * d, axis=-1)
    nonzero = d2 > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, d2, 1.0)), 0.0)


def becke_cell_functions(coords: jax.Array, atom_coords: jax.Array,
                         radii_adjust: jax.Array) -> jax.Array:
    """Unnormalised Becke cell functions P_I(r_g) [natm, ngrid] (see module docstring).

    Args:
        coords: grid points [ngrid, 3] (Bohr).
        atom_coords: nuclear positions [natm, 3] (Bohr).
        radii_adjust: a_IJ [natm, natm].
    """
    natm = atom_coords.shape[0]
    dist = _safe_norm(coords[None, :, :] - atom_coords[:, None, :])  # [natm, ngrid]
    rij = _safe_norm(atom_coords[:, None, :] - atom_coords[None, :, :] + jnp.eye(natm)[..., None])
    # All ordered pairs (I, J), I ≠ J: ν_JI = −ν_IJ, so the factor of P_I from partner J is ½ − z(ν_IJ)
    # with the same formula, which lets us vectorise over the full matrix (diagonal masked out).
    inv = jnp.where(jnp.eye(natm, dtype=bool), 0.0, 1.0 / rij)
    mu = (dist[:, None, :] - dist[None, :, :]) * inv[:, :, None]  # [I, J, g]
    # a_IJ is antisymmetric, so ν_JI = −ν_IJ holds with the adjustment as well
    nu = mu + radii_adjust[:, :, None] * (1.0 - mu * mu)
    s = nu
    s = (3.0 - s * s) * s * 0.5
    s = (3.0 - s * s) * s * 0.5
    z = ((3.0 - s * s) * s * 0.5) * 0.5
    fac = jnp.where(jnp.eye(natm, dtype=bool)[:, :, None], 1.0, 0.5 - z)
    return jnp.prod(fac, axis=1)


def grid_points_weights(geom: GridGeometry, atom_coords: jax.Array):
    """Grid coordinates r_g [ngrid, 3] and Becke-partitioned weights w_g [ngrid] at positions R.

    w_g = v_g · P_{a(g)}(r_g) / Σ_B P_B(r_g); zero-volume (padding) points get weight exactly 0.
    Differentiable with respect to ``atom_coords`` [natm, 3] (Bohr).
    """
    coords = atom_coords[geom.parent] + geom.offsets
    cells = becke_cell_functions(coords, atom_coords, geom.radii_adjust)
    own = jnp.take_along_axis(cells, geom.parent[None, :], axis=0)[0]
    total = jnp.sum(cells, axis=0)
    real = geom.volumes != 0
    frac = own / jnp.where(real, total, 1.0)
    return coords, jnp.where(real, geom.volumes * frac, 0.0)

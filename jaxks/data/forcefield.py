"""A flexible classical water model (SPC/Fw) and Langevin dynamics of a periodic water box, in JAX.

Only used to *generate realistic geometries* (hydrogen-bond networks with thermal disorder); it
never enters an electronic-structure calculation, so exactness of the force field is not
critical. Units inside this module are the MD conventions: Angstrom, femtosecond, atomic mass
units (g/mol) and kcal/mol.

Potential (SPC/Fw, Wu, Tepper & Voth, J. Chem. Phys. 124, 024503 (2006)):

    E = Σ_mol [ ½ k_b (r_OH1 − r0)² + ½ k_b (r_OH2 − r0)² + ½ k_θ (θ_HOH − θ0)² ]
      + Σ_{O–O pairs, r<R_c} 4ε [ (σ/r)¹² − (σ/r)⁶ ]  (shifted to zero at R_c)
      + Σ_{intermolecular atom pairs, r<R_c} k_e q_i q_j V_DSF(r)

with the damped-shifted-force Coulomb kernel (Fennell & Gezelter, J. Chem. Phys. 124,
234104 (2006)), in which both energy and force go to zero at the cutoff:

    V_DSF(r) = erfc(αr)/r − erfc(αR_c)/R_c
               + [erfc(αR_c)/R_c² + 2α/√π exp(−α²R_c²)/R_c] (r − R_c).

Intramolecular pairs have no Lennard-Jones or Coulomb interaction. Distances use the minimum
image convention in a cubic box of side L (requires R_c < L/2), or, with ``images`` = k > 0, the
minimum image plus every translation n·L with |n_i| ≤ k (every pair within R_c ≤ (k + ½) L,
including a molecule and its own images: boxes smaller than 2 R_c). Forces are −∂E/∂x by
autodiff.

An isolated cluster (:func:`cluster_energy`; ``make_langevin(None)``) has every pair, plain
Coulomb k_e q_i q_j / r and unshifted Lennard-Jones: the R_c → ∞ limit.

Dynamics: BAOAB Langevin splitting (Leimkuhler & Matthews 2013), which samples the canonical
ensemble at temperature T for any friction γ.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

import jaxks  # noqa: F401  (float64)

#: Coulomb constant k_e in kcal/mol · Angstrom / e².
COULOMB_KCAL_ANGSTROM = 332.0637
#: Boltzmann constant in kcal/mol/K.
KB_KCAL = 0.0019872041
#: (kcal/mol/Angstrom) / amu -> Angstrom/fs².
ACCEL_PER_KCAL_ANGSTROM_AMU = 4.184e-4
MASS_O = 15.9994
MASS_H = 1.00794
#: Liquid water number density at 300 K (molecules per Angstrom³), from 0.997 g/cm³.
WATER_NUMBER_DENSITY = 0.997 / 18.01528 * 6.02214076e23 * 1e-24


@dataclasses.dataclass(frozen=True)
class WaterModel:
    """Parameters of a flexible three-site water model (default: SPC/Fw).

    Attributes (MD units): charges q_o, q_h (e); Lennard-Jones sigma (Angstrom), epsilon
    (kcal/mol) on O only; bond force constant k_bond (kcal/mol/Angstrom², E = ½k(r−r0)²),
    r0 (Angstrom); angle force constant k_angle (kcal/mol/rad²), theta0 (degrees).
    """

    name: str = "SPC/Fw"
    q_o: float = -0.82
    q_h: float = 0.41
    sigma: float = 3.165492
    epsilon: float = 0.1554253
    k_bond: float = 1059.162
    r0: float = 1.012
    k_angle: float = 75.90
    theta0: float = 113.24


SPC_FW = WaterModel()


def box_side(n_molecules: int, density: float = WATER_NUMBER_DENSITY) -> float:
    """Side L (Angstrom) of the cubic box holding ``n_molecules`` at number ``density``."""
    return (n_molecules / density) ** (1.0 / 3.0)


def _dsf(r, alpha, rc):
    """V_DSF(r) (1/Angstrom), zero for r >= rc."""
    erfc_rc = jax.scipy.special.erfc(alpha * rc)
    slope = erfc_rc / rc**2 + 2 * alpha / math.sqrt(math.pi) * jnp.exp(-(alpha * rc) ** 2) / rc
    v = jax.scipy.special.erfc(alpha * r) / r - erfc_rc / rc + slope * (r - rc)
    return jnp.where(r < rc, v, 0.0)


def water_energy(pos, box, model: WaterModel = SPC_FW, cutoff: float = 9.0, alpha: float = 0.2,
                 images: int = 0):
    """Total SPC/Fw potential energy (kcal/mol) of water molecules in a periodic cubic box.

    Args:
        pos: [M, 3, 3] positions (Angstrom) of molecules × (O, H1, H2) × xyz.
        box: side L of the cubic box (Angstrom); ``cutoff`` must be < L/2, or ≤ (k + ½) L
            with ``images`` = k.
        cutoff: R_c for Lennard-Jones and Coulomb (Angstrom).
        alpha: DSF damping parameter (1/Angstrom).
        images: 0 for the minimum image alone; k > 0 also sums the translations n·L,
            |n_i| ≤ k, of the minimum-image pair vectors (a box smaller than 2 R_c).
    Returns:
        scalar energy (kcal/mol) per box.
    """
    m = pos.shape[0]
    e_intra = _intramolecular(pos, model)

    # intermolecular: all (image n, molecule i, site a) – (molecule j, site b) pairs except a
    # molecule with itself in the home cell (n = 0, i = j)
    n = np.stack(np.meshgrid(*[np.arange(-images, images + 1)] * 3, indexing="ij"), -1)
    n = n.reshape(-1, 3)
    shifts = jnp.asarray(n * box, dtype=pos.dtype)                        # [K, 3]
    home = jnp.asarray(np.all(n == 0, axis=1))                            # [K]
    d = pos[:, None, :, None, :] - pos[None, :, None, :, :]               # [M, M, 3, 3, 3]
    d = d - box * jnp.round(d / box)
    d = d[None] + shifts[:, None, None, None, None, :]                    # [K, M, M, 3, 3, 3]
    same = jnp.eye(m, dtype=bool)[None] & home[:, None, None]             # [K, M, M]
    other = ~same[..., None, None]                                        # [K, M, M, 1, 1]
    return e_intra + _pair_sum(d, other, model, lambda r: _dsf(r, alpha, cutoff), cutoff)


def cluster_energy(pos, model: WaterModel = SPC_FW):
    """SPC/Fw potential energy (kcal/mol) of an isolated cluster: every pair, no cutoff.

        E = E_intra + Σ_{i<j} [ Σ_{a,b} k_e q_a q_b / r_{ia,jb} + 4ε((σ/r_OO)¹² − (σ/r_OO)⁶) ]

    (plain Coulomb and unshifted Lennard-Jones: the R_c → ∞ limit of :func:`water_energy` with
    α = 0). ``pos`` [M, 3, 3] (Angstrom), molecules × (O, H1, H2) × xyz; returns a scalar.
    """
    d = (pos[:, None, :, None, :] - pos[None, :, None, :, :])[None]     # [1, M, M, 3, 3, 3]
    other = ~jnp.eye(pos.shape[0], dtype=bool)[None, :, :, None, None]  # [1, M, M, 1, 1]
    return _intramolecular(pos, model) + _pair_sum(d, other, model, lambda r: 1.0 / r, None)


def _pair_sum(d, other, model, kernel, cutoff):
    """½ Σ over ordered site pairs of k_e q_a q_b kernel(r) + the O–O Lennard-Jones term
    (shifted to zero at ``cutoff`` and cut there; plain when ``cutoff`` is None): the
    intermolecular energy (kcal/mol). ``d`` [K, M, M, 3, 3, 3] pair vectors (Angstrom),
    ``other`` [K, M, M, 1, 1] the pairs that interact (not a molecule with itself)."""
    r2_all = jnp.sum(d * d, axis=-1)
    r = jnp.sqrt(jnp.where(other, r2_all, 1.0))                           # safe where excluded
    q = jnp.array([model.q_o, model.q_h, model.q_h])
    qq = q[:, None] * q[None, :]
    e_coul = COULOMB_KCAL_ANGSTROM * jnp.sum(jnp.where(other, qq * kernel(r), 0.0))

    r_oo = r[..., 0, 0]
    sr6 = (model.sigma / r_oo) ** 6
    lj = 4 * model.epsilon * (sr6**2 - sr6)
    inside = other[..., 0, 0]
    if cutoff is not None:
        sr6_c = (model.sigma / cutoff) ** 6
        lj = lj - 4 * model.epsilon * (sr6_c**2 - sr6_c)
        inside = inside & (r_oo < cutoff)
    e_lj = jnp.sum(jnp.where(inside, lj, 0.0))
    # each intermolecular pair was counted twice
    return 0.5 * (e_coul + e_lj)


def _intramolecular(pos, model):
    """Σ_mol ½ k_b [(r_OH1 − r0)² + (r_OH2 − r0)²] + ½ k_θ (θ_HOH − θ0)² (kcal/mol)."""
    b1 = pos[:, 1] - pos[:, 0]
    b2 = pos[:, 2] - pos[:, 0]
    r1 = jnp.linalg.norm(b1, axis=-1)
    r2 = jnp.linalg.norm(b2, axis=-1)
    cos_t = jnp.sum(b1 * b2, axis=-1) / (r1 * r2)
    theta = jnp.arccos(jnp.clip(cos_t, -1.0 + 1e-12, 1.0 - 1e-12))
    e_intra = 0.5 * model.k_bond * jnp.sum((r1 - model.r0) ** 2 + (r2 - model.r0) ** 2)
    e_intra += 0.5 * model.k_angle * jnp.sum((theta - jnp.deg2rad(model.theta0)) ** 2)
    return e_intra


@dataclasses.dataclass(frozen=True)
class LangevinSettings:
    """Thermostat and time step: T (K), dt (fs), friction γ (1/fs)."""

    temperature: float = 300.0
    dt: float = 0.5
    friction: float = 1.0 / 1000.0


def make_langevin(box: float | None, model: WaterModel = SPC_FW, cutoff: float | None = None,
                  alpha: float = 0.2, images: int = 0):
    """Build a jitted ``run(pos, vel, key, n_steps, temperature, dt, friction) -> (pos, vel)``.

    ``images`` > 0: the energy sums periodic images (:func:`water_energy`), the cutoff
    (default 9 Å) may reach (images + ½) L. ``box`` None: an isolated cluster in vacuum
    (:func:`cluster_energy`, every pair; cutoff, alpha and images unused).

    One BAOAB step (positions x, velocities v, accelerations a = F/m):
        v ← v + ½dt a(x);  x ← x + ½dt v;
        v ← c v + √(1−c²) √(k_B T/m) ξ,  c = exp(−γ dt),  ξ ~ N(0, 1);
        x ← x + ½dt v;  v ← v + ½dt a(x).
    Noise for step s is drawn from ``fold_in(key, s)``, so a run is a deterministic function
    of its inputs. Shapes: pos, vel [M, 3, 3] (Angstrom, Angstrom/fs).
    """
    if box is None:
        grad = jax.grad(lambda p: cluster_energy(p, model))
    else:
        if cutoff is None:
            cutoff = 9.0 if images else min(9.0, 0.5 * box - 0.2)
        if cutoff > (images + 0.5) * box or (not images and cutoff >= 0.5 * box):
            raise ValueError(f"cutoff {cutoff} Angstrom must be below (images + 1/2) times the "
                             f"box side {box:.2f} (images = {images})")
        grad = jax.grad(lambda p: water_energy(p, box, model, cutoff, alpha, images))
    masses = jnp.array([MASS_O, MASS_H, MASS_H])[None, :, None]

    def accel(p):
        return -grad(p) / masses * ACCEL_PER_KCAL_ANGSTROM_AMU

    @jax.jit
    def run(pos, vel, key, n_steps, temperature, dt, friction):
        c1 = jnp.exp(-friction * dt)
        c2 = jnp.sqrt(1.0 - c1**2)
        v_scale = jnp.sqrt(KB_KCAL * temperature / masses * ACCEL_PER_KCAL_ANGSTROM_AMU)

        def step(s, carry):
            x, v, a = carry
            v = v + 0.5 * dt * a
            x = x + 0.5 * dt * v
            xi = jax.random.normal(jax.random.fold_in(key, s), v.shape, dtype=v.dtype)
            v = c1 * v + c2 * v_scale * xi
            x = x + 0.5 * dt * v
            a = accel(x)
            v = v + 0.5 * dt * a
            return x, v, a

        x, v, _ = jax.lax.fori_loop(0, n_steps, step, (pos, vel, accel(pos)))
        return x, v

    return run


def kinetic_temperature(vel) -> float:
    """Instantaneous temperature (K) from velocities [M, 3, 3] (Angstrom/fs): 2 K / (N_dof k_B)."""
    masses = np.array([MASS_O, MASS_H, MASS_H])[None, :, None]
    ke = 0.5 * np.sum(masses * np.asarray(vel) ** 2) / ACCEL_PER_KCAL_ANGSTROM_AMU
    return float(2 * ke / (np.asarray(vel).size * KB_KCAL))

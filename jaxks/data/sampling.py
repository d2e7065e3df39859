"""Realistic water geometries: monomers and (H2O)_n clusters carved from liquid-water dynamics.

Recipe (all deterministic for a given seed):

1. Fill a periodic cubic box with M water molecules at liquid density (M = m³ on a lattice,
   m >= 4, at least 3n molecules so a cluster is at most a third of the box), random
   orientations, Maxwell-Boltzmann velocities.
2. Equilibrate with Langevin dynamics of the flexible SPC/Fw model (:mod:`jaxks.data.forcefield`)
   at T (default 300 K), dt = 0.5 fs: first with strong friction (20/ps) to absorb the lattice
   start, then with weak friction (1/ps) so that the hydrogen-bond network forms.
3. Every ``interval_fs`` take a snapshot and carve clusters around randomly chosen centre
   molecules: the n molecules whose oxygens are nearest the centre oxygen (minimum image),
   each molecule whole and unwrapped next to the centre. Several well-separated clusters are
   taken from one snapshot (up to M / 4n) to save dynamics.
4. A fraction ``distort`` of the frames become *stretched/compressed variants* (for
   robustness of models): molecular centres of mass scaled about the cluster centre by
   s ~ U(0.90, 1.15), every O–H bond by U(0.92, 1.08) and every HOH angle by U(0.92, 1.08),
   kept inside the validity limits below.
5. ``relax`` (``--relax``; before 4): every carved cluster is annealed in vacuum (Langevin from
   rest, 100 K, 2 ps, friction 10/ps, all-pairs SPC/Fw with plain Coulomb:
   :func:`forcefield.cluster_energy`) and minimised (FIRE in one jitted loop, max |∂E/∂x| <
   10⁻⁴ kcal/mol/Å; :func:`make_relaxer`): the compact H-bonded minima users relax (cyclic trimer
   and tetramer, prism/cage hexamers, cube-like octamers) instead of open liquid fragments.
   Clusters that come apart (an O–O gap above 3.5 Å) or do not converge are rejected. ``--intramolecular dft``
   maps the relaxed molecules. Means over 6 clusters (seed 3000, :func:`cluster_structure`:
   nearest O–O, H-bonds per molecule, oxygen radius of gyration; SPC/Fw energy per molecule),
   carved → relaxed:

   | n | nearest O–O (Å) | H-bonds/molecule | R_g (Å) | E/n (kcal/mol) | distinct minima | FIRE steps | no annealing: H-bonds, E/n, steps |
   |---|---|---|---|---|---|---|---|
   | 3 | 2.71 → 2.73 | 0.67 → 1.00 | 2.00 → 1.58 | −2.4 → −6.4 | 1 of 6 | 251 | 1.00, −6.37, 489 |
   | 4 | 2.79 → 2.70 | 0.71 → 1.00 | 2.28 → 2.03 | −2.7 → −7.5 | 2 of 6 | 518 | 1.00, −7.47, 871 |
   | 6 | 2.88 → 2.70 | 0.64 → 1.11 | 2.67 → 2.59 | −2.2 → −8.1 | 4 of 6 | 1014 | 1.19, −7.96, 896 |
   | 8 | 2.84 → 2.69 | 0.79 → 1.23 | 2.88 → 2.71 | −3.0 → −8.8 | 6 of 6 | 982 | 1.31, −8.86, 1210 |
   | 10 | 2.80 → 2.69 | 0.80 → 1.40 | 3.13 → 2.95 | −3.0 → −9.6 | 6 of 6 | 844 | 1.38, −9.46, 1203 |
   | 16 | 2.77 → 2.68 | 0.93 → 1.51 | 3.68 → 3.49 | −4.0 → −10.3 | 6 of 6 | 865 | 1.53, −10.15, 1562 |

   The compactness comes from the minimisation itself; annealing first changes the H-bond count
   by ≤ 0.08 per molecule either way, finds lower minima for n = 6, 10, 16 (by 0.1–0.15
   kcal/mol per molecule) and shortens the minimisation for 5 of the 6 sizes (50 K or 5 ps
   instead of 100 K, 2 ps changed little in a trial). Every carved trimer ends in the same
   cyclic trimer and most tetramers in one of two minima: ``minimise=False``
   (``--anneal-only``) keeps the 100 K snapshot for thermal variety instead. Cost: 0.1 s per
   (H2O)8 cluster after a 1.2 s compilation, small next to the liquid MD.

Every frame satisfies (checked before it is accepted, see :func:`geometry_problems`):
no O–O distance below :data:`MIN_OO_ANGSTROM` and every O–H bond within
:data:`OH_RANGE_ANGSTROM`. Atoms are ordered O, H, H per molecule; coordinates are in Angstrom
(as xyz prescribes) and centred on the centre of mass.

Noise: NumPy ``Generator(PCG64(seed))`` for lattice, orientations, velocities, centres and
distortions; ``jax.random.PRNGKey(seed)`` for the thermostat.

Periodic boxes (:func:`sample_water_box`): N molecules in their own cubic box of side
L = (N / n_liquid)^(1/3) (liquid density, 0.997 g/cm³; 8 molecules: 6.21 Å), the same dynamics
with the periodic images summed up to the 9 Å cutoff (a box smaller than 18 Å is its own
neighbour), snapshots every ``interval_fs``. Frames are periodic cells: oxygens wrapped into
[0, L)³, each molecule whole, written with ``Lattice="..." pbc="T T T"``; the geometry checks
use minimum-image distances.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterable, TextIO

import numpy as np

from jaxks.system import InputError, System

MIN_OO_ANGSTROM = 2.3
OH_RANGE_ANGSTROM = (0.85, 1.15)
#: Largest cluster the sampler makes (a 216-molecule box is the largest it builds).
MAX_MOLECULES = 64
GENERATOR_NAME = "jaxks-water-md"


@dataclasses.dataclass(frozen=True)
class SampledFrame:
    """One generated geometry.

    Attributes:
        symbols: element symbols, ("O", "H", "H") × n.
        coords: [3n, 3] positions in **Angstrom**.
        info: provenance written on the xyz comment line (units, seed, n, frame, ...).
    """

    symbols: tuple[str, ...]
    coords: np.ndarray
    info: dict
    lattice: np.ndarray | None = None

    def to_system(self, **kwargs) -> System:
        """The :class:`System` (Bohr inside) of this frame, periodic when it has a lattice."""
        return System.from_symbols(self.symbols, self.coords, lattice_angstrom=self.lattice,
                                   **kwargs)


# --------------------------------------------------------------------------- geometry checks
def geometry_problems(coords_angstrom, min_oo: float = MIN_OO_ANGSTROM,
                      oh_range=OH_RANGE_ANGSTROM, box: float | None = None) -> list[str]:
    """Why a water cluster (or periodic box) geometry is unacceptable (empty list when fine).

    Args:
        coords_angstrom: [3n, 3] positions ordered (O, H, H) per molecule, Angstrom.
        box: side of a periodic cubic box (Angstrom): O–O distances to every image count.
    """
    x = np.asarray(coords_angstrom, dtype=np.float64).reshape(-1, 3, 3)
    problems = []
    oh = np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1)
    if oh.min() < oh_range[0] or oh.max() > oh_range[1]:
        problems.append(f"O-H bond outside {oh_range} Angstrom: {oh.min():.3f}..{oh.max():.3f}")
    if len(x) > 1 or box is not None:
        v = x[:, None, 0] - x[None, :, 0]                                 # [n, n, 3]
        shifts = np.zeros((1, 3))
        if box is not None:  # minimum image, then the 27 nearest images (a molecule's own too)
            v = v - box * np.round(v / box)
            shifts = box * (np.array(list(np.ndindex(3, 3, 3))) - 1)
        d = np.linalg.norm(v[None] + shifts[:, None, None], axis=-1)      # [k, n, n]
        home = int(np.flatnonzero(np.all(shifts == 0, axis=1))[0])
        d[home, np.arange(len(x)), np.arange(len(x))] = np.inf             # not with itself
        if d.min() < min_oo:
            problems.append(f"O-O distance {d.min():.3f} Angstrom below {min_oo}")
    return problems


# --------------------------------------------------------------------------- building blocks
def _equilibrium_molecule(model) -> np.ndarray:
    """[3, 3] (O, H1, H2) at the model's r0 and θ0, centre of mass at the origin (Angstrom)."""
    from jaxks.data.forcefield import MASS_H, MASS_O

    half = math.radians(model.theta0) / 2
    x = np.array([[0.0, 0.0, 0.0],
                  [model.r0 * math.sin(half), 0.0, model.r0 * math.cos(half)],
                  [-model.r0 * math.sin(half), 0.0, model.r0 * math.cos(half)]])
    m = np.array([MASS_O, MASS_H, MASS_H])
    return x - (m[:, None] * x).sum(0) / m.sum()


def _random_rotations(rng: np.random.Generator, k: int) -> np.ndarray:
    """[k, 3, 3] uniformly distributed rotation matrices (from normalised random quaternions)."""
    q = rng.normal(size=(k, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def _box_molecules(n: int) -> int:
    m = max(4, math.ceil((3 * n) ** (1.0 / 3.0) - 1e-9))
    return m**3


def _lattice_start(m_side: int, box: float, model, rng, temperature):
    """Molecules on a simple cubic lattice, random orientations; MB velocities (Å/fs)."""
    from jaxks.data.forcefield import (ACCEL_PER_KCAL_ANGSTROM_AMU, KB_KCAL, MASS_H, MASS_O)

    a = box / m_side
    g = np.arange(m_side) + 0.5
    sites = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) * a
    mol = _equilibrium_molecule(model)
    rot = _random_rotations(rng, len(sites))
    pos = sites[:, None, :] + np.einsum("kij,aj->kai", rot, mol)
    masses = np.array([MASS_O, MASS_H, MASS_H])[None, :, None]
    vel = rng.normal(size=pos.shape) * np.sqrt(KB_KCAL * temperature / masses
                                               * ACCEL_PER_KCAL_ANGSTROM_AMU)
    return pos, vel


def carve_cluster(pos: np.ndarray, box: float, centre: int, n: int) -> np.ndarray:
    """The n molecules nearest molecule ``centre`` by O–O distance (minimum image), unwrapped.

    Args:
        pos: [M, 3, 3] molecule positions (Angstrom), each molecule whole.
        box: cubic box side (Angstrom).
    Returns:
        [n, 3, 3] positions, nearest first, every molecule shifted by the lattice vector that
        puts its oxygen nearest the centre oxygen.
    """
    d = pos[:, 0] - pos[centre, 0]
    shift = -box * np.round(d / box)
    dist = np.linalg.norm(d + shift, axis=1)
    order = np.argsort(dist, kind="stable")[:n]
    return pos[order] + shift[order][:, None, :]


def _centre_of_mass(x: np.ndarray) -> np.ndarray:
    from jaxks.data.forcefield import MASS_H, MASS_O

    m = np.array([MASS_O, MASS_H, MASS_H])
    return (m[None, :, None] * x).sum((0, 1)) / (m.sum() * len(x))


def _molecule_frames(x: np.ndarray):
    """Per molecule of ``x`` [n, 3, 3] (O, H, H; Angstrom): O–H lengths r [n, 2], HOH angle
    θ [n] (radians), and the in-plane unit bisector and perpendicular [n, 3]."""
    o = x[:, 0]
    u = x[:, 1:] - o[:, None]                                   # [n, 2, 3]
    r = np.linalg.norm(u, axis=-1)
    u = u / r[..., None]
    bis = u[:, 0] + u[:, 1]
    bis /= np.linalg.norm(bis, axis=-1, keepdims=True)
    perp = u[:, 0] - np.sum(u[:, 0] * bis, -1, keepdims=True) * bis
    perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
    theta = np.arccos(np.clip(np.sum(u[:, 0] * u[:, 1], -1), -1, 1))
    return r, theta, bis, perp


def _rebuild_molecules(x: np.ndarray, bis, perp, new_r, new_theta) -> np.ndarray:
    """``x`` with every molecule's H atoms placed at lengths ``new_r`` [n, 2] and angle
    ``new_theta`` [n] from its O, in the molecular plane, symmetric about the old bisector."""
    half = 0.5 * new_theta
    dirs = np.stack([np.cos(half)[:, None] * bis + np.sin(half)[:, None] * perp,
                     np.cos(half)[:, None] * bis - np.sin(half)[:, None] * perp], 1)
    y = x.copy()
    y[:, 1:] = x[:, :1] + new_r[..., None] * dirs
    return y


#: SPC/Fw's equilibrium O–H length (Å) and HOH angle (degrees), and those of PBE-optimised
#: water (def2-SVP-quality basis: 0.970 Å, 104.2°), for :func:`dft_intramolecular`.
SPCFW_GEOMETRY = (1.012, 113.24)
DFT_GEOMETRY = (0.970, 104.2)
INTRAMOLECULAR = ("spcfw", "dft")


def dft_intramolecular(x: np.ndarray) -> np.ndarray:
    """Map SPC/Fw molecules onto DFT-like ones, keeping their thermal fluctuations:
    r' = r − (1.012 − 0.970) Å for every O–H, θ' = θ − (113.24° − 104.2°) for every HOH.

    SPC/Fw at 300 K gives O–H 1.029 ± 0.034 Å; optimised and DFT-MD water sits at 0.96–0.99 Å,
    the geometries users run. ``x`` [n, 3, 3] in Angstrom; returns the same shape.
    """
    r, theta, bis, perp = _molecule_frames(x)
    new_r = r - (SPCFW_GEOMETRY[0] - DFT_GEOMETRY[0])
    new_theta = theta - math.radians(SPCFW_GEOMETRY[1] - DFT_GEOMETRY[1])
    return _rebuild_molecules(x, bis, perp, new_r, new_theta)


def distort_cluster(x: np.ndarray, rng: np.random.Generator):
    """A stretched/compressed variant of cluster ``x`` [n, 3, 3] (Angstrom); returns (x', info).

    Intramolecular: each O–H length × U(0.92, 1.08) clipped to [0.88, 1.12] Å, each HOH angle
    × U(0.92, 1.08) clipped to [95°, 125°], the H atoms staying in their molecular plane and
    symmetric about the original bisector. Intermolecular (n > 1): molecular centres scaled
    about the cluster centre by s ~ U(0.90, 1.15), s raised in steps of 0.01 until no O–O
    distance is below 2.35 Å.
    """
    n = len(x)
    r, theta, bis, perp = _molecule_frames(x)
    new_r = np.clip(r * rng.uniform(0.92, 1.08, size=r.shape), 0.88, 1.12)
    new_theta = np.clip(theta * rng.uniform(0.92, 1.08, size=theta.shape),
                        math.radians(95), math.radians(125))
    y = _rebuild_molecules(x, bis, perp, new_r, new_theta)
    info = dict(variant="distorted")
    if n > 1:
        s = float(rng.uniform(0.90, 1.15))
        com = _centre_of_mass(y)
        mol_com = np.stack([_centre_of_mass(y[i:i + 1]) for i in range(n)])
        while True:
            z = y + ((s - 1.0) * (mol_com - com))[:, None, :]
            if not geometry_problems(z.reshape(-1, 3), min_oo=2.35) or s >= 1.5:
                break
            s += 0.01
        y = z
        info["scale"] = round(s, 4)
    return y, info


# --------------------------------------------------------------------------- relaxation
#: Vacuum annealing before the minimisation: thermostat temperature (K), simulated time (fs),
#: friction (1/fs; 10/ps, strong, to carry away the heat of the H-bonds that form).
ANNEAL_TEMPERATURE = 100.0
ANNEAL_FS = 2000.0
_ANNEAL_FRICTION = 0.01
#: The minimiser stops when every component of ∂E/∂x is below this (kcal/mol/Angstrom).
RELAX_GTOL = 1e-4
#: Hydrogen bond (:func:`cluster_structure`): O_d···O_a below 3.3 Angstrom and the donor's
#: O_d–H within 30° of the O_d→O_a axis.
HBOND_OO_ANGSTROM = 3.3
HBOND_ANGLE_DEGREES = 30.0


def cluster_structure(x: np.ndarray) -> dict:
    """How compact and H-bonded a water cluster is.

    Args:
        x: [n, 3, 3] positions (O, H, H per molecule), Angstrom, n ≥ 2.
    Returns:
        dict: ``oo_nn`` mean over molecules of the nearest O–O distance (Å); ``hbonds`` number
        of H-bonds divided by n (each donor O–H counted once when some acceptor O_a ≠ O_d has
        |O_d O_a| < :data:`HBOND_OO_ANGSTROM` and ∠(H, O_d, O_a) < :data:`HBOND_ANGLE_DEGREES`;
        cyclic trimer 1, prism hexamer and cube octamer 1.5); ``rg`` radius of gyration of the
        oxygens, √(mean |O_i − Ō|²) (Å).
    """
    x = np.asarray(x, dtype=np.float64)
    o = x[:, 0]
    n = len(x)
    oo = o[None, :] - o[:, None]                                  # [d, a, 3]: O_d -> O_a
    dist = np.linalg.norm(oo, axis=-1) + np.diag(np.full(n, np.inf))
    oh = x[:, 1:] - o[:, None]                                    # [d, 2, 3]
    cos = np.einsum("dhk,dak->dha", oh, oo) / (
        np.linalg.norm(oh, axis=-1)[..., None] * dist[:, None, :])
    bonded = (dist[:, None, :] < HBOND_OO_ANGSTROM) & (
        cos > math.cos(math.radians(HBOND_ANGLE_DEGREES)))        # [d, h, a]
    return dict(oo_nn=float(dist.min(axis=1).mean()),
                hbonds=float(bonded.any(axis=-1).sum() / n),
                rg=float(np.sqrt(np.mean(np.sum((o - o.mean(0)) ** 2, -1)))))


def _connected(x: np.ndarray, within: float = HBOND_OO_ANGSTROM + 0.2) -> bool:
    """Whether the graph of O–O distances below ``within`` (Å) joins all molecules of x."""
    o = x[:, 0]
    near = np.linalg.norm(o[:, None] - o[None], axis=-1) < within
    seen = np.zeros(len(o), bool)
    seen[0] = True
    for _ in range(len(o)):
        seen = seen | near[seen].any(axis=0)
    return bool(seen.all())


#: FIRE (Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006)): their N_min, f_inc, f_dec,
#: α_start, f_α; start and largest time step (fs) with the atomic masses (O–H period ~9 fs).
_FIRE = dict(n_min=5, f_inc=1.1, f_dec=0.5, alpha=0.1, f_alpha=0.99, dt=0.5, dt_max=1.5)
_FIRE_MAX_STEPS = 50000


def _vacuum_minimiser(model):
    """Jitted ``minimise(x [n, 3, 3] Å) -> (x_min, E (kcal/mol), max |∂E/∂x|, steps)``: FIRE on
    :func:`forcefield.cluster_energy` until max |∂E/∂x| < :data:`RELAX_GTOL` kcal/mol/Å.

    One FIRE step (forces F = −∇E, velocities v, P = F·v over all atoms):
        P > 0: v ← (1 − α) v + α |v| F/|F|; after N_min such steps dt ← min(f_inc dt, dt_max),
               α ← f_α α;
        P ≤ 0: v ← 0, dt ← f_dec dt, α ← α_start;
        then v ← v + dt F/m, x ← x + dt v (semi-implicit Euler, Å, fs, amu).
    The whole loop is one XLA while-loop: ~1000 steps of (H2O)8 take 0.05 s where SciPy's
    L-BFGS (one Python round trip per iteration) took 15–30 s on the shared 2-core machine.
    """
    import jax
    import jax.numpy as jnp

    from jaxks.data.forcefield import (ACCEL_PER_KCAL_ANGSTROM_AMU, MASS_H, MASS_O,
                                       cluster_energy)

    grad = jax.grad(lambda p: cluster_energy(p, model))
    inv_mass = ACCEL_PER_KCAL_ANGSTROM_AMU / jnp.array([MASS_O, MASS_H, MASS_H])[None, :, None]
    c = _FIRE

    def step(state):
        x, v, dt, alpha, n_pos, it, g = state
        f = -g
        up = jnp.sum(f * v) > 0
        mixed = (1 - alpha) * v + alpha * jnp.linalg.norm(v) * f / jnp.linalg.norm(f)
        v = jnp.where(up, mixed, 0.0)
        grow = up & (n_pos > c["n_min"])
        dt = jnp.where(up, jnp.where(grow, jnp.minimum(dt * c["f_inc"], c["dt_max"]), dt),
                       dt * c["f_dec"])
        alpha = jnp.where(up, jnp.where(grow, alpha * c["f_alpha"], alpha), c["alpha"])
        n_pos = jnp.where(up, n_pos + 1, 0)
        v = v + dt * f * inv_mass
        x = x + dt * v
        return x, v, dt, alpha, n_pos, it + 1, grad(x)

    def unconverged(state):
        return (jnp.abs(state[-1]).max() >= RELAX_GTOL) & (state[-2] < _FIRE_MAX_STEPS)

    @jax.jit
    def minimise(x):
        start = (x, jnp.zeros_like(x), jnp.asarray(c["dt"], x.dtype),
                 jnp.asarray(c["alpha"], x.dtype), 0, 0, grad(x))
        x, *_, it, g = jax.lax.while_loop(unconverged, step, start)
        return x, cluster_energy(x, model), jnp.abs(g).max(), it

    def run(x):
        y, e, gmax, it = minimise(jnp.asarray(x, jnp.float64))
        return np.asarray(y), float(e), float(gmax), int(it)

    return run


def make_relaxer(model=None, anneal_temperature: float = ANNEAL_TEMPERATURE,
                 anneal_fs: float = ANNEAL_FS, minimise: bool = True):
    """Build ``relax(x, key) -> (x', info)``: a carved cluster → a nearby compact minimum.

    1. Vacuum Langevin dynamics (:func:`forcefield.make_langevin` with box None: every pair,
       plain Coulomb) from ``x`` at rest, ``anneal_temperature`` K for ``anneal_fs`` fs,
       dt = 0.5 fs, friction 10/ps; noise from ``key`` (a ``jax.random`` key). Skipped when
       ``anneal_fs`` is 0.
    2. FIRE minimisation of the vacuum SPC/Fw energy until max |∂E/∂x| <
       :data:`RELAX_GTOL` kcal/mol/Å (:func:`_vacuum_minimiser`); ``minimise`` False keeps the annealed cluster instead
       (a low-temperature vacuum MD snapshot next to a compact minimum: thermal variety where
       few minima exist — every carved trimer relaxes to the same cyclic trimer).

    The surface molecules of a liquid fragment have dangling O–H and open rings; in vacuum they
    close into the H-bond rings, prisms and cages of the compact minima (the module's table).
    ``x`` [n, 3, 3] Angstrom; ``info``: the relaxation's settings and its result (energy in
    kcal/mol, largest gradient component, FIRE steps); a minimisation that has not converged
    after 50000 steps has ``relax_gmax`` ≥ :data:`RELAX_GTOL` (the sampler rejects it).
    """
    from jaxks.data.forcefield import SPC_FW, make_langevin

    model = model or SPC_FW
    run = make_langevin(None, model)
    minimiser = _vacuum_minimiser(model) if minimise else None
    steps = int(round(anneal_fs / _DT_FS))

    def relax(x, key):
        y = np.asarray(x, np.float64)
        if steps:
            p, _ = run(y, np.zeros_like(y), key, steps, anneal_temperature, _DT_FS,
                       _ANNEAL_FRICTION)
            y = np.asarray(p)
        info = dict(relaxed=True, anneal_T=anneal_temperature, anneal_fs=anneal_fs,
                    minimised=minimise)
        if minimise:
            y, e, gmax, nit = minimiser(y)
            info.update(relax_e_kcal=e, relax_gmax=gmax, relax_steps=nit)
        return y, info

    return relax


# --------------------------------------------------------------------------- the sampler
#: MD time step (fs).
_DT_FS = 0.5


def _check_request(what: str, n: int, frames: int, temperature: float) -> None:
    if not 1 <= n <= MAX_MOLECULES:
        raise InputError(f"{what} must be between 1 and {MAX_MOLECULES}, got {n}")
    if frames < 1:
        raise InputError(f"the number of frames must be positive, got {frames}")
    if temperature <= 0:
        raise InputError(f"temperature must be positive (K), got {temperature}")


def _check_intramolecular(intramolecular: str) -> None:
    if intramolecular not in INTRAMOLECULAR:
        raise InputError(f"intramolecular must be one of {INTRAMOLECULAR}, got "
                         f"{intramolecular!r}")


def _reporter(progress):
    """say(msg): one line to ``progress``, or nothing."""
    return (lambda msg: print(msg, file=progress, flush=True)) if progress else (lambda msg: None)


def _snapshots(run, pos, vel, key, temperature: float, interval_fs: float,
               equilibration_fs: float):
    """Step 3's dynamics: yield (snapshot k = 1, 2, ..., time (fs), positions [M, 3, 3] NumPy,
    velocities) every ``interval_fs`` after the equilibration, weak friction, forever."""
    import jax

    steps = max(1, int(round(interval_fs / _DT_FS)))
    snapshot = 0
    while True:
        snapshot += 1
        pos, vel = run(pos, vel, jax.random.fold_in(key, 1 + snapshot), steps, temperature,
                       _DT_FS, 0.001)
        p = np.asarray(pos)
        if not np.all(np.isfinite(p)):  # pragma: no cover - would be a force-field bug
            raise RuntimeError("water dynamics became unstable (non-finite positions)")
        yield snapshot, equilibration_fs + snapshot * steps * _DT_FS, p, vel


def _rejected(count: int, frames: int, what: str) -> int:
    """One more frame failed the geometry checks: the new count, or RuntimeError after many."""
    if count + 1 > 10 * frames + 100:
        raise RuntimeError(f"too many {what} fail the geometry checks")
    return count + 1


def _equilibrate(run, pos, vel, key, temperature: float, equilibration_fs: float):
    """Step 2 of the recipe: strong friction (20/ps) for min(1 ps, a third), then weak (1/ps)."""
    import jax

    strong = int(round(min(1000.0, equilibration_fs / 3) / _DT_FS))
    weak = int(round(equilibration_fs / _DT_FS)) - strong
    pos, vel = run(pos, vel, jax.random.fold_in(key, 0), strong, temperature, _DT_FS, 0.02)
    return run(pos, vel, jax.random.fold_in(key, 1), weak, temperature, _DT_FS, 0.001)


def sample_water(n: int, frames: int, seed: int = 0, temperature: float = 300.0,
                 distort: float | None = None, interval_fs: float = 100.0,
                 equilibration_fs: float = 3000.0, progress: TextIO | None = None,
                 intramolecular: str = "spcfw", relax: bool = False,
                 anneal_temperature: float = ANNEAL_TEMPERATURE,
                 anneal_fs: float = ANNEAL_FS, minimise: bool = True) -> list[SampledFrame]:
    """Generate ``frames`` geometries of (H2O)_n (n = 1 gives thermally distorted monomers).

    Args:
        n: molecules per cluster, 1 .. :data:`MAX_MOLECULES`.
        frames: number of geometries.
        seed: seed of every random choice; the same arguments give identical output.
        temperature: thermostat temperature (K).
        distort: fraction (0..1) of frames turned into stretched/compressed variants
            (default 0.2, or 0 with ``relax``; with ``relax`` the relaxed cluster is distorted).
        interval_fs: simulated time between snapshots (fs).
        equilibration_fs: simulated time before the first snapshot (fs).
        progress: stream for one-line progress messages (e.g. ``sys.stderr``), or None.
        intramolecular: ``"spcfw"`` (the force field's own molecules, O–H 1.029 ± 0.034 Å at
            300 K) or ``"dft"`` (mapped onto DFT-like bond lengths and angles before any
            distortion, :func:`dft_intramolecular`; after the relaxation).
        relax: minimise every carved cluster in vacuum after a short annealing
            (:func:`make_relaxer`): compact H-bonded local minima instead of liquid fragments
            (variant ``relaxed``; clusters that come apart, an O–O gap above 3.5 Å, or whose
            minimisation does not converge are rejected). Noise of the annealing: ``fold_in(fold_in(PRNGKey(seed), 2³² − 1), k)``
            for the k-th carved cluster, so the carved clusters are those without ``relax``.
        anneal_temperature, anneal_fs: the annealing's thermostat (K) and length (fs; 0: plain
            minimisation of the carved cluster).
        minimise: with ``relax``, False keeps the annealed cluster (no minimisation).
    Returns:
        list of :class:`SampledFrame` (coordinates in Angstrom).
    Raises:
        InputError: n, frames, distort or the annealing settings out of range.
    """
    import jax

    from jaxks.data.forcefield import SPC_FW, box_side, kinetic_temperature, make_langevin

    _check_request("cluster size n", n, frames, temperature)
    if distort is None:
        distort = 0.0 if relax else 0.2
    if not 0.0 <= distort <= 1.0:
        raise InputError(f"distort is a fraction of frames between 0 and 1, got {distort}")
    _check_intramolecular(intramolecular)
    if relax and (anneal_temperature <= 0 or anneal_fs < 0 or not (minimise or anneal_fs)):
        raise InputError(f"annealing needs a positive temperature and a time >= 0 (> 0 "
                         f"without the minimisation), got {anneal_temperature} K, {anneal_fs} fs")
    model = SPC_FW
    n_box = _box_molecules(n)
    m_side = round(n_box ** (1 / 3))
    box = box_side(n_box)
    rng = np.random.Generator(np.random.PCG64(seed))
    key = jax.random.PRNGKey(seed)
    pos, vel = _lattice_start(m_side, box, model, rng, temperature)
    run = make_langevin(box, model)
    say = _reporter(progress)
    say(f"sample: {n_box} SPC/Fw molecules in a {box:.2f} Angstrom box, T = {temperature} K, "
        f"equilibrating {equilibration_fs:.0f} fs")
    pos, vel = _equilibrate(run, pos, vel, key, temperature, equilibration_fs)
    per_snapshot = max(1, n_box // (4 * n))
    out: list[SampledFrame] = []
    rejected = carved = 0
    symbols = ("O", "H", "H") * n
    relaxer = make_relaxer(model, anneal_temperature, anneal_fs, minimise) if relax else None
    relax_key = jax.random.fold_in(key, 2**32 - 1)  # never a snapshot's: those count from 0
    for snapshot, t_fs, p, vel in _snapshots(run, pos, vel, key, temperature, interval_fs,
                                             equilibration_fs):
        centres = rng.permutation(n_box)[:per_snapshot]
        for c in centres:
            if len(out) == frames:
                break
            x = carve_cluster(p, box, int(c), n)
            carved += 1
            info = dict(variant="md")
            if relaxer is not None:
                x, extra = relaxer(x, jax.random.fold_in(relax_key, carved))
                if not _connected(x) or extra.get("relax_gmax", 0.0) >= RELAX_GTOL:
                    rejected = _rejected(rejected, frames, "relaxed clusters")
                    continue
                info = dict(variant="relaxed", **extra)
            if intramolecular == "dft":
                x = dft_intramolecular(x)
                info["intramolecular"] = "dft"
            if rng.uniform() < distort:
                x, extra = distort_cluster(x, rng)
                info = {**info, **extra}
            x = x - _centre_of_mass(x)
            flat = x.reshape(-1, 3)
            if geometry_problems(flat):
                rejected = _rejected(rejected, frames, "carved clusters")
                continue
            meta = dict(units="angstrom", generator=GENERATOR_NAME, model=model.name,
                        T=temperature, seed=seed, n=n, frame=len(out), snapshot=snapshot,
                        time_fs=t_fs, centre=int(c), **info)
            out.append(SampledFrame(symbols, flat, meta))
        say(f"sample: {len(out)}/{frames} frames{' (relaxed)' if relax else ''}, "
            f"t = {t_fs:.0f} fs, T_kin = {kinetic_temperature(vel):.0f} K")
        if len(out) == frames:
            return out


def sample_water_box(n: int, frames: int, seed: int = 0, temperature: float = 300.0,
                     interval_fs: float = 100.0, equilibration_fs: float = 3000.0,
                     progress: TextIO | None = None,
                     intramolecular: str = "spcfw") -> list[SampledFrame]:
    """Generate ``frames`` periodic boxes of n water molecules at liquid density (module doc).

    Args:
        n: molecules per box, 1 .. :data:`MAX_MOLECULES`; the cubic box side is
            ``forcefield.box_side(n)`` (8 molecules: 6.21 Å).
        frames, seed, temperature, interval_fs, equilibration_fs, progress, intramolecular:
            as :func:`sample_water` (no distorted variants: every frame is an MD snapshot).
    Returns:
        list of :class:`SampledFrame` with ``lattice`` = L·1 (Angstrom), oxygens in [0, L)³.
    Raises:
        InputError: n, frames or temperature out of range.
    """
    import jax

    from jaxks.data.forcefield import SPC_FW, box_side, kinetic_temperature, make_langevin

    _check_request("molecules per box", n, frames, temperature)
    _check_intramolecular(intramolecular)
    model, cutoff = SPC_FW, 9.0
    box = box_side(n)
    images = max(1, math.ceil(cutoff / box - 0.5))
    m_side = math.ceil(n ** (1 / 3) - 1e-9)
    rng = np.random.Generator(np.random.PCG64(seed))
    key = jax.random.PRNGKey(seed)
    pos, vel = _lattice_start(m_side, box, model, rng, temperature)
    keep = np.sort(rng.permutation(m_side ** 3)[:n])  # n of the m³ lattice sites
    pos, vel = pos[keep], vel[keep]
    run = make_langevin(box, model, cutoff=cutoff, images=images)
    say = _reporter(progress)
    say(f"sample: {n} SPC/Fw molecules in a periodic {box:.3f} Angstrom box, T = {temperature} K, "
        f"equilibrating {equilibration_fs:.0f} fs")
    pos, vel = _equilibrate(run, pos, vel, key, temperature, equilibration_fs)
    lattice = np.eye(3) * box
    out: list[SampledFrame] = []
    rejected = 0
    for snapshot, t_fs, p, vel in _snapshots(run, pos, vel, key, temperature, interval_fs,
                                             equilibration_fs):
        x = p - box * np.floor(p[:, :1] / box)   # oxygens into [0, L), molecules whole
        info = dict(variant="md-box")
        if intramolecular == "dft":
            x = dft_intramolecular(x)
            info["intramolecular"] = "dft"
        flat = x.reshape(-1, 3)
        if geometry_problems(flat, box=box):
            rejected = _rejected(rejected, frames, "box snapshots")
            continue
        meta = dict(units="angstrom", generator=GENERATOR_NAME, model=model.name,
                    T=temperature, seed=seed, n=n, frame=len(out), snapshot=snapshot,
                    time_fs=t_fs, box=round(box, 6), **info)
        out.append(SampledFrame(("O", "H", "H") * n, flat, meta, lattice=lattice))
        say(f"sample: {len(out)}/{frames} boxes, t = {t_fs:.0f} fs, "
            f"T_kin = {kinetic_temperature(vel):.0f} K")
        if len(out) == frames:
            return out


# --------------------------------------------------------------------------- xyz output
def _format_value(v) -> str:
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return repr(round(v, 6))
    s = str(v)
    return f'"{s}"' if (" " in s or "=" in s) else s


def frame_comment(info: dict, lattice=None) -> str:
    """Extended-xyz comment line: ``Properties=species:S:1:pos:R:3 pbc="F F F" key=value ...``;
    with a ``lattice`` [3, 3] (Angstrom, rows), ``Lattice="..." ... pbc="T T T"`` as ASE writes
    a periodic cell."""
    parts = []
    if lattice is not None:
        parts.append('Lattice="' + " ".join(f"{v:.10f}" for v in np.ravel(lattice)) + '"')
    parts += ['Properties=species:S:1:pos:R:3', 'pbc="T T T"' if lattice is not None
              else 'pbc="F F F"']
    parts += [f"{k}={_format_value(v)}" for k, v in info.items()]
    return " ".join(parts)


def write_frames_xyz(frames: Iterable[SampledFrame], target: str | os.PathLike | TextIO) -> None:
    """Write frames as multi-frame extended xyz (Angstrom, 10 decimals), atomically for a path."""
    def emit(f: TextIO):
        for fr in frames:
            f.write(f"{len(fr.symbols)}\n{frame_comment(fr.info, fr.lattice)}\n")
            for s, c in zip(fr.symbols, fr.coords):
                f.write(f"{s:<2s} {c[0]:16.10f} {c[1]:16.10f} {c[2]:16.10f}\n")

    if hasattr(target, "write"):
        emit(target)
        return
    path = os.fspath(target)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        emit(f)
    os.replace(tmp, path)



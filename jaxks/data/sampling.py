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

Every frame satisfies (checked before it is accepted, see :func:`geometry_problems`):
no O–O distance below :data:`MIN_OO_ANGSTROM` and every O–H bond within
:data:`OH_RANGE_ANGSTROM`. Atoms are ordered O, H, H per molecule; coordinates are in Angstrom
(as xyz prescribes) and centred on the centre of mass.

Noise: NumPy ``Generator(PCG64(seed))`` for lattice, orientations, velocities, centres and
distortions; ``jax.random.PRNGKey(seed)`` for the thermostat.
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

    def to_system(self, **kwargs) -> System:
        """The :class:`System` (Bohr inside) of this frame."""
        return System.from_symbols(self.symbols, self.coords, **kwargs)


# --------------------------------------------------------------------------- geometry checks
def geometry_problems(coords_angstrom, min_oo: float = MIN_OO_ANGSTROM,
                      oh_range=OH_RANGE_ANGSTROM) -> list[str]:
    """Why a water cluster geometry is unacceptable (empty list when it is fine).

    Args:
        coords_angstrom: [3n, 3] positions ordered (O, H, H) per molecule, Angstrom.
    """
    x = np.asarray(coords_angstrom, dtype=np.float64).reshape(-1, 3, 3)
    problems = []
    oh = np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1)
    if oh.min() < oh_range[0] or oh.max() > oh_range[1]:
        problems.append(f"O-H bond outside {oh_range} Angstrom: {oh.min():.3f}..{oh.max():.3f}")
    if len(x) > 1:
        d = np.linalg.norm(x[:, None, 0] - x[None, :, 0], axis=-1)
        d[np.diag_indices(len(x))] = np.inf
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


# --------------------------------------------------------------------------- the sampler
def sample_water(n: int, frames: int, seed: int = 0, temperature: float = 300.0,
                 distort: float = 0.2, interval_fs: float = 100.0,
                 equilibration_fs: float = 3000.0, progress: TextIO | None = None,
                 intramolecular: str = "spcfw") -> list[SampledFrame]:
    """Generate ``frames`` geometries of (H2O)_n (n = 1 gives thermally distorted monomers).

    Args:
        n: molecules per cluster, 1 .. :data:`MAX_MOLECULES`.
        frames: number of geometries.
        seed: seed of every random choice; the same arguments give identical output.
        temperature: thermostat temperature (K).
        distort: fraction (0..1) of frames turned into stretched/compressed variants.
        interval_fs: simulated time between snapshots (fs).
        equilibration_fs: simulated time before the first snapshot (fs).
        progress: stream for one-line progress messages (e.g. ``sys.stderr``), or None.
        intramolecular: ``"spcfw"`` (the force field's own molecules, O–H 1.029 ± 0.034 Å at
            300 K) or ``"dft"`` (mapped onto DFT-like bond lengths and angles before any
            distortion, :func:`dft_intramolecular`).
    Returns:
        list of :class:`SampledFrame` (coordinates in Angstrom).
    Raises:
        InputError: n, frames or distort out of range.
    """
    import jax

    from jaxks.data.forcefield import SPC_FW, box_side, kinetic_temperature, make_langevin

    if not 1 <= n <= MAX_MOLECULES:
        raise InputError(f"cluster size n must be between 1 and {MAX_MOLECULES}, got {n}")
    if frames < 1:
        raise InputError(f"the number of frames must be positive, got {frames}")
    if not 0.0 <= distort <= 1.0:
        raise InputError(f"distort is a fraction of frames between 0 and 1, got {distort}")
    if temperature <= 0:
        raise InputError(f"temperature must be positive (K), got {temperature}")
    if intramolecular not in INTRAMOLECULAR:
        raise InputError(f"intramolecular must be one of {INTRAMOLECULAR}, got "
                         f"{intramolecular!r}")
    model = SPC_FW
    n_box = _box_molecules(n)
    m_side = round(n_box ** (1 / 3))
    box = box_side(n_box)
    rng = np.random.Generator(np.random.PCG64(seed))
    key = jax.random.PRNGKey(seed)
    pos, vel = _lattice_start(m_side, box, model, rng, temperature)
    run = make_langevin(box, model)
    dt = 0.5
    say = (lambda msg: print(msg, file=progress, flush=True)) if progress else (lambda msg: None)
    say(f"sample: {n_box} SPC/Fw molecules in a {box:.2f} Angstrom box, T = {temperature} K, "
        f"equilibrating {equilibration_fs:.0f} fs")
    strong = int(round(min(1000.0, equilibration_fs / 3) / dt))
    weak = int(round(equilibration_fs / dt)) - strong
    pos, vel = run(pos, vel, jax.random.fold_in(key, 0), strong, temperature, dt, 0.02)
    pos, vel = run(pos, vel, jax.random.fold_in(key, 1), weak, temperature, dt, 0.001)
    per_snapshot = max(1, n_box // (4 * n))
    steps = max(1, int(round(interval_fs / dt)))
    out: list[SampledFrame] = []
    snapshot, rejected = 0, 0
    symbols = ("O", "H", "H") * n
    while len(out) < frames:
        snapshot += 1
        pos, vel = run(pos, vel, jax.random.fold_in(key, 1 + snapshot), steps, temperature,
                       dt, 0.001)
        p = np.asarray(pos)
        if not np.all(np.isfinite(p)):  # pragma: no cover - would be a force-field bug
            raise RuntimeError("water dynamics became unstable (non-finite positions)")
        t_fs = equilibration_fs + snapshot * steps * dt
        centres = rng.permutation(n_box)[:per_snapshot]
        for c in centres:
            if len(out) == frames:
                break
            x = carve_cluster(p, box, int(c), n)
            info = dict(variant="md")
            if intramolecular == "dft":
                x = dft_intramolecular(x)
                info["intramolecular"] = "dft"
            if rng.uniform() < distort:
                x, extra = distort_cluster(x, rng)
                info = {**info, **extra}
            x = x - _centre_of_mass(x)
            flat = x.reshape(-1, 3)
            if geometry_problems(flat):
                rejected += 1
                if rejected > 10 * frames + 100:
                    raise RuntimeError("too many carved clusters fail the geometry checks")
                continue
            meta = dict(units="angstrom", generator=GENERATOR_NAME, model=model.name,
                        T=temperature, seed=seed, n=n, frame=len(out), snapshot=snapshot,
                        time_fs=t_fs, centre=int(c), **info)
            out.append(SampledFrame(symbols, flat, meta))
        say(f"sample: {len(out)}/{frames} frames, t = {t_fs:.0f} fs, "
            f"T_kin = {kinetic_temperature(vel):.0f} K")
    return out


# --------------------------------------------------------------------------- xyz output
def _format_value(v) -> str:
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return repr(round(v, 6))
    s = str(v)
    return f'"{s}"' if (" " in s or "=" in s) else s


def frame_comment(info: dict) -> str:
    """Extended-xyz comment line: ``Properties=species:S:1:pos:R:3 pbc="F F F" key=value ...``."""
    parts = ['Properties=species:S:1:pos:R:3', 'pbc="F F F"']
    parts += [f"{k}={_format_value(v)}" for k, v in info.items()]
    return " ".join(parts)


def write_frames_xyz(frames: Iterable[SampledFrame], target: str | os.PathLike | TextIO) -> None:
    """Write frames as multi-frame extended xyz (Angstrom, 10 decimals), atomically for a path."""
    def emit(f: TextIO):
        for fr in frames:
            f.write(f"{len(fr.symbols)}\n{frame_comment(fr.info)}\n")
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



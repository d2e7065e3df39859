"""DeePKS-kit data folders: read and write system folders, write descriptor outputs, and export
a labelled dataset to them (:func:`export_deepkskit`, :func:`export_descriptors`): all of
jaxks's DeePKS-kit format code.

A DeePKS-kit *system folder* holds frames of one composition (method.md §8):

==============  =========================  ===============================================
file            shape                      meaning
==============  =========================  ===============================================
``atom.npy``    [nframes, natoms, 4]       rows (Z, x, y, z); or instead ...
``coord.npy``   [nframes, natoms, 3]       ... positions, with
``type.raw``    natoms lines               element symbols
``unit.raw``    one word                   length unit of the positions: "Angstrom" or
                                           "Bohr"; **Bohr when the file is absent**
``energy.npy``  [nframes, 1]               total energy (Hartree)
``force.npy``   [nframes, natoms, 3]       forces −dE/dR (Hartree/Bohr, whatever unit.raw)
``dm.npy``      [nframes, nao, nao]        AO density matrix (optional)
==============  =========================  ===============================================

Note: the published DeePKS-kit builds its molecules with ``unit="Ang"``; this project's
specification (method.md §8) takes Bohr as the default. The writer here therefore always
writes ``unit.raw`` explicitly (Angstrom by default) so both readings agree.

Descriptor outputs (:func:`write_deepks_descriptors`): ``dm_eig.npy`` [nframes, natoms, nproj]
(108 for the default projector basis), ``l_e_delta.npy`` [nframes, 1] = E_ref − E_base
(Hartree), ``l_f_delta.npy`` [nframes, natoms, 3] = F_ref − F_base (Hartree/Bohr),
``conv.npy`` [nframes, 1] bool.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np

from jaxks.data.labels import label_system
from jaxks.data.store import Dataset
from jaxks.system import InputError, System, normalize_symbol
from jaxks.units import ANGSTROM_PER_BOHR, BOHR_PER_ANGSTROM

if TYPE_CHECKING:
    from jaxks.integrals.projectors import ProjectorBasis

_UNITS = {"bohr": "Bohr", "au": "Bohr", "a.u.": "Bohr",
          "angstrom": "Angstrom", "ang": "Angstrom", "a": "Angstrom"}


def normalize_unit(unit: str) -> str:
    """"Bohr" or "Angstrom" for the usual spellings (case-insensitive).

    Raises:
        InputError: an unknown unit.
    """
    u = _UNITS.get(str(unit).strip().lower())
    if u is None:
        raise InputError(f"unknown length unit {unit!r}: use Bohr or Angstrom")
    return u


@dataclasses.dataclass(frozen=True)
class DeePKSSystem:
    """Frames of one composition read from (or to be written to) a DeePKS-kit folder.

    Attributes:
        symbols: element symbols, length natoms (the same for all frames).
        coords: [nframes, natoms, 3] positions in **Bohr** (converted on reading).
        energy: [nframes] total energies (Hartree) or None.
        force: [nframes, natoms, 3] forces (Hartree/Bohr) or None.
        dm: [nframes, nao, nao] density matrices or None.
        unit: the unit the positions were stored in on disk ("Bohr" or "Angstrom").
    """

    symbols: tuple[str, ...]
    coords: np.ndarray
    energy: np.ndarray | None = None
    force: np.ndarray | None = None
    dm: np.ndarray | None = None
    unit: str = "Bohr"

    @property
    def n_frames(self) -> int:
        return int(self.coords.shape[0])

    def systems(self, **system_kwargs) -> list[System]:
        """One :class:`System` per frame (``system_kwargs``: basis, auxbasis, grid_level, charge)."""
        return [System(self.symbols, c, **system_kwargs) for c in self.coords]


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"DeePKS-kit folder: cannot read {name} ({path}): it is damaged or "
                         f"truncated ({err})") from err


def read_deepks_system(folder) -> DeePKSSystem:
    """Read a DeePKS-kit system folder (see the module docstring for the layout).

    Positions are converted to Bohr using ``unit.raw`` (Bohr when absent). Labels that are
    missing come back as None.

    Raises:
        InputError: missing geometry, inconsistent shapes, damaged files, unknown unit.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder!r} is not a DeePKS-kit system folder (not a directory)")
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    if os.path.exists(p("box.npy")) and not os.path.exists(p("nopbc")):
        # DeePMD/dpdata's periodic frames: reading them as clusters would drop the cell
        raise InputError(f"{folder}: box.npy holds periodic cells; periodic DeePKS-kit folders "
                         "are not supported yet (convert the frames to extended xyz with "
                         "Lattice=\"...\")")
    unit = "Bohr"
    if os.path.exists(p("unit.raw")):
        with open(p("unit.raw")) as f:
            words = f.read().split()
        if words:
            unit = normalize_unit(words[0])
    if os.path.exists(p("atom.npy")):
        atom = _load(p("atom.npy"), "atom.npy")
        if atom.ndim != 3 or atom.shape[2] != 4:
            raise InputError(f"{p('atom.npy')}: expected shape [nframes, natoms, 4] "
                             f"(Z, x, y, z), got {atom.shape}")
        z = np.rint(atom[:, :, 0]).astype(int)
        if np.any(z != z[:1]):
            raise InputError(f"{p('atom.npy')}: frames have different elements; a DeePKS-kit "
                             "system folder holds one composition")
        symbols = tuple(normalize_symbol(int(v)) for v in z[0])
        coords = atom[:, :, 1:].astype(np.float64)
    elif os.path.exists(p("coord.npy")):
        coords = _load(p("coord.npy"), "coord.npy").astype(np.float64)
        if coords.ndim == 2:  # [nframes, natoms*3] as DeePMD writes it
            coords = coords.reshape(coords.shape[0], -1, 3)
        if not os.path.exists(p("type.raw")):
            raise InputError(f"{folder}: coord.npy needs type.raw with the element symbols")
        with open(p("type.raw")) as f:
            symbols = tuple(normalize_symbol(s) for s in f.read().split())
        if coords.ndim != 3 or coords.shape[1:] != (len(symbols), 3):
            raise InputError(f"{p('coord.npy')}: expected shape [nframes, {len(symbols)}, 3] "
                             f"(type.raw lists {len(symbols)} atoms), got {coords.shape}")
    else:
        raise InputError(f"{folder}: not a DeePKS-kit system folder (no atom.npy or coord.npy)")
    if unit == "Angstrom":
        coords = coords * BOHR_PER_ANGSTROM
    nf, na = coords.shape[:2]
    energy = force = dm = None
    if os.path.exists(p("energy.npy")):
        energy = _load(p("energy.npy"), "energy.npy").astype(np.float64).reshape(-1)
        if energy.shape != (nf,):
            raise InputError(f"{p('energy.npy')}: expected {nf} energies, got {energy.size}")
    if os.path.exists(p("force.npy")):
        force = _load(p("force.npy"), "force.npy").astype(np.float64)
        if force.size != nf * na * 3:
            raise InputError(f"{p('force.npy')}: expected shape [{nf}, {na}, 3], got {force.shape}")
        force = force.reshape(nf, na, 3)
    if os.path.exists(p("dm.npy")):
        dm = _load(p("dm.npy"), "dm.npy").astype(np.float64)
        if dm.ndim != 3 or dm.shape[0] != nf or dm.shape[1] != dm.shape[2]:
            raise InputError(f"{p('dm.npy')}: expected shape [{nf}, nao, nao], got {dm.shape}")
    return DeePKSSystem(symbols, coords, energy, force, dm, unit)


def _save(folder: str, name: str, array) -> None:
    """np.save to a temporary name then os.replace: no half-written file after a crash."""
    path = os.path.join(folder, name)
    tmp = f"{path}.tmp{os.getpid()}.npy"
    np.save(tmp, np.asarray(array))
    os.replace(tmp, path)


def _write_text(folder: str, name: str, text: str) -> None:
    path = os.path.join(folder, name)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_deepks_system(folder, symbols, coords_bohr, energy=None, force=None, dm=None,
                        unit: str = "Angstrom", layout: str = "atom",
                        extra: dict | None = None) -> None:
    """Write a DeePKS-kit system folder.

    Args:
        folder: output directory (created).
        symbols: element symbols, length natoms.
        coords_bohr: [nframes, natoms, 3] positions in **Bohr** (converted to ``unit`` on disk).
        energy: [nframes] or [nframes, 1] total energies (Hartree) -> energy.npy [nframes, 1].
        force: [nframes, natoms, 3] forces (Hartree/Bohr) -> force.npy.
        dm: [nframes, nao, nao] density matrices -> dm.npy.
        unit: "Angstrom" (default) or "Bohr"; always recorded in unit.raw.
        layout: "atom" (atom.npy with Z in column 0) or "coord" (coord.npy + type.raw).
        extra: more arrays to save as ``<name>.npy`` (e.g. e_base, f_base).
    Raises:
        InputError: inconsistent shapes or unknown unit/layout.
    """
    folder = os.fspath(folder)
    unit = normalize_unit(unit)
    symbols = tuple(normalize_symbol(s) for s in symbols)
    coords = np.asarray(coords_bohr, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[1:] != (len(symbols), 3):
        raise InputError(f"coordinates must have shape [nframes, {len(symbols)}, 3], "
                         f"got {coords.shape}")
    nf = coords.shape[0]
    stored = coords * ANGSTROM_PER_BOHR if unit == "Angstrom" else coords
    os.makedirs(folder, exist_ok=True)
    if layout == "atom":
        from pyscf.data import elements

        z = np.array([elements.charge(s) for s in symbols], dtype=np.float64)
        atom = np.concatenate([np.broadcast_to(z[None, :, None], (nf, len(symbols), 1)), stored],
                              axis=2)
        _save(folder, "atom.npy", atom)
    elif layout == "coord":
        _save(folder, "coord.npy", stored)
        _write_text(folder, "type.raw", "\n".join(symbols) + "\n")
    else:
        raise InputError(f"unknown DeePKS-kit layout {layout!r}: use 'atom' or 'coord'")
    _write_text(folder, "unit.raw", unit + "\n")
    if energy is not None:
        energy = np.asarray(energy, dtype=np.float64).reshape(-1)
        if energy.shape != (nf,):
            raise InputError(f"expected {nf} energies, got {energy.size}")
        _save(folder, "energy.npy", energy.reshape(nf, 1))
    if force is not None:
        force = np.asarray(force, dtype=np.float64)
        if force.shape != coords.shape:
            raise InputError(f"forces must have shape {coords.shape}, got {force.shape}")
        _save(folder, "force.npy", force)
    if dm is not None:
        dm = np.asarray(dm, dtype=np.float64)
        if dm.ndim != 3 or dm.shape[0] != nf or dm.shape[1] != dm.shape[2]:
            raise InputError(f"density matrices must have shape [{nf}, nao, nao], got {dm.shape}")
        _save(folder, "dm.npy", dm)
    for name, arr in (extra or {}).items():
        _save(folder, f"{name}.npy", arr)


def write_deepks_descriptors(folder, dm_eig, l_e_delta, l_f_delta=None, conv=None,
                             extra: dict | None = None) -> None:
    """Write DeePKS-kit descriptor/label outputs for one system folder.

    Args:
        dm_eig: [nframes, natoms, nproj] descriptors (eigenvalues of the projected density
            matrices; nproj = 108 for the default projector basis) -> dm_eig.npy.
        l_e_delta: [nframes] or [nframes, 1], E_ref − E_base (Hartree) -> l_e_delta.npy [nframes, 1].
        l_f_delta: [nframes, natoms, 3], F_ref − F_base (Hartree/Bohr) -> l_f_delta.npy.
        conv: [nframes] or [nframes, 1] bool, SCF converged -> conv.npy [nframes, 1].
        extra: more arrays saved as ``<name>.npy`` (e.g. e_base, e_tot, f_base).
    Raises:
        InputError: inconsistent frame counts or shapes.
    """
    folder = os.fspath(folder)
    dm_eig = np.asarray(dm_eig, dtype=np.float64)
    if dm_eig.ndim != 3:
        raise InputError(f"dm_eig must have shape [nframes, natoms, nproj], got {dm_eig.shape}")
    nf, na = dm_eig.shape[:2]
    l_e = np.asarray(l_e_delta, dtype=np.float64).reshape(-1)
    if l_e.shape != (nf,):
        raise InputError(f"l_e_delta: expected {nf} values, got {l_e.size}")
    os.makedirs(folder, exist_ok=True)
    _save(folder, "dm_eig.npy", dm_eig)
    _save(folder, "l_e_delta.npy", l_e.reshape(nf, 1))
    if l_f_delta is not None:
        l_f = np.asarray(l_f_delta, dtype=np.float64)
        if l_f.shape != (nf, na, 3):
            raise InputError(f"l_f_delta must have shape [{nf}, {na}, 3], got {l_f.shape}")
        _save(folder, "l_f_delta.npy", l_f)
    if conv is not None:
        c = np.asarray(conv, dtype=bool).reshape(-1)
        if c.shape != (nf,):
            raise InputError(f"conv: expected {nf} flags, got {c.size}")
        _save(folder, "conv.npy", c.reshape(nf, 1))
    for name, arr in (extra or {}).items():
        _save(folder, f"{name}.npy", arr)


# --------------------------------------------------------------------------- export
def _export_groups(dataset, keys, include_unconverged: bool):
    """(dataset, group, stacked ``keys``) of every group of ``dataset`` (a folder or
    :class:`Dataset`) with frames to export: those whose base and target SCF converged, or all
    with ``include_unconverged``; ``data["index"]`` holds their frame indices."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    for group in ds.groups:
        if ds.group_info(group).get("periodic"):
            # DeePKS-kit's periodic folders (box.npy) are not written: a box must not be
            # exported as a cluster
            raise InputError(f"{ds.folder}: group {group} holds periodic cells; exporting "
                             "periodic frames to DeePKS-kit folders is not supported")
        data = ds.stack(group, keys, converged_only=not include_unconverged)
        if len(data["index"]):
            yield ds, group, data


def export_deepkskit(dataset, out, unit: str = "Angstrom", layout: str = "atom",
                     include_unconverged: bool = False) -> dict[str, int]:
    """Write every group of a labelled dataset as a DeePKS-kit system folder ``out/<group>``.

    The *target* labels become the reference data (``energy.npy``, ``force.npy``, ``dm.npy``);
    the base labels are added as ``e_base.npy`` [nframes, 1] and ``f_base.npy``
    [nframes, natoms, 3], and the frame indices as ``frame_index.npy``. Frames whose base or
    target SCF did not converge are left out unless ``include_unconverged``.

    Args:
        dataset: a dataset folder or :class:`Dataset`.
        out: output folder (one subfolder per group).
        unit: coordinate unit on disk, "Angstrom" (default, what DeePKS-kit assumes) or "Bohr".
        layout: "atom" (atom.npy) or "coord" (coord.npy + type.raw).
    Returns:
        {group: number of frames written}.
    """
    keys = ["coords", "target/energy", "target/forces", "target/dm", "base/energy",
            "base/forces"]
    written = {}
    for ds, group, data in _export_groups(dataset, keys, include_unconverged):
        nf = len(data["index"])
        symbols = ds.group_info(group)["symbols"]
        write_deepks_system(os.path.join(os.fspath(out), group), symbols, data["coords"],
                            energy=data["target/energy"], force=data["target/forces"],
                            dm=data["target/dm"], unit=unit, layout=layout,
                            extra=dict(e_base=data["base/energy"].reshape(nf, 1),
                                       f_base=data["base/forces"], frame_index=data["index"]))
        written[group] = nf
    return written


def export_descriptors(dataset, out, basis: ProjectorBasis | None = None,
                       include_unconverged: bool = False) -> dict[str, int]:
    """Write dm_eig / l_e_delta / l_f_delta / conv for every group into ``out/<group>``: next to
    the system files of :func:`export_deepkskit`, DeePKS-kit's training inputs

        dm_eig.npy     [nframes, natoms, nproj]  descriptors of the *base* SCF density
                       (ascending eigenvalues of P^Iᵀ Γ_base P^I per shell, DeePKS-kit order)
        l_e_delta.npy  [nframes, 1]              E_target − E_base (Hartree)
        l_f_delta.npy  [nframes, natoms, 3]      F_target − F_base (Hartree/Bohr)
        conv.npy       [nframes, 1]              base SCF converged

    Args:
        dataset: dataset folder or :class:`jaxks.data.store.Dataset`.
        out: output folder (the same one ``export_deepkskit`` writes system files to).
        basis: projector basis (default: DeePKS-kit's 108-function set).
    Returns:
        {group: frames written}.
    """
    # the DeePKS layer (Flax) loads only here, not for reading or writing DeePKS-kit folders
    # (``jaxks label`` of a DeePKS-kit input, ``jaxks export`` without ``--descriptors``)
    import jax.numpy as jnp

    from jaxks.deepks.descriptors import descriptors
    from jaxks.integrals.projectors import default_basis, projector_overlaps

    basis = basis or default_basis()
    keys = ["atomic_numbers", "coords", "charge", "base/dm", "base/energy", "target/energy",
            "base/forces", "target/forces", "base/converged"]
    written = {}
    for ds, group, data in _export_groups(dataset, keys, include_unconverged):
        nf = len(data["index"])
        dm_eig = []
        for k in range(nf):
            labels = {key: data[key][k] for key in ("atomic_numbers", "coords", "charge")}
            mol = label_system(labels, ds.settings).to_pyscf()
            dm_eig.append(np.asarray(descriptors(jnp.asarray(data["base/dm"][k]),
                                                 projector_overlaps(mol, basis))))
        write_deepks_descriptors(
            os.path.join(os.fspath(out), group), np.stack(dm_eig),
            data["target/energy"] - data["base/energy"],
            l_f_delta=data["target/forces"] - data["base/forces"], conv=data["base/converged"])
        written[group] = nf
    return written

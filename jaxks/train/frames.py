"""Training frames: one labelled geometry turned into the arrays a jitted loss needs.

For each frame we compute once (PySCF, host side): the SCF integrals, the force integrals (only
when the force loss is on), the DeePKS projector overlaps and their derivatives, and we collect
the target labels. Frames of one composition are padded to a common grid size so that a single
compiled loss serves all of them (the number of compilations is the number of compositions).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.data.labels import label_system
from jaxks.deepks.model import element_onehot
from jaxks.integrals.projectors import ProjectorBasis, projector_derivatives, projector_overlaps
from jaxks.forces import ForceIntegrals, force_integrals
from jaxks.integrals import Integrals, compute_integrals, pyscf_system
from jaxks.system import System
from jaxks.train.losses import OrbitalWindow, default_window, group_mask

TARGET_KEYS = ("energy", "forces", "fock", "mo_energy", "mo_coeff", "dm")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Frame:
    """Everything one frame's loss needs (a pytree; composition-dependent sizes are static).

    Attributes:
        ints: SCF integrals (grid padded to the composition's common size).
        fints: force integrals, or None when the force loss is off.
        overlaps: projector overlaps P [nao, natm, nproj].
        proj_derivs: projector derivative integrals, or None when the force loss is off.
        onehot: [natm, n_elements] element of each atom in the model's element table.
        target: dict of target labels: energy [], forces [natm, 3], fock [nao, nao],
            mo_energy [n_mo], mo_coeff [nao, n_mo], gamma [nao, nao], overlap [nao, nao],
            group_mask [window, window].
        window: orbital window (static).
        n_atoms: number of atoms (static).
    """

    ints: Integrals
    fints: ForceIntegrals | None
    overlaps: jax.Array
    proj_derivs: object
    onehot: jax.Array
    target: dict
    window: OrbitalWindow = dataclasses.field(metadata=dict(static=True),
                                              default=OrbitalWindow(0, 0))
    n_atoms: int = dataclasses.field(metadata=dict(static=True), default=0)


@dataclasses.dataclass
class FrameRecord:
    """A frame plus host-side bookkeeping (not part of any jitted computation)."""

    frame: Frame
    system: System
    key: str                 # composition key: frames with the same key share compiled code
    base: dict               # base-functional labels (NumPy), for evaluation and warm starts
    source: str = ""


def composition_key(system: System, nao: int) -> str:
    return f"{system.formula}-nao{nao}"


def pad_grid(ints: Integrals, n_grid: int) -> Integrals:
    """Pad the integration grid with zero-weight points up to ``n_grid`` (a multiple of the
    block size); the energy and potential are unchanged."""
    extra = n_grid - ints.n_grid
    if extra == 0:
        return ints
    if extra < 0 or n_grid % ints.block_size:
        raise ValueError(f"cannot pad a grid of {ints.n_grid} points to {n_grid}")
    coords = jnp.concatenate([ints.grid_coords,
                              jnp.repeat(ints.atom_coords[:1], extra, axis=0)])
    weights = jnp.concatenate([ints.grid_weights, jnp.zeros(extra)])
    return dataclasses.replace(ints, grid_coords=coords, grid_weights=weights)


def _base_omega(name: str) -> float:
    """ω of the short-range exchange tensor a hybrid base functional needs (0.0: none, or a name
    jaxks does not know — training then stops with the registry's message)."""
    from jaxks.exchange import sr_omega
    from jaxks.xc import get_xc

    try:
        return sr_omega(get_xc(name))
    except ValueError:
        return 0.0


def prepare_frames(label_frames: Sequence[dict], settings, basis: ProjectorBasis,
                   elements: Sequence[str], *, n_virtual: int = 1, include_core: bool = False,
                   with_forces: bool = True, block_size: int = 1024,
                   sources: Sequence[str] | None = None) -> list[FrameRecord]:
    """Turn label dicts (see :mod:`jaxks.data.labels`) into :class:`FrameRecord` s.

    Args:
        label_frames: one dict of label arrays per frame.
        settings: the :class:`jaxks.data.labels.LabelSettings` the labels were made with (the
            same basis, auxiliary basis and grid are used here).
        basis: projector basis of the model.
        elements: the model's element table (for per-element constants).
        with_forces: compute the force and projector derivative integrals. A periodic frame
            (``lattice`` in its labels; no force labels) needs ``with_forces=False``
            (InputError otherwise); it gets the cell's screened Γ-point integrals and its own
            bucket key (the screen and image basis depend on the geometry).
        block_size: grid block size (fixed, so padded sizes are comparable).
    """
    records = []
    omega = _base_omega(settings.base)
    for k, labels in enumerate(label_frames):
        system = label_system(labels, settings)
        if system.lattice is not None:
            # periodic frames (jaxks label at Γ) carry NaN forces and need the cell's AO screen
            from jaxks.system import InputError

            if with_forces:
                raise InputError(f"frame {k} ({system.formula}) is a periodic cell: it has no "
                                 "force labels (PySCF has no Γ-point GDF gradients); train "
                                 "without a force term")
            # a cell sums AO images through the screen, whose shapes depend on the geometry:
            # each periodic frame is its own bucket (its own key below)
            mol = pyscf_system(system)
            ints = compute_integrals(system, block_size=block_size, omega=omega)
            fints = None
        else:
            mol = system.to_pyscf()
            # unscreened: the AO screen's padded shapes depend on the geometry, and the frames
            # of one bucket are stacked into one array per field (one compiled step per
            # composition)
            ints = compute_integrals(system, block_size=block_size, ao_cutoff=None,
                                     pair_cutoff=None, omega=omega)
            # from the Mole, not the System: no grid geometry (no grid response in training)
            fints = force_integrals(mol, settings.auxbasis, omega=omega) if with_forces else None
        pdata = projector_overlaps(mol, basis)
        pder = projector_derivatives(mol, basis) if with_forces else None
        z = system.atomic_numbers
        window = default_window(z, ints.n_occ, n_virtual, include_core)
        t = {key: np.asarray(labels[f"target/{key}"]) for key in TARGET_KEYS}
        target = dict(energy=jnp.asarray(t["energy"], jnp.float64), forces=jnp.asarray(t["forces"]),
                      fock=jnp.asarray(t["fock"]), mo_energy=jnp.asarray(t["mo_energy"]),
                      mo_coeff=jnp.asarray(t["mo_coeff"]), gamma=jnp.asarray(t["dm"]),
                      overlap=jnp.asarray(labels["overlap"]),
                      group_mask=jnp.asarray(group_mask(t["mo_energy"], window)))
        base = {key: np.asarray(labels[f"base/{key}"])
                for key in TARGET_KEYS + ("converged", "cycles")}
        frame = Frame(ints=ints, fints=fints, overlaps=jnp.asarray(pdata.overlaps),
                      proj_derivs=pder,
                      onehot=jnp.asarray(element_onehot(system.symbols, elements)
                                         if len(elements) else np.zeros((system.n_atoms, 0))),
                      target=target, window=window, n_atoms=system.n_atoms)
        key = composition_key(system, ints.nao)
        if system.lattice is not None:
            key += f"-cell{k}"
        records.append(FrameRecord(frame, system, key, base,
                                   sources[k] if sources else ""))
    # one grid size per composition: one compiled loss per composition
    largest: dict[str, int] = {}
    for r in records:
        largest[r.key] = max(largest.get(r.key, 0), r.frame.ints.n_grid)
    for r in records:
        r.frame = dataclasses.replace(r.frame, ints=pad_grid(r.frame.ints, largest[r.key]))
    return records


def load_records(folders: Sequence[str], basis: ProjectorBasis, elements: Sequence[str], *,
                 n_virtual: int = 1, include_core: bool = False, with_forces: bool = True,
                 max_frames: int = 0, skip_unconverged: bool = True,
                 progress=None) -> list[FrameRecord]:
    """Read labelled dataset folders (``jaxks label`` output) and prepare their frames.

    Frames whose base or target labels did not converge are left out (and reported on
    ``progress``) when ``skip_unconverged``. All folders must share one set of label settings.
    """
    from jaxks.data.store import Dataset
    from jaxks.system import InputError

    labels, sources, settings = [], [], None
    for folder in folders:
        ds = Dataset(folder)
        if settings is not None and ds.settings != settings:
            raise InputError(f"{folder} was labelled with other settings than {folders[0]}: "
                             + "; ".join(settings.differences(ds.settings)))
        settings = ds.settings
        dropped = 0
        for i in ds.indices:
            arrays, _ = ds.frame(i)
            if skip_unconverged and not (bool(arrays["base/converged"])
                                         and bool(arrays["target/converged"])):
                dropped += 1
                continue
            labels.append(arrays)
            sources.append(f"{folder}#{i}")
            if max_frames and len(labels) >= max_frames:
                break
        if dropped and progress is not None:
            progress.write(f"{folder}: {dropped} frame(s) with unconverged labels left out\n")
    if settings is None:
        raise InputError("no dataset folders given")
    return prepare_frames(labels, settings, basis, elements, n_virtual=n_virtual,
                          include_core=include_core, with_forces=with_forces, sources=sources)

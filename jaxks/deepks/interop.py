"""DeePKS-kit descriptor and label files from a labelled dataset.

For every composition group of a dataset (``jaxks label`` output) this writes, next to the system
files of :func:`jaxks.data.pipeline.export_deepkskit`, DeePKS-kit's training inputs:

    dm_eig.npy     [nframes, natoms, nproj]  descriptors of the *base* SCF density
                   (ascending eigenvalues of P^Iᵀ Γ_base P^I per shell, DeePKS-kit order)
    l_e_delta.npy  [nframes, 1]              E_target − E_base (Hartree)
    l_f_delta.npy  [nframes, natoms, 3]      F_target − F_base (Hartree/Bohr)
    conv.npy       [nframes, 1]              base SCF converged
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from jaxks.deepks.descriptors import descriptors
from jaxks.deepks.projectors import ProjectorBasis, default_basis, projector_overlaps


def export_descriptors(dataset, out, basis: ProjectorBasis | None = None,
                       include_unconverged: bool = False) -> dict[str, int]:
    """Write dm_eig / l_e_delta / l_f_delta / conv for every group into ``out/<group>``.

    Args:
        dataset: dataset folder or :class:`jaxks.data.store.Dataset`.
        out: output folder (the same one ``export_deepkskit`` writes system files to).
        basis: projector basis (default: DeePKS-kit's 108-function set).
    Returns:
        {group: frames written}.
    """
    from jaxks.data.deepkskit import write_deepks_descriptors
    from jaxks.data.store import Dataset
    from jaxks.train.frames import label_system

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    basis = basis or default_basis()
    keys = ["atomic_numbers", "coords", "charge", "base/dm", "base/energy", "target/energy",
            "base/forces", "target/forces", "base/converged"]
    written = {}
    for group in ds.groups:
        data = ds.stack(group, keys, converged_only=not include_unconverged)
        nf = len(data["index"])
        if nf == 0:
            continue
        dm_eig = []
        for k in range(nf):
            mol = label_system({key: data[key][k] for key in ("atomic_numbers", "coords", "charge")},
                               ds.settings).to_pyscf()
            dm_eig.append(np.asarray(descriptors(jnp.asarray(data["base/dm"][k]),
                                                 projector_overlaps(mol, basis))))
        write_deepks_descriptors(
            os.path.join(os.fspath(out), group), np.stack(dm_eig),
            data["target/energy"] - data["base/energy"],
            l_f_delta=data["target/forces"] - data["base/forces"], conv=data["base/converged"])
        written[group] = nf
    return written

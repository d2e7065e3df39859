"""Small built-in water datasets: the shipped geometries (:mod:`jaxks.data.builtin`) as
systems, and their labels, made on demand.

Label one with ``jaxks label builtin:water_dimers --out data/dimers`` or
:func:`builtin_labels`; ``python -m jaxks.data.datasets`` regenerates the shipped xyz files.
"""

from __future__ import annotations

import os

from jaxks.data.builtin import BUILTIN, BUILTIN_DIR, builtin_path
from jaxks.data.labels import LabelSettings
from jaxks.data.pipeline import label_frames
from jaxks.data.readers import read_xyz_frames
from jaxks.data.store import Dataset
from jaxks.system import System


def builtin_frames(name: str, **system_kwargs) -> list[System]:
    """The geometries of built-in set ``name`` (``system_kwargs``: basis, auxbasis, grid_level).

    Raises:
        InputError: no such set.
    """
    return read_xyz_frames(builtin_path(name), **system_kwargs)


def builtin_labels(name: str, out, settings=None, workers: int = 1, progress=None):
    """Label built-in set ``name`` into dataset folder ``out`` (resumes if already there).

    Returns:
        :class:`jaxks.data.store.Dataset` of the labelled frames.
    """
    label_frames(builtin_frames(name), out, settings or LabelSettings(), workers=workers,
                 progress=progress, source=f"builtin:{name}")
    return Dataset(out)


def regenerate() -> None:  # pragma: no cover - maintenance
    """Rewrite the shipped xyz files from their seeds."""
    from jaxks.data.sampling import sample_water, write_frames_xyz

    os.makedirs(BUILTIN_DIR, exist_ok=True)
    for name, (n, frames, seed) in BUILTIN.items():
        write_frames_xyz(sample_water(n, frames, seed=seed), builtin_path(name))


if __name__ == "__main__":  # pragma: no cover
    regenerate()

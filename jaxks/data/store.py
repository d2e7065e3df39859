"""The on-disk format of labelled datasets, and lazy reading for the trainer.

Layout of a dataset folder (``jaxks label ... --out data/w4``)::

    data/w4/
      dataset.json            manifest: format name/version, the LabelSettings, units and
                              shapes of every array, jaxks/PySCF versions, creation time
      H4O2/                   one folder per *group*: frames with the same atoms in the same
        group.json            order and the same charge (symbols, Z, charge)
        frame_000000.npz      one file per frame, named by the frame's index in the input
        frame_000003.npz
      H6O3/ ...

Group folders are named by the Hill formula (``H4O2``), with ``_q+1``/``_q-1`` for charged
systems, ``_pbc`` for periodic cells (``group.json``: ``periodic: true``; the frames hold their
``lattice``) and a short hash when the same formula appears with a different atom order.

Each ``frame_NNNNNN.npz`` is a plain NumPy ``.npz`` (a zip of ``.npy`` files) holding the
label arrays of :mod:`jaxks.data.labels` (``coords``, ``overlap``, ``base/energy``,
``target/fock``, ...) and a ``__header__`` entry: UTF-8 JSON with the format name and
version, the frame index, group, source, element symbols, the settings that produced the
labels, the converged flags, units and shapes of every array, and a SHA-256 checksum over all
arrays. Everything needed to interpret a frame is inside the frame file itself.

Why one file per frame (rather than one file per group):

* atomic: a frame is written to a temporary name and ``os.replace``-d into place, so a killed
  run never leaves a half-written frame, and finished frames are never rewritten;
* resumable: a restarted run skips every frame whose file exists and verifies;
* parallel: worker processes write their own frames, no shared file, no locks;
* lazy: the trainer opens only the frames it needs (:class:`Dataset`), a few MB each;
* a group folder maps one-to-one onto a DeePKS-kit system folder on export.

A file that is truncated or damaged fails the zip CRC/structure or the checksum and raises
:class:`DataFileError` naming the file.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import zipfile
from typing import Iterator

import numpy as np

from jaxks.fileio import array_checksum
from jaxks.data.labels import FRAME_KEYS, SHAPES, UNITS, LabelSettings
from jaxks.system import InputError, normalize_symbol

FORMAT_NAME = "jaxks-labelled-frames"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
GROUP_FILE = "group.json"
_HEADER = "__header__"
_FRAME_RE = re.compile(r"^frame_(\d{6,})\.npz$")
_TMP_RE = re.compile(r"^\.frame_\d+\.npz\.tmp(\d+)$")


class DataFileError(InputError):
    """A dataset file that is missing, truncated, damaged, or inconsistent with the dataset."""


# --------------------------------------------------------------------------- names
def hill_formula(symbols) -> str:
    """Hill-order formula: C, H first when carbon is present, else alphabetical (``H4O2``)."""
    counts: dict[str, int] = {}
    for s in symbols:
        s = normalize_symbol(s)
        counts[s] = counts.get(s, 0) + 1
    order = (["C", "H"] if "C" in counts else []) + sorted(k for k in counts
                                                            if "C" not in counts or k not in "CH")
    order = [k for k in order if k in counts]
    return "".join(f"{k}{counts[k] if counts[k] > 1 else ''}" for k in order)


def group_base_name(symbols, charge: int) -> str:
    name = hill_formula(symbols)
    return name + (f"_q{charge:+d}" if charge else "")


def frame_filename(index: int) -> str:
    return f"frame_{index:06d}.npz"


# --------------------------------------------------------------------------- checksums / header
checksum = array_checksum  # SHA-256 over (name, dtype, shape, bytes), sorted by name


def _units_of(key: str) -> str:
    return UNITS.get(key.split("/")[-1], "")


def _shape_of(key: str) -> str:
    return SHAPES.get(key.split("/")[-1], "")


# --------------------------------------------------------------------------- frame files
def write_frame(path, arrays: dict, header: dict) -> None:
    """Write one frame atomically (temporary file + fsync + ``os.replace``).

    Args:
        path: destination ``.../frame_NNNNNN.npz``.
        arrays: label arrays (:data:`jaxks.data.labels.FRAME_KEYS`).
        header: JSON-serialisable metadata; units, shapes, checksum and format are added.
    Raises:
        DataFileError: a required label is missing.
    """
    missing = [k for k in FRAME_KEYS if k not in arrays]
    if missing:
        raise DataFileError(f"labeller returned no {', '.join(missing)}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    header = dict(header, format=FORMAT_NAME, format_version=FORMAT_VERSION,
                  units={k: _units_of(k) for k in arrays},
                  shapes={k: list(v.shape) for k, v in arrays.items()},
                  checksum=checksum(arrays))
    payload = dict(arrays)
    payload[_HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    path = os.fspath(path)
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_frame(path, verify: bool = True) -> tuple[dict, dict]:
    """Read one frame file: ``(arrays, header)``.

    Args:
        verify: recompute the checksum (detects damage the zip CRC would miss).
    Raises:
        DataFileError: missing, truncated, damaged or foreign file (the message names it).
    """
    path = os.fspath(path)
    hint = "delete it and run the same `jaxks label` command again to recompute it"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataFileError(f"frame file {path} does not exist") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, zipfile.LargeZipFile,
            RuntimeError) as err:
        raise DataFileError(f"frame file {path} is truncated or damaged ({err}); {hint}") from None
    except Exception as err:  # zlib.error and friends from damaged members
        raise DataFileError(f"frame file {path} is truncated or damaged ({err}); {hint}") from None
    if _HEADER not in arrays:
        raise DataFileError(f"{path} is not a jaxks frame file (no header)")
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFileError(f"frame file {path}: damaged header ({err}); {hint}") from None
    if header.get("format") != FORMAT_NAME:
        raise DataFileError(f"{path} is not a jaxks frame file (format {header.get('format')!r})")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise DataFileError(f"{path} was written by a newer jaxks (format version "
                            f"{header['format_version']} > {FORMAT_VERSION}); upgrade jaxks")
    if verify and checksum(arrays) != header.get("checksum"):
        raise DataFileError(f"frame file {path} is damaged (checksum mismatch); {hint}")
    return arrays, header


# --------------------------------------------------------------------------- manifest
def manifest_dict(settings: LabelSettings, extra: dict | None = None) -> dict:
    import pyscf

    import jaxks

    return dict(format=FORMAT_NAME, format_version=FORMAT_VERSION,
                settings=settings.to_dict(),
                units={k: UNITS[k] for k in UNITS}, shapes={k: SHAPES[k] for k in SHAPES},
                keys=list(FRAME_KEYS), jaxks_version=jaxks.__version__,
                pyscf_version=pyscf.__version__,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                layout="<group>/frame_NNNNNN.npz, one file per frame; see jaxks/data/store.py",
                **(extra or {}))


def write_json(path, obj) -> None:
    """Atomic JSON write."""
    path = os.fspath(path)
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_manifest(folder) -> dict:
    """The ``dataset.json`` of a dataset folder.

    Raises:
        DataFileError: no dataset here, or a damaged manifest.
    """
    path = os.path.join(os.fspath(folder), MANIFEST)
    try:
        with open(path) as f:
            m = json.load(f)
    except FileNotFoundError:
        raise DataFileError(f"{os.fspath(folder)} is not a jaxks dataset (no {MANIFEST}); "
                            "create one with `jaxks label`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path} is damaged ({err})") from None
    if m.get("format") != FORMAT_NAME:
        raise DataFileError(f"{path} is not a jaxks dataset manifest")
    return m


def open_for_writing(folder, settings: LabelSettings, extra: dict | None = None) -> None:
    """Create the dataset folder, or check that an existing one has the same settings.

    Raises:
        DataFileError: the folder holds labels made with other settings (mixing is refused),
            or is a non-empty folder that is not a jaxks dataset.
    """
    folder = os.fspath(folder)
    if os.path.exists(os.path.join(folder, MANIFEST)):
        old = LabelSettings.from_dict(read_manifest(folder)["settings"])
        if old != settings:
            diff = "; ".join(old.differences(settings))
            raise DataFileError(
                f"{folder} already holds labels made with different settings ({diff}; "
                "existing vs requested). Refusing to mix them: label into a new --out "
                "folder, or repeat the command with the original settings to resume.")
        return
    if os.path.isdir(folder) and os.listdir(folder):
        raise DataFileError(f"{folder} exists, is not empty and is not a jaxks dataset; "
                            "choose a new --out folder")
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, MANIFEST), manifest_dict(settings, extra))


def clean_stale_temporaries(folder) -> int:
    """Remove temporary frame files left by killed runs (their writer process is gone)."""
    removed = 0
    for root, _dirs, files in os.walk(os.fspath(folder)):
        for name in files:
            m = _TMP_RE.match(name)
            if m and not _pid_alive(int(m.group(1))):
                try:
                    os.remove(os.path.join(root, name))
                    removed += 1
                except OSError:
                    pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- lazy reading
class Dataset:
    """Lazy read access to a labelled dataset folder.

    Opening lists the frame files only; arrays are read when asked for. Example::

        ds = Dataset("data/w4")
        ds.settings                    # LabelSettings
        ds.groups                      # {"H4O2": [0, 1, 2, ...], ...} frame indices per group
        arrays, header = ds.frame(3)   # dict of arrays of frame 3, its header
        batch = ds.stack("H4O2", ["coords", "target/energy"])   # {"coords": [nf, natoms, 3], ...}

    Raises:
        DataFileError: not a dataset, or (when reading) a damaged frame file.
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.manifest = read_manifest(self.folder)
        self.settings = LabelSettings.from_dict(self.manifest["settings"])
        self._paths: dict[int, str] = {}
        self.groups: dict[str, list[int]] = {}
        for g in sorted(os.listdir(self.folder)):
            gdir = os.path.join(self.folder, g)
            if not os.path.isdir(gdir):
                continue
            idx = sorted(int(m.group(1)) for m in map(_FRAME_RE.match, os.listdir(gdir)) if m)
            if idx:
                self.groups[g] = idx
                for i in idx:
                    self._paths[i] = os.path.join(gdir, frame_filename(i))

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def indices(self) -> list[int]:
        """Frame indices present, ascending."""
        return sorted(self._paths)

    def path(self, index: int) -> str:
        try:
            return self._paths[index]
        except KeyError:
            raise DataFileError(f"{self.folder} has no frame {index}") from None

    def frame(self, index: int, verify: bool = True) -> tuple[dict, dict]:
        """(arrays, header) of frame ``index`` (see :func:`read_frame`)."""
        return read_frame(self.path(index), verify=verify)

    def __iter__(self) -> Iterator[tuple[int, dict, dict]]:
        for i in self.indices:
            yield (i, *self.frame(i))

    def group_info(self, group: str) -> dict:
        with open(os.path.join(self.folder, group, GROUP_FILE)) as f:
            return json.load(f)

    def stack(self, group: str, keys, converged_only: bool = False) -> dict:
        """Arrays of ``keys`` for every frame of ``group``, stacked on a new leading axis.

        Adds ``"index"`` (frame indices). With ``converged_only``, frames whose base or target
        SCF did not converge are left out.
        """
        if group not in self.groups:
            raise DataFileError(f"{self.folder} has no group {group!r}; it has {sorted(self.groups)}")
        rows, idx = [], []
        for i in self.groups[group]:
            arrays, _ = self.frame(i)
            if converged_only and not (arrays["base/converged"] and arrays["target/converged"]):
                continue
            rows.append([arrays[k] for k in keys])
            idx.append(i)
        out = {k: np.stack([r[j] for r in rows]) if rows else np.zeros((0,))
               for j, k in enumerate(keys)}
        out["index"] = np.array(idx, dtype=np.int64)
        return out

    def verify(self) -> list[str]:
        """Read and checksum every frame; return the problems found (empty when all is well)."""
        problems = []
        for i in self.indices:
            try:
                self.frame(i)
            except DataFileError as err:
                problems.append(str(err))
        return problems


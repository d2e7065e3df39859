"""Reading user geometries: (extended) xyz, DeePKS-kit system folders, built-in sets, and ASE.

:func:`read_frames` is the single entry point the CLI uses; it returns ``list[System]``
(coordinates in Bohr inside, as everywhere in jaxks).

* ``*.xyz`` / ``*.extxyz``: any number of frames, Angstrom. The extended-xyz comment line may
  carry ``key=value`` pairs; ``charge=`` sets the frame's charge, ``Properties=`` is honoured
  when species and positions are not the first four columns.
* a directory: a DeePKS-kit system folder (``atom.npy`` or ``coord.npy`` + ``type.raw``,
  ``unit.raw``), see :mod:`jaxks.data.deepkskit`.
* ``builtin:NAME``: a geometry set shipped with jaxks (:func:`jaxks.data.datasets.builtin_frames`).
* anything else: ``ase.io.read(path, index=":")`` when ASE is installed.
"""

from __future__ import annotations

import os
import re

import numpy as np

from jaxks.system import InputError, System, normalize_symbol, parse_xyz_frame

_KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_comment(comment: str) -> dict:
    """``key=value`` pairs of an extended-xyz comment line (quotes removed; values as strings)."""
    return {k: v.strip('"') for k, v in _KV.findall(comment)}


def _properties_columns(props: str):
    """Columns of species and pos from ``Properties=name:type:count:...``; None if absent."""
    fields = props.split(":")
    if len(fields) % 3:
        return None
    col, species, pos = 0, None, None
    for name, _typ, count in zip(fields[0::3], fields[1::3], fields[2::3]):
        if name == "species":
            species = col
        elif name == "pos":
            pos = col
        col += int(count)
    return (species, pos) if species is not None and pos is not None else None


def read_xyz_frames(path, with_info: bool = False, **system_kwargs):
    """All frames of an (extended) xyz file as :class:`System` objects (input in Angstrom).

    Args:
        path: xyz file.
        with_info: also return the parsed comment line of every frame.
        system_kwargs: passed to :class:`System` (basis, auxbasis, grid_level, charge); a
            ``charge=`` on a comment line overrides ``charge``.
    Returns:
        ``list[System]``, or ``list[tuple[System, dict]]`` with ``with_info``.
    Raises:
        InputError: unreadable or malformed file (the message names file and line).
    """
    source = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read xyz file {source!r}: {err}") from err
    out, start = [], 0
    while start < len(lines):
        if not lines[start].strip():  # blank lines between or after frames
            start += 1
            continue
        comment = lines[start + 1] if start + 1 < len(lines) else ""
        info = parse_comment(comment)
        cols = _properties_columns(info.get("Properties", "species:S:1:pos:R:3"))
        if cols is not None and cols != (0, 1):
            symbols, coords, nxt = _parse_custom_columns(lines, start, cols, source)
        else:
            symbols, coords, nxt = parse_xyz_frame(lines, source=source, start=start)
        kwargs = dict(system_kwargs)
        if "charge" in info:
            try:
                kwargs["charge"] = int(info["charge"])
            except ValueError:
                raise InputError(f"{source}: line {start + 2}: charge={info['charge']!r} "
                                 "is not an integer") from None
        try:
            system = System.from_symbols(symbols, coords, **kwargs)
        except InputError as err:
            raise InputError(f"{source}: frame {len(out)} (line {start + 1}): {err}") from None
        out.append((system, info) if with_info else system)
        start = nxt
    if not out:
        raise InputError(f"{source}: empty xyz file (no frames)")
    return out


def _parse_custom_columns(lines, start, cols, source):
    species_col, pos_col = cols
    n = int(lines[start].split()[0])
    if start + 2 + n > len(lines):
        raise InputError(f"{source}: the header announces {n} atoms but fewer lines follow")
    symbols, coords = [], []
    for k in range(start + 2, start + 2 + n):
        parts = lines[k].split()
        try:
            symbols.append(normalize_symbol(parts[species_col]))
            coords.append([float(v) for v in parts[pos_col:pos_col + 3]])
        except (IndexError, ValueError):
            raise InputError(f"{source}: line {k + 1}: does not match the Properties columns: "
                             f"{lines[k].strip()!r}") from None
    return symbols, np.array(coords), start + 2 + n


def read_ase_frames(path, **system_kwargs) -> list[System]:
    """Every frame ``ase.io.read(path, index=":")`` returns (ASE positions are Angstrom).

    Raises:
        InputError: ASE is not installed or cannot read the file.
    """
    try:
        import ase.io  # optional dependency
    except ImportError:
        raise InputError(f"cannot read {os.fspath(path)!r}: not an xyz file or DeePKS-kit folder, "
                         "and ASE (pip install ase) is not installed for other formats") from None
    try:
        atoms_list = ase.io.read(path, index=":")
    except Exception as err:  # ASE raises many types
        raise InputError(f"ASE cannot read {os.fspath(path)!r}: {err}") from err
    return [System.from_symbols(a.get_chemical_symbols(), a.get_positions(), **system_kwargs)
            for a in atoms_list]


def read_frames(path, **system_kwargs) -> list[System]:
    """Geometries from any supported source (see the module docstring) as ``list[System]``.

    Raises:
        InputError: the path does not exist or cannot be read.
    """
    spath = os.fspath(path)
    if spath.startswith("builtin:"):
        from jaxks.data.builtin import builtin_path

        spath = builtin_path(spath[len("builtin:"):])  # an xyz file, read below
    if os.path.isdir(spath):
        from jaxks.data.deepkskit import read_deepks_system

        return read_deepks_system(spath).systems(**system_kwargs)
    if not os.path.exists(spath):
        raise InputError(f"no such file or folder: {spath!r}")
    if spath.lower().endswith((".xyz", ".extxyz")):
        return read_xyz_frames(spath, **system_kwargs)
    return read_ase_frames(spath, **system_kwargs)


__all__ = ["parse_comment", "read_xyz_frames", "read_ase_frames", "read_frames"]

"""Molecular systems: elements, geometry (Bohr), charge and the basis settings.

A :class:`System` is a host-side description of one closed-shell molecule. It is validated once,
on construction, so that every later stage can trust it:

* element symbols are known elements (case-insensitive, ``"o"`` -> ``"O"``);
* the electron count N = sum(Z) - charge is even and positive (restricted Kohn-Sham only);
* no two atoms are closer than :data:`MIN_DISTANCE_ANGSTROM`.

Coordinates are stored in Bohr. ``.xyz`` input is read in Angstrom, as the format prescribes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
from pyscf.data import elements as _elements

from jaxks.units import ANGSTROM_PER_BOHR, BOHR_PER_ANGSTROM

#: Two atoms closer than this (Angstrom) are taken to be an input error, not chemistry.
MIN_DISTANCE_ANGSTROM = 0.3

DEFAULT_BASIS = "def2-svp"
DEFAULT_AUXBASIS = "def2-universal-jkfit"
DEFAULT_GRID_LEVEL = 3

_SYMBOLS = {s.upper(): s for s in _elements.ELEMENTS[1:]}


class InputError(ValueError):
    """A system description that jaxks cannot compute (bad file, element, charge, geometry)."""


def normalize_symbol(symbol: str | int) -> str:
    """Return the canonical element symbol for ``symbol`` (``"o"``, ``"O"``, ``8`` -> ``"O"``).

    Raises:
        InputError: ``symbol`` is not a chemical element.
    """
    if isinstance(symbol, (int, np.integer)):
        z = int(symbol)
        if 1 <= z < len(_elements.ELEMENTS):
            return _elements.ELEMENTS[z]
        raise InputError(f"unknown element: atomic number {z}")
    key = str(symbol).strip()
    if key.isdigit():
        return normalize_symbol(int(key))
    canonical = _SYMBOLS.get(key.upper())
    if canonical is None:
        raise InputError(f"unknown element: {symbol!r}")
    return canonical


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A closed-shell molecule and the settings its integrals are built with.

    Attributes:
        symbols: element symbols, length n_atoms.
        coords: nuclear positions, shape [n_atoms, 3], Bohr.
        charge: total charge (e).
        basis: orbital basis name (or a PySCF basis dict), default def2-SVP.
        auxbasis: density-fitting basis for the Coulomb matrix, default def2-universal-jkfit.
        grid_level: PySCF integration grid level (0 coarse ... 9 fine), default 3.
    """

    symbols: tuple[str, ...]
    coords: np.ndarray
    charge: int = 0
    basis: str | dict = DEFAULT_BASIS
    auxbasis: str | dict = DEFAULT_AUXBASIS
    grid_level: int = DEFAULT_GRID_LEVEL

    def __post_init__(self):
        symbols = tuple(normalize_symbol(s) for s in self.symbols)
        coords = np.array(self.coords, dtype=np.float64)
        if len(symbols) == 0:
            raise InputError("a system needs at least one atom")
        if coords.shape != (len(symbols), 3):
            raise InputError(
                f"coordinates must have shape ({len(symbols)}, 3), got {coords.shape}")
        if not np.all(np.isfinite(coords)):
            raise InputError("coordinates contain NaN or infinity")
        coords.setflags(write=False)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "charge", int(self.charge))
        n = self.n_electrons
        if n <= 0:
            raise InputError(f"the system has {n} electrons (charge {self.charge})")
        if n % 2:
            raise InputError(f"open-shell systems are not supported yet: {n} electrons")
        if len(symbols) > 1:
            d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
            d[np.diag_indices(len(symbols))] = np.inf
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] * ANGSTROM_PER_BOHR < MIN_DISTANCE_ANGSTROM:
                raise InputError(
                    f"atoms {min(i, j)} ({symbols[min(i, j)]}) and {max(i, j)} "
                    f"({symbols[max(i, j)]}) are on top of each other: "
                    f"{d[i, j] * ANGSTROM_PER_BOHR:.3f} Angstrom apart "
                    f"(minimum {MIN_DISTANCE_ANGSTROM} Angstrom)")

    # ----------------------------------------------------------------- properties
    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def atomic_numbers(self) -> np.ndarray:
        """Nuclear charges Z, shape [n_atoms], int."""
        return np.array([_elements.charge(s) for s in self.symbols], dtype=np.int64)

    @property
    def n_electrons(self) -> int:
        """N = sum_A Z_A - charge."""
        return int(self.atomic_numbers.sum()) - self.charge

    @property
    def formula(self) -> str:
        counts: dict[str, int] = {}
        for s in self.symbols:
            counts[s] = counts.get(s, 0) + 1
        return "".join(f"{s}{c if c > 1 else ''}" for s, c in counts.items())

    def replace(self, **changes) -> "System":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_symbols(cls, symbols: Sequence[str | int], coords_angstrom, **kwargs) -> "System":
        """Build from element symbols and Cartesian coordinates in **Angstrom**."""
        coords = np.asarray(coords_angstrom, dtype=np.float64) * BOHR_PER_ANGSTROM
        return cls(tuple(symbols), coords, **kwargs)

    @classmethod
    def from_xyz(cls, path: str | os.PathLike, **kwargs) -> "System":
        """Read the first frame of an ``.xyz`` file (coordinates in Angstrom).

        Raises:
            InputError: the file cannot be read or is not valid xyz.
        """
        symbols, coords = read_xyz_frame(path)
        return cls.from_symbols(symbols, coords, **kwargs)

    @classmethod
    def from_xyz_string(cls, text: str, **kwargs) -> "System":
        """Parse xyz text (first frame, Angstrom)."""
        symbols, coords, _ = parse_xyz_frame(text.splitlines(), source="<string>")
        return cls.from_symbols(symbols, coords, **kwargs)

    @classmethod
    def from_pyscf(cls, mol, grid_level: int = DEFAULT_GRID_LEVEL) -> "System":
        """Take geometry, charge, basis and auxiliary basis from a PySCF ``Mole``."""
        if mol.spin != 0:
            raise InputError(f"open-shell systems are not supported yet: spin {mol.spin}")
        symbols = [normalize_symbol(mol.atom_pure_symbol(i)) for i in range(mol.natm)]
        auxbasis = getattr(mol, "auxbasis", None) or DEFAULT_AUXBASIS
        return cls(tuple(symbols), mol.atom_coords(unit="Bohr"), charge=mol.charge,
                   basis=mol.basis, auxbasis=auxbasis, grid_level=grid_level)

    # ----------------------------------------------------------------- conversions
    def to_pyscf(self, basis=None):
        """The PySCF ``Mole`` for this system (Bohr, spherical AOs, closed shell).

        Raises:
            InputError: PySCF has no such basis for one of the elements.
        """
        from pyscf import gto

        try:
            return gto.M(atom=[(s, c) for s, c in zip(self.symbols, self.coords)], unit="Bohr",
                         basis=self.basis if basis is None else basis, charge=self.charge,
                         spin=0, cart=False, verbose=0)
        except (KeyError, RuntimeError, ValueError, BasisNotFoundError) as err:
            raise InputError(f"cannot build basis {basis or self.basis!r} for "
                             f"{self.formula}: {err}") from err

    def to_xyz(self, comment: str = "") -> str:
        """xyz text, coordinates in Angstrom."""
        lines = [str(self.n_atoms), comment.replace("\n", " ")]
        for s, c in zip(self.symbols, self.coords * ANGSTROM_PER_BOHR):
            lines.append(f"{s:<2s} {c[0]:18.10f} {c[1]:18.10f} {c[2]:18.10f}")
        return "\n".join(lines) + "\n"


try:  # PySCF >= 2.3 raises its own error for missing basis sets
    from pyscf.gto.basis import BasisNotFoundError  # type: ignore
except ImportError:  # pragma: no cover
    class BasisNotFoundError(Exception):
        pass


# --------------------------------------------------------------------------- xyz parsing
def parse_xyz_frame(lines: Sequence[str], source: str = "<xyz>", start: int = 0):
    """Parse one xyz frame starting at ``lines[start]``.

    Returns:
        (symbols, coords_angstrom [n, 3], next_start)
    Raises:
        InputError: malformed frame; the message names the source and line.
    """
    if start >= len(lines) or not lines[start].strip():
        raise InputError(f"{source}: empty xyz file (expected the atom count on line 1)")
    try:
        n = int(lines[start].split()[0])
    except ValueError:
        raise InputError(f"{source}: line {start + 1}: expected the number of atoms, "
                         f"got {lines[start].strip()!r}") from None
    if n <= 0:
        raise InputError(f"{source}: line {start + 1}: atom count must be positive, got {n}")
    if start + 2 + n > len(lines):
        raise InputError(f"{source}: the header announces {n} atoms but only "
                         f"{max(len(lines) - start - 2, 0)} atom lines follow")
    symbols, coords = [], []
    for k in range(start + 2, start + 2 + n):
        parts = lines[k].split()
        if len(parts) < 4:
            raise InputError(f"{source}: line {k + 1}: expected 'element x y z', "
                             f"got {lines[k].strip()!r}")
        try:
            xyz = [float(v) for v in parts[1:4]]
        except ValueError:
            raise InputError(f"{source}: line {k + 1}: coordinates are not numbers: "
                             f"{lines[k].strip()!r}") from None
        try:
            symbols.append(normalize_symbol(parts[0]))
        except InputError as err:
            raise InputError(f"{source}: line {k + 1}: {err}") from None
        coords.append(xyz)
    return symbols, np.array(coords), start + 2 + n


def _read_lines(path) -> list[str]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read xyz file {os.fspath(path)!r}: {err}") from err


def read_xyz_frame(path):
    """First frame of an xyz file: (symbols, coords in Angstrom)."""
    symbols, coords, _ = parse_xyz_frame(_read_lines(path), source=os.fspath(path))
    return symbols, coords

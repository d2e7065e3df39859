"""Systems: elements, geometry (Bohr), charge, an optional periodic cell, and the basis settings.

A :class:`System` is a host-side description of one closed-shell molecule (a cluster), or of the
contents of one periodic cell when ``lattice`` is set (periodic in all three directions, computed
at the Γ point). It is validated once, on construction, so that every later stage can trust it:

* element symbols are known elements (case-insensitive, ``"o"`` -> ``"O"``);
* the electron count N = sum(Z) - charge is even and positive (restricted Kohn-Sham only);
* no two atoms are closer than :data:`MIN_DISTANCE_ANGSTROM` (in a cell: nor any atom and a
  periodic image of an atom);
* a cell has three linearly independent lattice vectors.

Coordinates and lattice vectors are stored in Bohr. ``.xyz`` input is read in Angstrom, as the
format prescribes; an extended-xyz comment line with ``Lattice="..."`` (and ``pbc="T T T"`` or no
``pbc``, as ASE reads it) makes the frame periodic, ``pbc="F F F"`` keeps it a cluster, and a
partly periodic ``pbc`` is an :class:`InputError` (not supported, never silently ignored).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
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


def require_cluster(system, what: str) -> None:
    """Raise :class:`InputError` when ``system`` is periodic: ``what`` is implemented for
    molecules (clusters) only, and a periodic setting must never be silently dropped."""
    if getattr(system, "lattice", None) is not None:
        raise InputError(f"{what} is implemented for molecules (clusters) only; "
                         f"{system.formula} is a periodic cell")


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
        lattice: None for a molecule; for a periodic cell its lattice vectors as rows
            a_1, a_2, a_3, shape [3, 3], Bohr (periodic in all three directions, Γ point).
    """

    symbols: tuple[str, ...]
    coords: np.ndarray
    charge: int = 0
    basis: str | dict = DEFAULT_BASIS
    auxbasis: str | dict = DEFAULT_AUXBASIS
    grid_level: int = DEFAULT_GRID_LEVEL
    lattice: np.ndarray | None = None

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
        lattice = None if self.lattice is None else _check_lattice(self.lattice)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "charge", int(self.charge))
        object.__setattr__(self, "lattice", lattice)
        n = self.n_electrons
        if n <= 0:
            raise InputError(f"the system has {n} electrons (charge {self.charge})")
        if n % 2:
            raise InputError(f"open-shell systems are not supported yet: {n} electrons")
        # in a cell, also each atom against the nearest periodic images of every atom
        shifts = (np.zeros((1, 3)) if lattice is None else
                  np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ lattice)
        if len(symbols) > 1 or lattice is not None:
            d = np.linalg.norm(coords[:, None, None] + shifts[None, :, None] - coords[None, None],
                               axis=-1)                                    # [n, n_shift, n]
            home = int(np.flatnonzero(np.all(shifts == 0, axis=1))[0])
            d[np.arange(len(symbols)), home, np.arange(len(symbols))] = np.inf
            i, t, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, t, j] * ANGSTROM_PER_BOHR < MIN_DISTANCE_ANGSTROM:
                image = "" if t == home else " (a periodic image)"
                raise InputError(
                    f"atoms {min(i, j)} ({symbols[min(i, j)]}) and {max(i, j)} "
                    f"({symbols[max(i, j)]}){image} are on top of each other: "
                    f"{d[i, t, j] * ANGSTROM_PER_BOHR:.3f} Angstrom apart "
                    f"(minimum {MIN_DISTANCE_ANGSTROM} Angstrom)")

    # ----------------------------------------------------------------- properties
    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def periodic(self) -> bool:
        """True for a periodic cell (``lattice`` set), False for a molecule."""
        return self.lattice is not None

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
    def from_symbols(cls, symbols: Sequence[str | int], coords_angstrom, *,
                     lattice_angstrom=None, **kwargs) -> "System":
        """Build from element symbols and Cartesian coordinates in **Angstrom** (and, for a
        periodic cell, its lattice vectors as rows [3, 3] in **Angstrom**)."""
        coords = np.asarray(coords_angstrom, dtype=np.float64) * BOHR_PER_ANGSTROM
        if lattice_angstrom is not None:
            kwargs["lattice"] = _as_lattice(lattice_angstrom) * BOHR_PER_ANGSTROM
        return cls(tuple(symbols), coords, **kwargs)

    @classmethod
    def from_xyz(cls, path: str | os.PathLike, **kwargs) -> "System":
        """Read the first frame of an (extended) ``.xyz`` file (coordinates in Angstrom).

        A ``Lattice="..."`` on the comment line makes the frame a periodic cell
        (:func:`lattice_from_comment`).

        Raises:
            InputError: the file cannot be read, is not valid xyz, or asks for partial
                periodicity.
        """
        return cls.from_xyz_lines(_read_lines(path), source=os.fspath(path), **kwargs)

    @classmethod
    def from_xyz_string(cls, text: str, **kwargs) -> "System":
        """Parse (extended) xyz text (first frame, Angstrom), as :meth:`from_xyz`."""
        return cls.from_xyz_lines(text.splitlines(), source="<string>", **kwargs)

    @classmethod
    def from_xyz_lines(cls, lines: Sequence[str], source: str = "<xyz>", **kwargs) -> "System":
        """The first frame of xyz ``lines`` (Angstrom), periodic when its comment line says so."""
        symbols, coords, _ = parse_xyz_frame(lines, source=source)
        comment = lines[1] if len(lines) > 1 else ""
        lattice = lattice_from_comment(parse_comment(comment), source=source)
        try:
            return cls.from_symbols(symbols, coords, lattice_angstrom=lattice, **kwargs)
        except InputError as err:
            raise InputError(f"{source}: {err}") from None

    @classmethod
    def from_ase(cls, atoms, **kwargs) -> "System":
        """From an ASE ``Atoms`` (positions and cell in Angstrom).

        ``atoms.pbc`` all True: a periodic cell (``atoms.cell`` its lattice); all False: a
        molecule (a cell, if any, is ignored: it is only a box); mixed: :class:`InputError`.
        """
        pbc = np.asarray(atoms.pbc, dtype=bool)
        lattice = None
        if pbc.all():
            lattice = np.asarray(atoms.cell[:], dtype=np.float64)
        elif pbc.any():
            raise InputError(f"periodic in some directions only (pbc={pbc.tolist()}): "
                             "jaxks computes molecules or cells periodic in all three directions")
        return cls.from_symbols(atoms.get_chemical_symbols(), atoms.get_positions(),
                                lattice_angstrom=lattice, **kwargs)

    @classmethod
    def from_pyscf(cls, mol, grid_level: int = DEFAULT_GRID_LEVEL) -> "System":
        """Take geometry, charge, basis and auxiliary basis from a PySCF ``Mole``, or from a
        PySCF ``pbc.gto.Cell`` (then the system is periodic, with the cell's lattice)."""
        if mol.spin != 0:
            raise InputError(f"open-shell systems are not supported yet: spin {mol.spin}")
        symbols = [normalize_symbol(mol.atom_pure_symbol(i)) for i in range(mol.natm)]
        auxbasis = getattr(mol, "auxbasis", None) or DEFAULT_AUXBASIS
        lattice = None
        if hasattr(mol, "lattice_vectors"):  # a pbc Cell
            if getattr(mol, "dimension", 3) != 3:
                raise InputError(f"a cell of dimension {mol.dimension}: only 3-dimensional "
                                 "periodicity is supported")
            lattice = np.asarray(mol.lattice_vectors(), dtype=np.float64)  # Bohr
        return cls(tuple(symbols), mol.atom_coords(unit="Bohr"), charge=mol.charge,
                   basis=mol.basis, auxbasis=auxbasis, grid_level=grid_level, lattice=lattice)

    # ----------------------------------------------------------------- conversions
    def to_pyscf(self, basis=None):
        """The PySCF ``Mole`` for this system (Bohr, spherical AOs, closed shell).

        Raises:
            InputError: PySCF has no such basis for one of the elements; or the system is a
                periodic cell (its PySCF ``Cell`` is built in :mod:`jaxks.integrals.cell`; a
                molecule in its place would silently drop the periodicity).
        """
        require_cluster(self, "this calculation")
        from pyscf import gto

        try:
            return gto.M(atom=[(s, c) for s, c in zip(self.symbols, self.coords)], unit="Bohr",
                         basis=self.basis if basis is None else basis, charge=self.charge,
                         spin=0, cart=False, verbose=0)
        except (KeyError, RuntimeError, ValueError, BasisNotFoundError) as err:
            raise InputError(f"cannot build basis {basis or self.basis!r} for "
                             f"{self.formula}: {err}") from err

    def to_xyz(self, comment: str = "") -> str:
        """xyz text, coordinates in Angstrom; a periodic cell's comment line starts with
        ``Lattice="..." pbc="T T T"`` (extended xyz, as ASE writes it, Angstrom)."""
        comment = comment.replace("\n", " ")
        if self.lattice is not None:
            cell = " ".join(f"{v:.10f}" for v in (self.lattice * ANGSTROM_PER_BOHR).ravel())
            comment = f'Lattice="{cell}" pbc="T T T" {comment}'.rstrip()
        lines = [str(self.n_atoms), comment]
        for s, c in zip(self.symbols, self.coords * ANGSTROM_PER_BOHR):
            lines.append(f"{s:<2s} {c[0]:18.10f} {c[1]:18.10f} {c[2]:18.10f}")
        return "\n".join(lines) + "\n"


try:  # PySCF >= 2.3 raises its own error for missing basis sets
    from pyscf.gto.basis import BasisNotFoundError  # type: ignore
except ImportError:  # pragma: no cover
    class BasisNotFoundError(Exception):
        pass


def _as_lattice(lattice) -> np.ndarray:
    try:
        a = np.array(lattice, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"lattice vectors are not numbers: {lattice!r}") from None
    if a.size == 3 and a.ndim == 1:  # three edge lengths: an orthorhombic cell
        a = np.diag(a)
    if a.shape != (3, 3):
        raise InputError(f"lattice vectors must have shape (3, 3), got {a.shape}")
    return a


#: Smallest cell volume (Bohr³) accepted: below it the lattice vectors are (nearly) dependent.
MIN_CELL_VOLUME = 1.0


def _check_lattice(lattice) -> np.ndarray:
    """A validated, read-only [3, 3] float64 copy of lattice vectors (rows, Bohr)."""
    a = _as_lattice(lattice)
    if not np.all(np.isfinite(a)):
        raise InputError("lattice vectors contain NaN or infinity")
    vol = abs(float(np.linalg.det(a)))
    if vol < MIN_CELL_VOLUME:
        raise InputError(f"the lattice vectors span a volume of {vol:.3g} Bohr^3: they must be "
                         "three linearly independent vectors (a periodic cell)")
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- xyz parsing
_KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_comment(comment: str) -> dict:
    """``key=value`` pairs of an extended-xyz comment line (quotes removed; values as strings)."""
    return {k: v.strip('"') for k, v in _KV.findall(comment)}


def lattice_from_comment(info: dict, source: str = "<xyz>") -> np.ndarray | None:
    """The periodic cell an extended-xyz comment line describes (ASE's convention), or None.

    ``Lattice="a1x a1y a1z a2x ... a3z"`` (Angstrom, rows a_1, a_2, a_3) with ``pbc="T T T"``
    or without ``pbc``: a periodic cell; ``pbc="F F F"``: a molecule (the lattice is only a box).
    ``pbc`` periodic in some directions only, or ``pbc`` periodic without a ``Lattice``, is an
    :class:`InputError`: jaxks computes molecules and fully periodic cells, nothing in between,
    and never drops a periodic setting silently.

    Returns:
        [3, 3] lattice vectors (Angstrom), or None for a molecule.
    """
    pbc = None
    if "pbc" in info:
        flags = info["pbc"].replace(",", " ").split()
        table = {"T": True, "TRUE": True, "1": True, "F": False, "FALSE": False, "0": False}
        try:
            pbc = [table[f.upper()] for f in flags]
        except KeyError:
            raise InputError(f"{source}: pbc={info['pbc']!r} is not three T/F flags") from None
        if len(pbc) == 1:
            pbc = pbc * 3
        if len(pbc) != 3:
            raise InputError(f"{source}: pbc={info['pbc']!r} is not three T/F flags")
    if pbc is not None and any(pbc) and not all(pbc):
        raise InputError(f"{source}: pbc=\"{info['pbc']}\" is periodic in some directions only: "
                         "jaxks computes molecules or cells periodic in all three directions")
    if "Lattice" not in info:
        if pbc is not None and all(pbc):
            raise InputError(f"{source}: pbc=\"{info['pbc']}\" asks for a periodic cell but "
                             "the comment line has no Lattice=\"...\"")
        return None
    try:
        values = [float(v) for v in info["Lattice"].split()]
    except ValueError:
        raise InputError(f"{source}: Lattice={info['Lattice']!r} is not nine numbers") from None
    if len(values) != 9:
        raise InputError(f"{source}: Lattice= has {len(values)} numbers, expected 9 "
                         "(three lattice vectors, Angstrom)")
    if pbc is not None and not any(pbc):
        return None
    return np.array(values).reshape(3, 3)


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

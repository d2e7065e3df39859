"""Electronic-structure labels of a geometry: base (PBE) and target (HSE06) Kohn-Sham results.

A *labeller* is any picklable function ``label(system, settings) -> dict[str, np.ndarray]``
returning the arrays of :data:`FRAME_KEYS` (the ``{tag}/...`` keys once for ``base`` and once
for ``target``). Labellers are looked up by the name in ``settings.labeller`` in
:data:`LABELLERS`, so a jaxks-based labeller can be registered later without touching the
dataset code.

The PySCF labeller (:func:`pyscf_label`) runs, for each functional xc ∈ {base, target}, with the
same basis, auxiliary basis and integration grid:

    mf = dft.RKS(mol, xc).density_fit(auxbasis)
    mf.grids = Grids(mol) at ``grid_level`` (built once, shared), mf.small_rho_cutoff = 0
    mf.conv_tol = conv_tol, mf.max_cycle = max_cycle; mf.kernel()
    forces F = −∂E/∂R from mf.nuc_grad_method() (grid response as ``grid_response``)

HSE06 is PySCF/libxc's ``"hse06"`` (HYB_GGA_XC_HSE06: ω = 0.11 Bohr⁻¹, 25 % short-range exact
exchange). ``small_rho_cutoff = 0`` keeps every grid point so jaxks can reproduce the numbers.

A periodic frame (``system.lattice`` set) is labelled at the Γ point with PySCF's cell code
(:func:`jaxks.integrals.cell.pyscf_cell_ks`): ``pbc.dft.RKS(cell, xc, exxdiv=settings.exxdiv)
.density_fit(auxbasis)`` on the :func:`~jaxks.integrals.cell.make_cell` cell, ``BeckeGrids`` at
``grid_level`` (built once, shared), the same basis, auxiliary basis and tolerances; HSE06's
short-range exchange is PySCF's for cells. Such a frame also stores ``lattice`` (Bohr), and
its forces are absent: PySCF 2.15 has no Γ-point gradients for GDF, so ``{tag}/forces`` is NaN
and ``has_forces`` is False (the trainer refuses a force term on it; without one, boxes
and clusters train together). Energies are per cell.

Label arrays (atomic units), ``{tag}`` ∈ {base, target}:

================  ==============  ==========================================================
key               shape           meaning
================  ==============  ==========================================================
atomic_numbers    [natoms]        Z (int64)
coords            [natoms, 3]     positions (Bohr)
charge            []              total charge (int64)
overlap           [nao, nao]      AO overlap S
{tag}/energy      []              total energy E (Hartree)
{tag}/forces      [natoms, 3]     F = −dE/dR (Hartree/Bohr)
{tag}/fock        [nao, nao]      Kohn-Sham matrix F = h + J + V_xc (− K_SR part) at Γ (Hartree)
{tag}/mo_energy   [nmo]           orbital energies ε (Hartree), ascending
{tag}/mo_coeff    [nao, nmo]      orbital coefficients C (F C = S C ε)
{tag}/mo_occ      [nmo]           occupations (2 or 0)
{tag}/dm          [nao, nao]      AO density matrix Γ = C n Cᵀ (electrons)
{tag}/converged   []              SCF converged (bool); unconverged frames are kept, flagged
{tag}/cycles      []              SCF iterations (int64)
lattice           [3, 3]          periodic frames only: lattice vectors, rows (Bohr)
has_forces        []              periodic frames only: False, ``{tag}/forces`` is NaN
================  ==============  ==========================================================

PySCF's final orbitals are the eigenvectors of the Fock matrix of the previous density, so
``fock`` and ``mo_energy`` agree to the convergence threshold, not to round-off.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import numpy as np

from jaxks.system import InputError, System, require_cluster

TAGS = ("base", "target")
#: PySCF's ``exxdiv`` choices for the exchange divergence of periodic cells that its GDF
#: supports (``"none"``: PySCF's None, no correction).
EXXDIV = ("ewald", "none")
GEOMETRY_KEYS = ("atomic_numbers", "coords", "charge", "overlap")
TAGGED_KEYS = ("energy", "forces", "fock", "mo_energy", "mo_coeff", "mo_occ", "dm",
               "converged", "cycles")
FRAME_KEYS = GEOMETRY_KEYS + tuple(f"{t}/{k}" for t in TAGS for k in TAGGED_KEYS)

#: Units of every label (by the key after the ``{tag}/`` prefix).
UNITS = {"atomic_numbers": "1", "coords": "Bohr", "charge": "e", "overlap": "1",
         "energy": "Hartree", "forces": "Hartree/Bohr", "fock": "Hartree",
         "mo_energy": "Hartree", "mo_coeff": "1", "mo_occ": "electrons", "dm": "electrons",
         "converged": "bool", "cycles": "iterations", "lattice": "Bohr", "has_forces": "bool"}
#: Shapes of every label, symbolically.
SHAPES = {"atomic_numbers": "[natoms]", "coords": "[natoms, 3]", "charge": "[]",
          "overlap": "[nao, nao]", "energy": "[]", "forces": "[natoms, 3]",
          "fock": "[nao, nao]", "mo_energy": "[nmo]", "mo_coeff": "[nao, nmo]",
          "mo_occ": "[nmo]", "dm": "[nao, nao]", "converged": "[]", "cycles": "[]",
          "lattice": "[3, 3]", "has_forces": "[]"}


@dataclasses.dataclass(frozen=True)
class LabelSettings:
    """Everything that determines the labels (recorded in the data; mixing is refused).

    Attributes:
        base: base functional (PySCF/libxc name), default "pbe".
        target: target functional, default "hse06".
        basis, auxbasis: orbital and density-fitting basis (the same for both functionals).
        grid_level: PySCF grid level 0-9 (same grid for both).
        conv_tol: SCF energy convergence threshold (Hartree).
        max_cycle: SCF iteration limit.
        grid_response: include the grid-weight response in the forces.
        labeller: name of the labeller in :data:`LABELLERS`.
        exxdiv: PySCF's treatment of the G = 0 exchange divergence in periodic frames
            (``pbc.scf`` ``exxdiv``; ``"ewald"``, PySCF's default, or ``"none"``); clusters
            ignore it. PySCF adds the full-Coulomb Madelung shift to HSE06's short-range
            exchange too: for a water in a 4.5 Å cube (sto-3g) "ewald" and "none" differ by
            0.26 Eh in E and 0.052 Eh in every occupied orbital energy. "ewald" is the
            consistent one: a water in a 7 Å cube (sto-3g) lies −0.0180 Eh (HSE06, ewald)
            and −0.0169 Eh (PBE) from the isolated molecule, +0.0967 Eh with "none".
    """

    base: str = "pbe"
    target: str = "hse06"
    basis: str = "def2-svp"
    auxbasis: str = "def2-universal-jkfit"
    grid_level: int = 3
    conv_tol: float = 1e-10
    max_cycle: int = 100
    grid_response: bool = False
    labeller: str = "pyscf"
    exxdiv: str = "ewald"

    def __post_init__(self):
        for tag in TAGS:
            check_functional(getattr(self, tag))
        if not 0 <= int(self.grid_level) <= 9:
            raise InputError(f"grid level must be between 0 and 9, got {self.grid_level}")
        if not self.conv_tol > 0:
            raise InputError(f"conv_tol must be positive, got {self.conv_tol}")
        if self.labeller not in LABELLERS:
            raise InputError(f"unknown labeller {self.labeller!r}; known: {sorted(LABELLERS)}")
        if self.labeller == "jaxks":
            _jaxks_functionals(self)
        if self.exxdiv not in EXXDIV:
            raise InputError(f"exxdiv must be one of {EXXDIV}, got {self.exxdiv!r}")
        object.__setattr__(self, "base", self.base.lower())
        object.__setattr__(self, "target", self.target.lower())
        object.__setattr__(self, "grid_level", int(self.grid_level))
        object.__setattr__(self, "conv_tol", float(self.conv_tol))
        object.__setattr__(self, "max_cycle", int(self.max_cycle))
        object.__setattr__(self, "grid_response", bool(self.grid_response))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def differences(self, other: "LabelSettings") -> list[str]:
        """Human-readable list of the fields that differ (``name: self vs other``)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]


def label_system(labels: dict, settings: LabelSettings) -> System:
    """The :class:`System` of a label dict (atomic numbers, Bohr coordinates, charge, and the
    lattice of a periodic frame) with the basis, auxiliary basis and grid the labels were made
    with."""
    lattice = labels.get("lattice")
    return System(tuple(int(z) for z in labels["atomic_numbers"]), labels["coords"],
                  charge=int(labels["charge"]), basis=settings.basis,
                  auxbasis=settings.auxbasis, grid_level=settings.grid_level,
                  lattice=None if lattice is None else np.asarray(lattice, dtype=np.float64))


def check_functional(xc: str) -> None:
    """Raise InputError unless libxc (through PySCF) knows the functional ``xc``."""
    from pyscf.dft import libxc

    try:
        libxc.parse_xc(xc)
    except (KeyError, ValueError, NotImplementedError) as err:
        raise InputError(f"unknown exchange-correlation functional {xc!r}: {err}") from None


class Labeller(Protocol):
    """``label(system, settings) -> dict`` with the keys of :data:`FRAME_KEYS`."""

    def __call__(self, system: System, settings: LabelSettings) -> dict[str, np.ndarray]: ...


def pyscf_scf(mol, xc: str, settings: LabelSettings, grids):
    """The converged PySCF DF-RKS object for ``xc`` with the labelling settings (see module doc)."""
    from pyscf import dft

    return run_pyscf(dft.RKS(mol, xc=xc).density_fit(auxbasis=settings.auxbasis), settings,
                     grids)


def run_pyscf(mf, settings: LabelSettings, grids):
    """Run the PySCF mean-field object ``mf`` (molecule or cell) on ``grids`` with the
    labelling tolerances, every grid point kept (``small_rho_cutoff = 0``); returns ``mf``."""
    mf.grids = grids
    mf.small_rho_cutoff = 0
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
    mf.verbose = 0
    mf.kernel()
    return mf


def pyscf_label(system: System, settings: LabelSettings) -> dict[str, np.ndarray]:
    """Base and target labels of ``system`` from PySCF density-fitted RKS (see module doc).

    Returns:
        dict with the keys of :data:`FRAME_KEYS` (float64 except the flags and counters).
    Raises:
        InputError: the basis does not cover an element.
    """
    from pyscf import dft

    if system.lattice is not None:
        return pyscf_cell_label(system, settings)
    mol = system.to_pyscf(basis=settings.basis)
    grids = dft.gen_grid.Grids(mol)
    grids.level = settings.grid_level
    grids.build()
    out = {"atomic_numbers": np.asarray(system.atomic_numbers, dtype=np.int64),
           "coords": np.array(system.coords, dtype=np.float64),
           "charge": np.array(system.charge, dtype=np.int64),
           "overlap": np.asarray(mol.intor_symmetric("int1e_ovlp"), dtype=np.float64)}
    for tag in TAGS:
        mf = pyscf_scf(mol, getattr(settings, tag), settings, grids)
        grad = mf.nuc_grad_method()
        grad.grid_response = settings.grid_response
        grad.verbose = 0
        g = grad.kernel()
        dm = mf.make_rdm1()
        out.update({
            f"{tag}/energy": np.array(mf.e_tot, dtype=np.float64),
            f"{tag}/forces": -np.asarray(g, dtype=np.float64),
            f"{tag}/fock": np.asarray(mf.get_fock(dm=dm), dtype=np.float64),
            f"{tag}/mo_energy": np.asarray(mf.mo_energy, dtype=np.float64),
            f"{tag}/mo_coeff": np.asarray(mf.mo_coeff, dtype=np.float64),
            f"{tag}/mo_occ": np.asarray(mf.mo_occ, dtype=np.float64),
            f"{tag}/dm": np.asarray(dm, dtype=np.float64),
            f"{tag}/converged": np.array(bool(mf.converged)),
            f"{tag}/cycles": np.array(int(getattr(mf, "cycles", -1)), dtype=np.int64),
        })
    return out


def pyscf_cell_label(system: System, settings: LabelSettings) -> dict[str, np.ndarray]:
    """Base and target labels of a periodic ``system`` at the Γ point from PySCF's cell code
    (see the module doc): the keys of :data:`FRAME_KEYS` plus ``lattice`` (Bohr) and
    ``has_forces`` (False; ``{tag}/forces`` NaN: PySCF has no Γ-point GDF gradients)."""
    from jaxks.integrals.cell import gamma_matrices, make_cell, make_cell_grids, pyscf_cell_ks

    cell = make_cell(system, basis=settings.basis)
    grids = make_cell_grids(cell, settings.grid_level)
    out = {"atomic_numbers": np.asarray(system.atomic_numbers, dtype=np.int64),
           "coords": np.array(system.coords, dtype=np.float64),
           "charge": np.array(system.charge, dtype=np.int64),
           "lattice": np.array(system.lattice, dtype=np.float64),
           "has_forces": np.array(False)}
    for tag in TAGS:
        mf = run_pyscf(pyscf_cell_ks(cell, getattr(settings, tag), settings.auxbasis,
                                     settings.exxdiv), settings, grids)
        m = gamma_matrices(mf)
        out["overlap"] = m.pop("overlap")
        out.update({f"{tag}/{k}": v for k, v in m.items()})
        out.update({
            f"{tag}/energy": np.array(mf.e_tot, dtype=np.float64),
            f"{tag}/forces": np.full((system.n_atoms, 3), np.nan),
            f"{tag}/converged": np.array(bool(mf.converged)),
            f"{tag}/cycles": np.array(int(getattr(mf, "cycles", -1)), dtype=np.int64),
        })
    return out


def _jaxks_functionals(settings: LabelSettings) -> dict:
    """The jaxks functionals of base and target; InputError for a name jaxks does not have."""
    from jaxks.xc import get_xc

    try:
        return {tag: get_xc(getattr(settings, tag)) for tag in TAGS}
    except ValueError as err:
        raise InputError(f"the jaxks labeller: {err}") from None


def jaxks_label(system: System, settings: LabelSettings) -> dict[str, np.ndarray]:
    """Base and target labels from the jaxks engine: the same quantities as :func:`pyscf_label`
    (same basis, auxiliary basis, grid level and density fitting; exact exchange by
    :mod:`jaxks.exchange`), PySCF supplying integrals only. Both functionals must be in the jaxks
    registry. ``fock`` is F[Γ] at the final Γ and ``mo_energy``/``mo_coeff`` its eigenpairs.

    SCF stopping: |ΔE| < ``conv_tol`` and commutator norm < max(1e-9, 0.01·√conv_tol) (tighter
    than PySCF's default √conv_tol gradient test, so Fock matrices and orbital energies settle).
    """
    from jaxks.exchange import sr_omega
    from jaxks.forces import force_integrals, forces
    from jaxks.integrals import integrals_from_pyscf, make_grids
    from jaxks.scf import SCFOptions, run_scf

    require_cluster(system, "labelling (base and target SCF with forces)")
    functionals = _jaxks_functionals(settings)
    omegas = {sr_omega(xc) for xc in functionals.values()} - {0.0}
    if len(omegas) > 1:
        raise InputError(f"the jaxks labeller needs one omega for both functionals, got {omegas}")
    omega = omegas.pop() if omegas else 0.0
    mol = system.to_pyscf(basis=settings.basis)
    grids = make_grids(mol, settings.grid_level)
    ints = integrals_from_pyscf(mol, settings.auxbasis, settings.grid_level, grids=grids,
                                omega=omega)
    fints = force_integrals(mol, settings.auxbasis,
                            grids=grids if settings.grid_response else None, omega=omega)
    options = SCFOptions(e_tol=settings.conv_tol, max_cycles=settings.max_cycle,
                         comm_tol=max(1e-9, 0.01 * settings.conv_tol ** 0.5))
    out = {"atomic_numbers": np.asarray(system.atomic_numbers, dtype=np.int64),
           "coords": np.array(system.coords, dtype=np.float64),
           "charge": np.array(system.charge, dtype=np.int64),
           "overlap": np.asarray(ints.S, dtype=np.float64)}
    for tag in TAGS:
        xc = functionals[tag]
        res = run_scf(ints, xc, options=options, warn=False)
        f = forces(res, ints, fints, xc, grid_response=settings.grid_response)
        n_mo = res.mo_energy.shape[0]
        occ = np.zeros(n_mo)
        occ[:res.n_occ] = 2.0
        out.update({
            f"{tag}/energy": np.array(float(res.energy), dtype=np.float64),
            f"{tag}/forces": np.asarray(f, dtype=np.float64),
            f"{tag}/fock": np.asarray(res.fock, dtype=np.float64),
            f"{tag}/mo_energy": np.asarray(res.mo_energy, dtype=np.float64),
            f"{tag}/mo_coeff": np.asarray(res.mo_coeff, dtype=np.float64),
            f"{tag}/mo_occ": occ,
            f"{tag}/dm": np.asarray(res.gamma, dtype=np.float64),
            f"{tag}/converged": np.array(bool(res.converged)),
            f"{tag}/cycles": np.array(int(res.cycles), dtype=np.int64),
        })
    return out


#: Labellers by name (``LabelSettings.labeller``).
LABELLERS: dict[str, Callable[[System, LabelSettings], dict]] = {"pyscf": pyscf_label,
                                                                 "jaxks": jaxks_label}


def get_labeller(name: str) -> Callable[[System, LabelSettings], dict]:
    try:
        return LABELLERS[name]
    except KeyError:
        raise InputError(f"unknown labeller {name!r}; known: {sorted(LABELLERS)}") from None

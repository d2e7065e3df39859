"""jaxks.ase_calculator: ASE geometry optimisation against the same optimiser driven by PySCF's
density-fitted RKS at identical settings, energy conservation of NVE dynamics, units, DeePKS.

One system and one setting throughout (water dimer, STO-3G, grid level 1, grid response on so
that the forces are exact energy derivatives on the coarse grid): the SCF compiles once.
"""

import numpy as np
import pytest

pytest.importorskip("ase")

from ase import Atoms, units  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

import jaxks  # noqa: E402
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR, EV_PER_HARTREE  # noqa: E402
from tests import geometries as geo  # noqa: E402

SETTINGS = dict(basis="sto-3g", grid_level=1, grid_response=True)
AUX = "def2-universal-jkfit"


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread(one_openmp_thread):
    yield


class PySCFCalculator(Calculator):
    """PySCF density-fitted RKS energies and analytic gradients (with grid response) on the
    grid jaxks builds: the reference the jaxks calculator must reproduce."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, xc="pbe", basis="sto-3g", grid_level=1):
        super().__init__()
        self.xc, self.basis, self.grid_level = xc, basis, grid_level
        self.dm = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from pyscf import dft, gto

        from jaxks.integrals import make_grids

        super().calculate(atoms, properties, system_changes)
        mol = gto.M(atom=[(s, p) for s, p in zip(self.atoms.get_chemical_symbols(),
                                                 self.atoms.positions)],
                    unit="Angstrom", basis=self.basis, verbose=0)
        mf = dft.RKS(mol, xc=self.xc).density_fit(auxbasis=AUX)
        mf.grids = make_grids(mol, self.grid_level)
        mf.small_rho_cutoff = 0
        mf.conv_tol = 1e-11
        e = mf.kernel(dm0=self.dm)
        assert mf.converged
        self.dm = mf.make_rdm1()
        g = mf.nuc_grad_method()
        g.grid_response = True
        self.results["energy"] = e * EV_PER_HARTREE
        self.results["forces"] = -g.kernel() * EV_ANGSTROM_PER_HARTREE_BOHR


#: The water dimer relaxed with PBE/STO-3G (BFGS, fmax 0.01 eV/Å; Ångström): the MD start, so
#: that 300 K dynamics explores the minimum's basin rather than the relaxation of a strained start.
DIMER_STO3G = np.array([[-1.410815, -0.210094, 0.0], [-1.749081, 0.769725, 0.0],
                        [-0.378631, 0.015998, 0.0], [1.20077, 0.24055, 0.0],
                        [1.482117, -0.381748, -0.77609], [1.482117, -0.381748, 0.77609]])


def dimer(positions=None) -> Atoms:
    symbols, start = geo.WATER_DIMER
    return Atoms(symbols, positions=start if positions is None else positions)


def optimise(calc, fmax=0.005):
    from ase.optimize import BFGS

    atoms = dimer()
    atoms.calc = calc
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=fmax, steps=200)
    return atoms, opt.nsteps


def test_single_point_matches_pyscf():
    atoms = dimer()
    atoms.calc = jaxks.JaxksCalculator(**SETTINGS)
    ref = PySCFCalculator()
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert abs(e - ref.get_potential_energy(atoms)) < 1e-8 * EV_PER_HARTREE
    np.testing.assert_allclose(f, ref.get_forces(atoms), atol=1e-6 * EV_ANGSTROM_PER_HARTREE_BOHR)
    r = atoms.calc.scf_result
    assert bool(r.converged) and abs(float(r.energy) * EV_PER_HARTREE - e) < 1e-12


def test_bfgs_reaches_pyscf_minimum():
    """The same BFGS from the same start reaches the same geometry (1e-3 Å) and energy."""
    ours, n_ours = optimise(jaxks.JaxksCalculator(**SETTINGS))
    ref, n_ref = optimise(PySCFCalculator())
    assert n_ours > 5  # the start is far from the STO-3G minimum: a real optimisation
    np.testing.assert_allclose(ours.positions, ref.positions, atol=1e-3)
    d_ours, d_ref = ours.get_all_distances(), ref.get_all_distances()
    np.testing.assert_allclose(d_ours, d_ref, atol=1e-3)
    assert abs(ours.get_potential_energy() - ref.get_potential_energy()) < 1e-6


def test_nve_conserves_energy():
    """50 velocity-Verlet steps of 0.5 fs at 300 K: total energy constant to 1e-4 Eh/atom,
    while potential and kinetic energy exchange far more than that."""
    from ase.md.verlet import VelocityVerlet

    atoms = dimer(DIMER_STO3G)
    atoms.calc = jaxks.JaxksCalculator(**SETTINGS)
    # Maxwell-Boltzmann momenta at 300 K (seeded), total momentum removed
    kt = 300 * units.kB
    masses = atoms.get_masses()[:, None]
    p = np.sqrt(masses * kt) * np.random.default_rng(0).standard_normal((len(atoms), 3))
    atoms.set_momenta(p - masses * p.sum(0) / masses.sum())
    md = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    epot, ekin = [], []

    def record():
        epot.append(atoms.get_potential_energy())
        ekin.append(atoms.get_kinetic_energy())

    md.attach(record, interval=1)
    md.run(50)
    etot = np.array(epot) + np.array(ekin)
    drift_per_atom = np.abs(etot - etot[0]).max() / len(atoms) / EV_PER_HARTREE
    swing_per_atom = np.ptp(epot) / len(atoms) / EV_PER_HARTREE
    print(f"NVE: max |E - E0| = {drift_per_atom:.2e} Eh/atom, E_pot swing {swing_per_atom:.2e}")
    assert len(etot) == 51
    assert drift_per_atom < 1e-4
    assert swing_per_atom > 10 * drift_per_atom


def test_deepks_model_forces_are_energy_derivatives(tmp_path):
    """With a model file the calculator runs DeePKS-SCF: the correction is not negligible and
    the forces (correction's explicit geometry dependence included) are −dE/dR by central
    finite differences of the calculator's own energies."""
    from tests.conftest import save_tiny_model

    path = save_tiny_model(tmp_path / "model.npz")
    calc = jaxks.JaxksCalculator(model=str(path), **SETTINGS)
    atoms = dimer()
    atoms.calc = calc
    f = atoms.get_forces()
    assert abs(float(calc.scf_result.parts.term)) > 1e-4  # Eh: the model does something
    h = 1e-3  # Angstrom
    for atom, axis in ((0, 0), (4, 2)):  # an O and an H, two directions
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            moved.calc = calc
            e.append(moved.get_potential_energy())
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(fd - f[atom, axis]) < 2e-5 * EV_ANGSTROM_PER_HARTREE_BOHR, (fd, f[atom, axis])


def test_periodic_atoms_run_as_a_cell():
    """An Atoms with a cell and pbc=True is a Γ-point cell (PySCF pbc's energy), never a
    cluster; its forces are refused (InputError) rather than computed as a molecule's."""
    from pyscf.pbc import dft

    from jaxks.ase_calculator import JaxksCalculator
    from jaxks.integrals.cell import make_cell, make_cell_grids
    from jaxks.system import InputError, System

    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]],
                  cell=[4.5, 4.5, 4.5], pbc=True)
    atoms.calc = JaxksCalculator(basis="sto-3g", grid_level=1)
    e = atoms.get_potential_energy() / EV_PER_HARTREE
    cell = make_cell(System.from_ase(atoms, basis="sto-3g"))
    mf = dft.RKS(cell).density_fit(auxbasis=AUX)
    mf.xc, mf.grids, mf.conv_tol, mf.verbose = "pbe", make_cell_grids(cell, 1), 1e-11, 0
    assert abs(e - mf.kernel()) < 1e-8
    with pytest.raises(InputError, match="forces is implemented for molecules"):
        atoms.get_forces()


def test_periodic_atoms_with_a_model(tmp_path):
    """A DeePKS model on a periodic Atoms runs the cell's DeePKS-SCF (the lattice-summed
    projector overlaps): its energy is the plain cell's moved by about E_δ."""
    from tests.conftest import save_tiny_model

    path = save_tiny_model(tmp_path / "model.npz")
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]],
                  cell=[4.5, 4.5, 4.5], pbc=True)
    energies, terms = [], []
    for model in (None, str(path)):
        atoms.calc = jaxks.JaxksCalculator(model=model, basis="sto-3g", grid_level=0)
        energies.append(atoms.get_potential_energy() / EV_PER_HARTREE)
        terms.append(float(atoms.calc.scf_result.parts.term))
    assert terms[0] == 0.0 and abs(terms[1]) > 1e-5
    assert abs(energies[1] - energies[0] - terms[1]) < 0.1 * abs(terms[1]) + 1e-6

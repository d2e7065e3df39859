"""DeePKS in periodic cells at Γ: lattice-summed projector overlaps
(:func:`jaxks.integrals.cell.lattice_projector_overlaps`), descriptors invariant under lattice
translations, and the DeePKS-SCF of a box (energy = PySCF pbc PBE functional + E_δ, V_δ =
∂E_δ/∂Γ)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto

from jaxks.deepks import correction_potential, deepks_params, descriptors
from jaxks.integrals import compute_integrals, pyscf_system
from jaxks.integrals.cell import make_cell, make_cell_grids, minao_guess
from jaxks.integrals.projectors import default_basis, projector_derivatives, projector_overlaps
from jaxks.scf import SCFOptions, run_scf
from jaxks.system import InputError, System
from tests.deepks.test_scf_deepks import random_model
from tests.integrals.test_cell import AUX, H2_TRICLINIC

#: a water in a 4.0 Å cube, off-centre and without symmetry: images overlap strongly
WATER_SMALL = """3
Lattice="4.0 0.0 0.0 0.0 4.0 0.0 0.0 0.0 4.0" pbc="T T T"
O   0.120000   0.310000  -0.050000
H   0.857000   0.886000   0.040000
H  -0.657000   0.846000   0.110000
"""


def _brute_force_overlaps(cell, basis, n_max):
    """Σ_T ⟨χ_μ(r − T)|α^I_k⟩ over T = n·A, |n_i| ≤ n_max, as molecular cross overlaps of the
    translated molecule with the home-cell projector molecule (no pyscf.pbc involved)."""
    coords = cell.atom_coords()
    symbols = [cell.atom_symbol(i) for i in range(cell.natm)]
    pmol = gto.M(atom=[["X", c] for c in coords], unit="Bohr",
                 basis={"X": basis.to_pyscf()}, verbose=0)
    lattice = cell.lattice_vectors()
    total = 0.0
    for n in itertools.product(range(-n_max, n_max + 1), repeat=3):
        shift = np.asarray(n) @ lattice
        mol = gto.M(atom=[(s, c + shift) for s, c in zip(symbols, coords)], unit="Bohr",
                    basis=cell.basis, verbose=0)
        total = total + gto.intor_cross("int1e_ovlp", mol, pmol)
    return total.reshape(cell.nao, cell.natm, basis.n_proj)


@pytest.mark.parametrize("text,basis", [(WATER_SMALL, "sto-3g"), (H2_TRICLINIC, "def2-svp")],
                         ids=["water-cubic", "h2-triclinic"])
def test_lattice_summed_overlaps_equal_sum_over_images(text, basis):
    system = System.from_xyz_string(text, basis=basis)
    cell = make_cell(system)
    pbasis = default_basis()
    p = np.asarray(projector_overlaps(cell, pbasis).overlaps)
    ref = _brute_force_overlaps(cell, pbasis, n_max=3)
    np.testing.assert_allclose(p, ref, atol=1e-9)
    # the images matter: the home-cell (molecular) overlap alone is far off
    mol_only = _brute_force_overlaps(cell, pbasis, n_max=0)
    assert np.abs(mol_only - ref).max() > 1e-2


def _shifted(system, shift_bohr):
    return System(system.symbols, system.coords + shift_bohr, basis=system.basis,
                  auxbasis=system.auxbasis, grid_level=system.grid_level,
                  lattice=system.lattice)


def test_descriptors_invariant_under_translation():
    """Every atom moved by a lattice vector (atoms leave the home cell), or all by the same
    arbitrary vector: the same Γ-point AOs up to their labels, so the same descriptors for the
    same density matrix."""
    system = System.from_xyz_string(WATER_SMALL, basis="sto-3g")
    cell = make_cell(system)
    gamma = jnp.asarray(minao_guess(cell))
    ref = np.asarray(descriptors(gamma, projector_overlaps(cell)))
    a = np.asarray(system.lattice)
    for shift in (a[0], a[1] - 2 * a[2], np.array([0.7, -1.3, 2.2])):
        moved = make_cell(_shifted(system, shift))
        d = np.asarray(descriptors(gamma, projector_overlaps(moved)))
        np.testing.assert_allclose(d, ref, atol=1e-9)
    # not a test that cannot fail: the same water as a molecule has other descriptors
    molecule = System(system.symbols, system.coords, basis="sto-3g")
    d_mol = np.asarray(descriptors(gamma, projector_overlaps(molecule.to_pyscf())))
    assert np.abs(d_mol - ref).max() > 1e-3


def test_cell_projector_derivatives_refused():
    cell = make_cell(System.from_xyz_string(WATER_SMALL, basis="sto-3g"))
    with pytest.raises(InputError, match="periodic"):
        projector_derivatives(cell)


def test_deepks_scf_of_a_box():
    """The DeePKS-SCF of a box converges; its energy is PySCF pbc's PBE energy functional at
    the DeePKS density plus E_δ; V_δ = ∂E_δ/∂Γ (central differences on the box)."""
    from pyscf.pbc import dft

    system = System.from_xyz_string(WATER_SMALL, basis="sto-3g", auxbasis=AUX, grid_level=0)
    cell = pyscf_system(system)
    ints = compute_integrals(system)
    term, params = random_model(seed=3)
    theta = deepks_params(params, projector_overlaps(cell))
    res = run_scf(ints, "pbe", term=term, params=theta,
                  options=SCFOptions(e_tol=1e-11, comm_tol=1e-7))
    assert bool(res.converged)
    mf = dft.RKS(cell, xc="pbe").density_fit(auxbasis=AUX)
    mf.grids = make_cell_grids(cell, 0)
    e_pbe = float(mf.energy_tot(dm=np.asarray(res.gamma)))
    energy = jax.jit(term)
    e_delta = float(energy(res.gamma, theta))
    assert abs(e_delta) > 1e-6
    assert abs(float(res.parts.term) - e_delta) < 1e-10
    assert abs(float(res.energy) - (e_pbe + e_delta)) < 1e-8
    # V_δ against central differences of E_δ along a random symmetric direction
    rng = np.random.default_rng(0)
    d = rng.normal(size=res.gamma.shape)
    d = jnp.asarray(d + d.T)
    v = correction_potential(term, res.gamma, theta)
    h = 1e-4
    fd = (float(energy(res.gamma + h * d, theta)) - float(energy(res.gamma - h * d, theta))) / (2 * h)
    assert abs(float(jnp.sum(v * d)) - fd) < 1e-7 * max(1.0, abs(fd))


def test_large_cell_overlaps_are_molecular():
    """In a 15 Å cube the images are out of reach: P is the molecule's (the limit)."""
    text = WATER_SMALL.replace("4.0 0.0 0.0 0.0 4.0 0.0 0.0 0.0 4.0",
                               "15.0 0.0 0.0 0.0 15.0 0.0 0.0 0.0 15.0")
    system = System.from_xyz_string(text, basis="def2-svp")
    p_cell = np.asarray(projector_overlaps(make_cell(system)).overlaps)
    molecule = System(system.symbols, system.coords, basis="def2-svp")
    p_mol = np.asarray(projector_overlaps(molecule.to_pyscf()).overlaps)
    np.testing.assert_allclose(p_cell, p_mol, atol=1e-10)

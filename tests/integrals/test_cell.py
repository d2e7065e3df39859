"""jaxks.integrals.cell: Γ-point SCF of periodic cells against PySCF's ``pbc.dft.RKS(cell)
.density_fit(auxbasis)`` at Γ on the same cell, basis, auxiliary basis and Becke grids."""

import numpy as np
import pytest

from jaxks.integrals import compute_integrals, integrals_from_cell
from jaxks.integrals.cell import image_shifts, make_cell, make_cell_grids
from jaxks.scf import SCFOptions, coulomb, run_scf
from jaxks.system import InputError, System
from jaxks.xc import get_xc

AUX = "def2-universal-jkfit"
TIGHT = SCFOptions(e_tol=1e-12, comm_tol=1e-8)

WATER_BOX = """3
Lattice="4.5 0.0 0.0 0.0 4.5 0.0 0.0 0.0 4.5" pbc="T T T"
O   0.000000   0.000000   0.000000
H   0.757000   0.586000   0.000000
H  -0.757000   0.586000   0.000000
"""
# H2 in a skewed (triclinic) cell, one atom near a face: images on every side reach the grid
H2_TRICLINIC = """2
Lattice="3.2 0.0 0.0 0.8 3.0 0.0 0.4 0.5 3.4" pbc="T T T"
H   0.100000   0.200000   0.100000
H   0.100000   0.200000   0.840000
"""


def _pyscf_gamma_rks(cell, grids, xc):
    from pyscf.pbc import dft

    mf = dft.RKS(cell).density_fit(auxbasis=AUX)
    mf.xc = xc
    mf.grids = grids
    mf.conv_tol = 1e-12
    mf.verbose = 0
    mf.kernel()
    assert mf.converged
    return mf


@pytest.mark.parametrize("text,basis,level,xc", [
    (WATER_BOX, "sto-3g", 1, "pbe"),
    (H2_TRICLINIC, "def2-svp", 1, "lda"),
], ids=["water-cubic-pbe", "h2-triclinic-lda"])
def test_gamma_point_scf_equals_pyscf(text, basis, level, xc, one_openmp_thread):
    system = System.from_xyz_string(text, basis=basis, auxbasis=AUX, grid_level=level)
    cell = make_cell(system)
    grids = make_cell_grids(cell, level)
    ref = _pyscf_gamma_rks(cell, grids, get_xc(xc).pyscf_xc)
    ints = integrals_from_cell(cell, AUX, level, grids=grids)
    assert ints.lattice is not None and ints.screen is not None
    # the pieces: overlap, core Hamiltonian (periodic nuclear attraction), fitted J, Ewald
    dm = ref.make_rdm1()
    np.testing.assert_allclose(np.asarray(ints.S), ref.get_ovlp(), atol=1e-10)
    np.testing.assert_allclose(np.asarray(ints.hcore), ref.get_hcore(), atol=1e-9)
    np.testing.assert_allclose(np.asarray(coulomb(dm, ints.cderi, ints.pairs)), ref.get_j(dm=dm),
                               atol=1e-9)
    assert abs(float(ints.e_nuc) - cell.energy_nuc()) < 1e-10
    # the SCF: energy and orbital energies
    res = run_scf(ints, xc, options=TIGHT)
    assert bool(res.converged)
    assert abs(float(res.energy) - ref.e_tot) < 1e-8, (float(res.energy), ref.e_tot)
    np.testing.assert_allclose(np.asarray(res.mo_energy), ref.mo_energy, atol=1e-7)
    # the periodic answer is not the molecule's (an extxyz box once ran as a cluster)
    molecule = System(system.symbols, system.coords, basis=basis, auxbasis=AUX, grid_level=level)
    mol_res = run_scf(compute_integrals(molecule), xc, options=TIGHT)
    assert abs(float(mol_res.energy) - float(res.energy)) > 1e-4


def test_images_cover_the_grid():
    """Every image of an atom whose shells can reach a grid point is in the basis, and no
    image lies so far that no shell of it reaches the grid's bounding sphere."""
    from jaxks.basis import basis_data, shell_extents

    system = System.from_xyz_string(H2_TRICLINIC, basis="def2-svp", grid_level=0)
    cell = make_cell(system)
    pts = np.asarray(make_cell_grids(cell, 0).coords)
    bd = basis_data(cell)
    parents, shifts = image_shifts(bd, np.asarray(system.lattice), pts)
    reach = shell_extents(bd).max()  # both atoms carry the same shells
    centres = np.asarray(bd.centers)[parents] + shifts
    # brute force over a generous range of translations
    n = np.stack(np.meshgrid(*[np.arange(-6, 7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    all_centres = (np.asarray(bd.centers)[None] + (n @ np.asarray(system.lattice))[:, None])
    all_centres = all_centres.reshape(-1, 3)
    d = np.sqrt(((all_centres[:, None] - pts[None]) ** 2).sum(-1)).min(1)
    needed = all_centres[d < reach]
    have = {tuple(np.round(c, 6)) for c in centres}
    assert all(tuple(np.round(c, 6)) in have for c in needed)
    assert len(centres) == len(have)  # no image twice
    assert (parents[:2] == [0, 1]).all() and np.allclose(shifts[:2], 0.0)  # home cell first


def test_unsupported_cell_settings_are_errors():
    system = System.from_xyz_string(WATER_BOX, basis="sto-3g", grid_level=0)
    with pytest.raises(InputError, match="not implemented for periodic cells"):
        compute_integrals(system, omega=0.11)
    with pytest.raises(InputError, match="needs the AO screen"):
        compute_integrals(system, ao_cutoff=None)
    with pytest.raises(InputError, match="charged periodic cell"):
        compute_integrals(system.replace(charge=2))
    from jaxks.forces import energy_gradient

    ints = compute_integrals(system)
    with pytest.raises(InputError, match="integrals of a periodic cell"):
        energy_gradient(ints.guess, ints.hcore, ints, None, "pbe")


def test_folded_image_aos_are_pyscf_lattice_sums():
    """On every screened block, the image shells' AO values and gradients summed by the fold
    plan equal PySCF's lattice-summed Γ-point AOs (``cell.pbc_eval_gto``) at its points."""
    import jax.numpy as jnp

    from jaxks.basis import eval_ao_screened

    system = System.from_xyz_string(H2_TRICLINIC, basis="def2-svp", grid_level=0)
    cell = make_cell(system)
    ints = integrals_from_cell(cell, AUX, 0)
    bs = ints.block_size
    coords = np.asarray(ints.grid_coords).reshape(-1, bs, 3)
    n_real = int(np.count_nonzero(np.asarray(ints.grid_weights)))
    checked = 0
    for b in ints.screen.bins:
        for k in range(b.blocks.shape[0]):
            row = type(b)(b.blocks[k], tuple(x[k] for x in b.slots),
                          tuple(x[k] for x in b.mask), b.ao_index[k], b.fold[k])
            pts = coords[int(b.blocks[k])]
            ao = np.asarray(eval_ao_screened(ints.basis, jnp.asarray(pts), row, deriv=1))
            ao = np.concatenate([ao, np.zeros_like(ao[..., :1])], axis=-1)
            folded = ao[..., np.asarray(row.fold)].sum(-1)                 # [4, bs, nao]
            ref = cell.pbc_eval_gto("GTOval_sph_deriv1", pts)
            np.testing.assert_allclose(folded, ref, atol=1e-9)
            checked += 1
    assert checked * bs >= n_real

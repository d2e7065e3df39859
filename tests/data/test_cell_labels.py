"""``jaxks label`` on periodic frames: PySCF's Γ-point cell RKS (base PBE, target HSE06), the
lattice stored, forces absent (NaN) and refused by the trainer."""

import numpy as np
import pytest

from jaxks.cli import main
from jaxks.data.labels import LabelSettings, label_system
from jaxks.data.store import Dataset
from jaxks.integrals import compute_integrals
from jaxks.integrals.cell import make_cell, make_cell_grids
from jaxks.scf import SCFOptions, run_scf
from jaxks.system import InputError, System

AUX = "def2-universal-jkfit"
BOX = """3
Lattice="4.5 0.0 0.0 0.0 4.5 0.0 0.0 0.0 4.5" Properties=species:S:1:pos:R:3 pbc="T T T"
O   0.000000   0.000000   0.000000
H   0.757000   0.586000   0.000000
H  -0.757000   0.586000   0.000000
"""


@pytest.fixture(scope="module")
def labelled_box(tmp_path_factory):
    d = tmp_path_factory.mktemp("cell_labels")
    (d / "box.extxyz").write_text(BOX)
    rc = main(["label", str(d / "box.extxyz"), "--out", str(d / "data"), "--basis", "sto-3g",
               "--grid-level", "0", "--quiet"])
    assert rc == 0
    return d


def test_cell_labels_equal_pyscf_and_jaxks(labelled_box):
    from pyscf.pbc import dft

    ds = Dataset(labelled_box / "data")
    assert ds.settings.exxdiv == "ewald" and ds.settings.target == "hse06"
    assert list(ds.groups) == ["H2O_pbc"] and ds.group_info("H2O_pbc")["periodic"] is True
    arrays, header = ds.frame(0)
    assert header["units"]["lattice"] == "Bohr"
    system = System.from_xyz_string(BOX, basis="sto-3g", auxbasis=AUX, grid_level=0)
    np.testing.assert_allclose(arrays["lattice"], system.lattice, atol=1e-12)
    assert label_system(arrays, ds.settings).lattice is not None
    assert not bool(arrays["has_forces"])
    for tag in ("base", "target"):
        assert bool(arrays[f"{tag}/converged"])
        assert np.all(np.isnan(arrays[f"{tag}/forces"]))
    # target: a direct PySCF Γ-point HSE06 of the same cell
    cell = make_cell(system)
    mf = dft.RKS(cell, xc="hse06").density_fit(auxbasis=AUX)
    mf.grids, mf.conv_tol, mf.verbose = make_cell_grids(cell, 0), 1e-10, 0
    e = mf.kernel()
    assert abs(float(arrays["target/energy"]) - e) < 1e-8
    np.testing.assert_allclose(arrays["target/mo_energy"], mf.mo_energy, atol=1e-6)
    np.testing.assert_allclose(arrays["overlap"], mf.get_ovlp(), atol=1e-12)
    # base: the jaxks Γ-point PBE SCF of the cell (another engine, same settings)
    res = run_scf(compute_integrals(system), "pbe", options=SCFOptions(e_tol=1e-11, comm_tol=1e-8))
    assert abs(float(arrays["base/energy"]) - float(res.energy)) < 1e-8
    np.testing.assert_allclose(arrays["base/mo_energy"], np.asarray(res.mo_energy), atol=1e-6)
    gamma = arrays["base/dm"]
    assert abs(np.sum(gamma * arrays["overlap"]) - 10.0) < 1e-8
    # the exact exchange is really there: HSE06 moves the gap from PBE's
    gap = {t: arrays[f"{t}/mo_energy"][5] - arrays[f"{t}/mo_energy"][4] for t in ("base", "target")}
    assert gap["target"] - gap["base"] > 0.01


def test_trainer_refuses_forces_on_periodic_frames(labelled_box):
    from jaxks.integrals.projectors import default_basis
    from jaxks.train.frames import load_records

    with pytest.raises(InputError, match="no force labels"):
        load_records([str(labelled_box / "data")], default_basis(), ("H", "O"))
    # (without forces they train: tests/train/test_cells.py)
    # nor is a box exported to DeePKS-kit as a cluster
    assert main(["export", str(labelled_box / "data"), str(labelled_box / "kit")]) == 2


def test_label_engine_jaxks_refuses_cells(tmp_path):
    (tmp_path / "box.extxyz").write_text(BOX)
    assert main(["label", str(tmp_path / "box.extxyz"), "--out", str(tmp_path / "d"),
                 "--engine", "jaxks", "--quiet"]) == 2
    assert not (tmp_path / "d").exists()
    with pytest.raises(InputError, match="exxdiv"):
        LabelSettings(exxdiv="bogus")

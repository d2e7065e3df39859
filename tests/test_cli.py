"""The ``jaxks`` command line: output contents, JSON, forces, and error handling."""

import json

import numpy as np
import pytest

from jaxks.cli import main
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR, EV_PER_HARTREE
from tests import geometries as geo
from tests.conftest import make_system, pyscf_rks


@pytest.fixture()
def water_xyz(tmp_path):
    system = make_system(geo.WATER)
    path = tmp_path / "water.xyz"
    path.write_text(system.to_xyz("water"))
    return path


def test_scf_json_matches_pyscf(water_xyz, capsys):
    from jaxks.integrals import make_grids

    rc = main(["scf", str(water_xyz), "--xc", "pbe", "--basis", "def2-svp", "--grid-level", "0",
               "--forces", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["converged"]
    system = make_system(geo.WATER, grid_level=0)
    mol = system.to_pyscf()
    ref = pyscf_rks(mol, "pbe", "def2-universal-jkfit", make_grids(mol, 0))
    assert abs(out["energy_eh"] - ref.e_tot) < 1e-8
    homo = ref.mo_energy[4]
    assert abs(out["homo_eh"] - homo) < 1e-7
    assert abs(out["gap_ev"] - (ref.mo_energy[5] - homo) * EV_PER_HARTREE) < 1e-5
    # every orbital energy and occupation, not only those near the gap
    np.testing.assert_allclose(out["mo_energy_eh"], ref.mo_energy, atol=1e-7)
    np.testing.assert_array_equal(out["mo_occ"], ref.mo_occ)
    f = np.array(out["forces_hartree_per_bohr"])
    g_ref = ref.nuc_grad_method().kernel()
    np.testing.assert_allclose(f, -g_ref, atol=1e-6)
    np.testing.assert_allclose(np.array(out["forces_ev_per_angstrom"]),
                               f * EV_ANGSTROM_PER_HARTREE_BOHR, rtol=1e-12)
    assert set(out["timings_s"]) >= {"integrals", "compile", "scf", "forces"}


def test_scf_table_and_json_file(water_xyz, tmp_path, capsys):
    target = tmp_path / "out.json"
    rc = main(["scf", str(water_xyz), "--xc", "lda", "--grid-level", "0", "--json", str(target)])
    text = capsys.readouterr().out
    assert rc == 0
    for needle in ("Total energy", "HOMO", "LUMO", "HOMO-LUMO gap", "Converged         yes",
                   "Timings"):
        assert needle in text
    data = json.loads(target.read_text())
    assert data["xc"] == "lda" and "Hartree" in data["units"]["energy"]


def test_unconverged_scf_exit_status(water_xyz, capsys):
    rc = main(["scf", str(water_xyz), "--grid-level", "0", "--max-cycles", "2"])
    captured = capsys.readouterr()
    assert rc == 3
    assert "NOT CONVERGED" in captured.out and "did not converge" in captured.err


def test_bad_input_exit_status(tmp_path, capsys):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1\ncomment\nQq 0 0 0\n")
    assert main(["scf", str(bad)]) == 2
    assert "unknown element: 'Qq'" in capsys.readouterr().err
    assert main(["scf", str(tmp_path / "missing.xyz")]) == 2
    assert "cannot read xyz file" in capsys.readouterr().err


def test_unknown_functional_is_a_clear_error(water_xyz, capsys):
    assert main(["scf", str(water_xyz), "--xc", "nosuchfunctional", "--grid-level", "0"]) == 2
    err = capsys.readouterr().err
    assert "Unknown exchange-correlation functional 'nosuchfunctional'" in err
    assert "Traceback" not in err


def test_hse06_scf_json_and_forces(water_xyz, capsys):
    """HSE06 through the CLI: the same JSON keys as PBE, energy and forces as PySCF's DF-RKS."""
    from jaxks.integrals import make_grids
    from jaxks.xc import get_xc

    xc_name = "hse06"
    xc = get_xc(xc_name)
    args = ["scf", str(water_xyz), "--basis", "def2-svp", "--grid-level", "0", "--forces",
            "--json"]
    assert main(args + ["--xc", "pbe"]) == 0
    keys_pbe = json.loads(capsys.readouterr().out)
    assert main(args + ["--xc", xc_name]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == set(keys_pbe) and set(out["energy_parts_eh"]) == set(
        keys_pbe["energy_parts_eh"])
    mol = make_system(geo.WATER, grid_level=0).to_pyscf()
    ref = pyscf_rks(mol, xc.pyscf_xc, "def2-universal-jkfit", make_grids(mol, 0))
    assert abs(out["energy_eh"] - ref.e_tot) < 1e-8
    assert out["energy_parts_eh"]["exact_exchange"] < -0.5
    g_ref = ref.nuc_grad_method().kernel()
    np.testing.assert_allclose(np.array(out["forces_hartree_per_bohr"]), -g_ref, atol=1e-6)


def test_second_scf_process_uses_the_executable_cache(water_xyz, tmp_path):
    """`jaxks scf` as a process: the first run writes the compiled SCF loop to jaxks's executable
    cache, the second loads it (same energy) and both exit cleanly (status 0)."""
    import os
    import subprocess
    import sys

    from jaxks import compile_cache

    env = {k: v for k, v in os.environ.items() if k != "JAXKS_COMPILE_CACHE"}
    env.update(JAXKS_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "jaxks.cli", "scf", str(water_xyz), "--xc", "lda", "--basis",
           "sto-3g", "--grid-level", "0", "--json"]
    runs = [subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert len(list((tmp_path / "cache" / compile_cache.EXECUTABLE_SUBDIR).glob("*.bin"))) == 1
    first, second = (json.loads(run.stdout) for run in runs)
    assert second["energy_eh"] == first["energy_eh"]


BOX_EXTXYZ = """3
Lattice="4.5 0.0 0.0 0.0 4.5 0.0 0.0 0.0 4.5" Properties=species:S:1:pos:R:3 pbc="T T T"
O   0.000000   0.000000   0.000000
H   0.757000   0.586000   0.000000
H  -0.757000   0.586000   0.000000
"""


def test_scf_of_a_periodic_box(tmp_path, capsys):
    """An extended xyz with Lattice= runs the Γ-point SCF of the cell (PySCF pbc's energy),
    reports the cell; what cells cannot do yet is exit status 2, never a cluster run."""
    from pyscf.pbc import dft

    from jaxks.integrals.cell import make_cell, make_cell_grids
    from jaxks.system import System

    box = tmp_path / "box.extxyz"
    box.write_text(BOX_EXTXYZ)
    args = ["scf", str(box), "--basis", "sto-3g", "--grid-level", "1"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["periodic"] and out["kpoint"] == "gamma" and out["converged"]
    assert out["energy_per"] == "cell"
    np.testing.assert_allclose(out["cell_angstrom"], np.eye(3) * 4.5, atol=1e-12)
    cell = make_cell(System.from_xyz(box, basis="sto-3g"))
    mf = dft.RKS(cell).density_fit(auxbasis="def2-universal-jkfit")
    mf.xc, mf.grids, mf.conv_tol, mf.verbose = "pbe", make_cell_grids(cell, 1), 1e-12, 0
    assert abs(out["energy_eh"] - mf.kernel()) < 1e-8
    np.testing.assert_allclose(out["mo_energy_eh"], mf.mo_energy, atol=1e-7)
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "Periodic cell, Gamma point" in table and "a3     0.00000000     0.00000000" in table
    for extra, what in [(["--forces"], "forces is implemented for molecules"),
                        (["--xc", "hse06"], "not implemented for periodic cells")]:
        assert main(args + extra) == 2, extra
        assert what in capsys.readouterr().err


def test_scf_model_on_a_periodic_box(tmp_path, capsys):
    """``jaxks scf box.extxyz --model FILE`` runs the DeePKS-SCF of the cell at Γ with the
    model's settings (a tiny random model saved with sto-3g, grid level 0 settings): the JSON
    says periodic, carries the correction, and the energy moves from the plain PBE box by it
    (to first order: E_δ at the DeePKS density, not a cluster run)."""
    from tests.conftest import save_tiny_model

    settings = dict(basis="sto-3g", auxbasis="def2-universal-jkfit", grid_level=0, base="pbe")
    path = save_tiny_model(tmp_path / "tiny.npz", metadata=dict(settings=settings))
    box = tmp_path / "box.extxyz"
    box.write_text(BOX_EXTXYZ)
    assert main(["scf", str(box), "--model", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["periodic"] and out["kpoint"] == "gamma" and out["converged"]
    assert out["basis"] == "sto-3g" and out["grid_level"] == 0 and out["model"] == str(path)
    e_delta = out["energy_parts_eh"]["correction"]
    assert abs(e_delta) > 1e-5
    assert main(["scf", str(box), "--basis", "sto-3g", "--grid-level", "0", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["energy_parts_eh"]["correction"] == 0.0
    # variational: E_model − E_PBE = E_δ + O(ΔΓ²), far from the molecular value
    assert abs(out["energy_eh"] - plain["energy_eh"] - e_delta) < 0.1 * abs(e_delta) + 1e-6

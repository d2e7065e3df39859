"""Labels: equal to a direct PySCF calculation; unconverged frames flagged; resumable after SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

import jaxks  # noqa: F401
from jaxks.data.builtin import builtin_path
from jaxks.data.datasets import builtin_frames
from jaxks.data.labels import FRAME_KEYS, LabelSettings, pyscf_label
from jaxks.data.deepkskit import export_deepkskit
from jaxks.data.pipeline import label_frames
from jaxks.data.store import Dataset
from tests.conftest import make_system
from tests.geometries import WATER_DIMER

FAST = dict(basis="sto-3g", grid_level=0)


def test_dimer_labels_equal_direct_pyscf():
    from pyscf import dft

    system = make_system(WATER_DIMER)
    settings = LabelSettings(**FAST)
    labels = pyscf_label(system, settings)
    assert set(FRAME_KEYS) <= set(labels)

    mol = system.to_pyscf(basis="sto-3g")
    grids = dft.gen_grid.Grids(mol)
    grids.level = 0
    grids.build()
    assert np.allclose(labels["overlap"], mol.intor("int1e_ovlp"), atol=1e-14)
    assert np.allclose(labels["coords"], mol.atom_coords(), atol=1e-14)
    for tag, xc in (("base", "PBE"), ("target", "HSE06")):
        mf = dft.RKS(mol, xc=xc).density_fit(auxbasis="def2-universal-jkfit")
        mf.grids = grids
        mf.small_rho_cutoff = 0
        mf.conv_tol = 1e-10
        mf.kernel()
        assert mf.converged and bool(labels[f"{tag}/converged"])
        force = -mf.nuc_grad_method().kernel()
        dm = mf.make_rdm1()
        np.testing.assert_allclose(labels[f"{tag}/energy"], mf.e_tot, rtol=0, atol=1e-10)
        np.testing.assert_allclose(labels[f"{tag}/forces"], force, rtol=0, atol=1e-10)
        np.testing.assert_allclose(labels[f"{tag}/dm"], dm, rtol=0, atol=1e-10)
        np.testing.assert_allclose(labels[f"{tag}/fock"], mf.get_fock(dm=dm), rtol=0, atol=1e-10)
        np.testing.assert_allclose(labels[f"{tag}/mo_energy"], mf.mo_energy, rtol=0, atol=1e-10)
        np.testing.assert_allclose(labels[f"{tag}/mo_occ"], mf.mo_occ, rtol=0, atol=0)
        # coefficients: compare the sign-invariant projector onto each orbital
        c, c_ref = labels[f"{tag}/mo_coeff"], mf.mo_coeff
        s = labels["overlap"]
        np.testing.assert_allclose(np.abs(np.einsum("pi,pq,qi->i", c, s, c_ref)), 1, atol=1e-8)
        assert int(labels[f"{tag}/cycles"]) == mf.cycles > 0
    # the hybrid really differs from the base
    assert abs(labels["target/energy"] - labels["base/energy"]) > 1e-3


def test_unconverged_frames_are_kept_and_flagged(tmp_path):
    settings = LabelSettings(max_cycle=2, **FAST)
    report = label_frames([make_system(WATER_DIMER)], tmp_path / "ds", settings, progress=None)
    assert report.computed == [0] and report.unconverged == [0]
    arrays, header = Dataset(tmp_path / "ds").frame(0)
    assert not arrays["base/converged"] and header["converged"]["base"] is False
    assert export_deepkskit(tmp_path / "ds", tmp_path / "ex") == {}
    assert export_deepkskit(tmp_path / "ds", tmp_path / "ex", include_unconverged=True) == {"H4O2": 1}


def _label_cmd(xyz, out):
    return [sys.executable, "-m", "jaxks.cli", "label", str(xyz), "--out", str(out),
            "--basis", "sto-3g", "--grid-level", "0", "--threads", "1", "--quiet"]


def test_sigkill_then_rerun_completes_identically(tmp_path):
    xyz = builtin_path("water_dimers")
    n_frames = len(builtin_frames("water_dimers"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    killed, full = tmp_path / "killed", tmp_path / "full"
    group = killed / "H4O2"

    proc = subprocess.Popen(_label_cmd(xyz, killed), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if group.is_dir() and any(p.name.startswith("frame_") for p in group.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sorted(p.name for p in group.iterdir() if p.name.startswith("frame_"))
    assert 1 <= len(done) < n_frames

    rerun = subprocess.run(_label_cmd(xyz, killed), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} frames already done" in rerun.stderr or "already done" in rerun.stderr
    uninterrupted = subprocess.run(_label_cmd(xyz, full), env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    # every frame exactly once, no temporaries left, values identical
    names = sorted(os.listdir(group))
    assert names == [f"frame_{i:06d}.npz" for i in range(n_frames)] + ["group.json"]
    a, b = Dataset(killed), Dataset(full)
    assert a.indices == b.indices == list(range(n_frames))
    assert not a.verify()
    for i in range(n_frames):
        xa, _ = a.frame(i)
        xb, _ = b.frame(i)
        assert set(xa) == set(xb)
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"frame {i} {k}")


def test_jaxks_labeller_equals_pyscf_labeller():
    from jaxks.data.labels import jaxks_label

    system = make_system(WATER_DIMER)
    settings = LabelSettings(basis="sto-3g", grid_level=0, conv_tol=1e-12)  # PBE -> HSE06
    ours = jaxks_label(system, settings)
    ref = pyscf_label(system, settings)
    assert set(ours) == set(ref)
    for tag in ("base", "target"):
        assert bool(ours[f"{tag}/converged"]) and bool(ref[f"{tag}/converged"])
        np.testing.assert_allclose(ours[f"{tag}/energy"], ref[f"{tag}/energy"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(ours[f"{tag}/forces"], ref[f"{tag}/forces"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours[f"{tag}/fock"], ref[f"{tag}/fock"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(ours[f"{tag}/mo_energy"], ref[f"{tag}/mo_energy"], rtol=0,
                                   atol=1e-7)
        np.testing.assert_allclose(ours[f"{tag}/dm"], ref[f"{tag}/dm"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(ours[f"{tag}/mo_occ"], ref[f"{tag}/mo_occ"])
        for key in ("energy", "forces", "fock", "mo_energy", "mo_coeff", "dm"):
            assert ours[f"{tag}/{key}"].shape == ref[f"{tag}/{key}"].shape
    np.testing.assert_allclose(ours["overlap"], ref["overlap"], rtol=0, atol=1e-14)
    assert abs(ours["target/energy"] - ours["base/energy"]) > 1e-3


def test_jaxks_labeller_refuses_functionals_it_lacks():
    import pytest

    from jaxks.system import InputError

    with pytest.raises(InputError, match="the jaxks labeller: Unknown exchange-correlation"):
        LabelSettings(labeller="jaxks", target="b3lyp")

"""Dataset format: refusing mixed settings/inputs, detecting truncated files, readers."""

import json
import os

import numpy as np
import pytest

import jaxks  # noqa: F401
from jaxks.data.builtin import builtin_names
from jaxks.data.datasets import builtin_frames
from jaxks.data.labels import LabelSettings, pyscf_label
from jaxks.data.pipeline import label_frames
from jaxks.data.readers import read_frames, read_xyz_frames
from jaxks.data.store import DataFileError, Dataset, hill_formula, read_frame
from jaxks.system import InputError, System
from jaxks.units import BOHR_PER_ANGSTROM

SETTINGS = LabelSettings(basis="sto-3g", grid_level=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two monomers and one dimer (two groups), labelled once for the module."""
    out = tmp_path_factory.mktemp("ds") / "w"
    systems = builtin_frames("water_monomers")[:2] + builtin_frames("water_dimers")[:1]
    report = label_frames(systems, out, SETTINGS, progress=None)
    assert report.computed == [0, 1, 2] and not report.failed
    return out, systems


def test_layout_and_lazy_reading(dataset):
    out, systems = dataset
    ds = Dataset(out)
    assert ds.groups == {"H2O": [0, 1], "H4O2": [2]}
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["settings"]["basis"] == "sto-3g" and manifest["units"]["forces"] == "Hartree/Bohr"
    arrays, header = ds.frame(2)
    assert header["settings"] == SETTINGS.to_dict() and header["symbols"] == list(systems[2].symbols)
    assert header["units"]["target/fock"] == "Hartree" and header["units"]["coords"] == "Bohr"
    np.testing.assert_array_equal(arrays["coords"], systems[2].coords)
    nao = arrays["overlap"].shape[0]
    assert arrays["target/mo_coeff"].shape == (nao, nao) and arrays["base/forces"].shape == (6, 3)
    batch = ds.stack("H2O", ["coords", "target/energy"])
    assert batch["coords"].shape == (2, 3, 3) and batch["target/energy"].shape == (2,)
    np.testing.assert_array_equal(batch["index"], [0, 1])
    # stored labels are the labeller's output, bit for bit
    direct = pyscf_label(systems[0], SETTINGS)
    a0, _ = ds.frame(0)
    for k in direct:
        np.testing.assert_array_equal(a0[k], direct[k], err_msg=k)


def test_resume_skips_finished_frames(dataset):
    out, systems = dataset
    before = os.path.getmtime(out / "H2O" / "frame_000000.npz")
    report = label_frames(systems, out, SETTINGS, progress=None)
    assert report.skipped == [0, 1, 2] and report.computed == []
    assert os.path.getmtime(out / "H2O" / "frame_000000.npz") == before


def test_mixing_settings_is_refused(dataset):
    out, systems = dataset
    other = LabelSettings(basis="sto-3g", grid_level=1)
    with pytest.raises(DataFileError, match=r"different settings \(grid_level: 0 vs 1"):
        label_frames(systems, out, other, progress=None)
    with pytest.raises(InputError, match="different settings"):
        label_frames(systems, out, LabelSettings(basis="sto-3g", grid_level=0, target="b3lyp"),
                     progress=None)


def test_different_geometry_under_same_index_is_refused(dataset):
    out, systems = dataset
    moved = systems[0].replace(coords=systems[0].coords + 0.01)
    with pytest.raises(DataFileError, match="different geometry"):
        label_frames([moved], out, SETTINGS, progress=None)


def test_truncated_file_is_detected_and_recomputed(dataset, tmp_path):
    out, systems = dataset
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = copy / "H2O" / "frame_000001.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match="truncated or damaged"):
        read_frame(path)
    assert len(Dataset(copy).verify()) == 1
    # a flipped byte inside an array is caught too (zip CRC or checksum)
    path.write_bytes(data[:2000] + bytes([data[2000] ^ 0xFF]) + data[2001:])
    with pytest.raises(DataFileError, match="damaged"):
        read_frame(path)
    # the same labelling command recomputes it
    report = label_frames(systems, copy, SETTINGS, progress=None)
    assert report.recomputed_damaged == [1] and report.computed == [1]
    a, _ = read_frame(path)
    b, _ = Dataset(out).frame(1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_parallel_workers_give_the_same_labels(dataset, tmp_path):
    out, systems = dataset
    report = label_frames(systems, tmp_path / "par", SETTINGS, workers=2, threads=1,
                          progress=None)
    assert sorted(report.computed) == [0, 1, 2]
    a, b = Dataset(out), Dataset(tmp_path / "par")
    for i in range(3):
        np.testing.assert_allclose(a.frame(i)[0]["target/forces"], b.frame(i)[0]["target/forces"],
                                   rtol=0, atol=1e-12)


def test_non_dataset_folder_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(DataFileError, match="not empty"):
        label_frames(builtin_frames("water_monomers")[:1], tmp_path / "x", SETTINGS, progress=None)
    with pytest.raises(DataFileError, match="not a jaxks dataset"):
        Dataset(tmp_path / "x")


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="functional"):
        LabelSettings(target="no-such-functional")
    with pytest.raises(InputError, match="grid level"):
        LabelSettings(grid_level=12)


# --------------------------------------------------------------------------- readers
def test_extended_xyz_reader(tmp_path):
    text = ("3\nProperties=pos:R:3:species:S:1 charge=0 note=\"a b\"\n"
            "0.0 0.0 0.1 O\n0.0 0.76 -0.47 H\n0.0 -0.76 -0.47 H\n"
            "2\ncharge=1 Properties=species:S:1:pos:R:3\n"
            "He 0 0 0\nH 0 0 0.8\n\n")
    path = tmp_path / "f.extxyz"
    path.write_text(text)
    frames = read_xyz_frames(path, with_info=True)
    assert len(frames) == 2
    (w, info), (heh, _) = frames
    assert w.symbols == ("O", "H", "H") and info["note"] == "a b"
    np.testing.assert_allclose(w.coords[1], np.array([0.0, 0.76, -0.47]) * BOHR_PER_ANGSTROM)
    assert heh.symbols == ("He", "H") and heh.charge == 1 and heh.n_electrons == 2
    assert len(read_frames(path)) == 2


def test_reader_errors_are_clear(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("3\n\nO 0 0 0\nH 0 0 1\n")
    with pytest.raises(InputError, match="announces 3 atoms"):
        read_frames(path)
    with pytest.raises(InputError, match="no such file"):
        read_frames(tmp_path / "missing.xyz")
    with pytest.raises(InputError, match="no built-in dataset"):
        read_frames("builtin:nothing")


def test_builtin_sets():
    assert "water_dimers" in builtin_names()
    for name in builtin_names():
        frames = read_frames(f"builtin:{name}")
        assert frames and all(isinstance(s, System) for s in frames)
        assert hill_formula(frames[0].symbols).startswith("H")


def test_ase_reader_optional(tmp_path):
    ase = pytest.importorskip("ase")
    from ase.io import write

    atoms = ase.Atoms("OH2", positions=[[0, 0, 0.1], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    write(tmp_path / "w.cif", atoms)
    (s,) = read_frames(tmp_path / "w.cif")
    assert s.symbols == ("O", "H", "H")

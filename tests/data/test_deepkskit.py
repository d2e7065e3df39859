"""DeePKS-kit interop: export -> read round trip (Bohr and Angstrom, atom and coord layouts);
descriptor and label export against NumPy/PySCF."""

import numpy as np
import pytest

import jaxks  # noqa: F401
from jaxks.cli import main
from jaxks.data.datasets import builtin_frames
from jaxks.data.deepkskit import (read_deepks_system, write_deepks_descriptors,
                                  write_deepks_system)
from jaxks.data.labels import LabelSettings
from jaxks.data.pipeline import label_frames
from jaxks.data.readers import read_frames
from jaxks.data.store import Dataset
from jaxks.system import InputError
from jaxks.units import ANGSTROM_PER_BOHR


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dk") / "w"
    systems = builtin_frames("water_monomers")[:2] + builtin_frames("water_dimers")[:2]
    label_frames(systems, out, LabelSettings(basis="sto-3g", grid_level=0), progress=None)
    return out


@pytest.mark.parametrize("unit,layout", [("bohr", "atom"), ("angstrom", "atom"),
                                         ("angstrom", "coord"), ("bohr", "coord")])
def test_export_read_round_trip(dataset, tmp_path, unit, layout):
    out = tmp_path / "ex"
    assert main(["export", str(dataset), "--to", "deepkskit", str(out), "--unit", unit,
                 "--layout", layout]) == 0
    ds = Dataset(dataset)
    for group, idx in ds.groups.items():
        folder = out / group
        assert (folder / "unit.raw").read_text().strip() == unit.capitalize()
        assert (folder / ("atom.npy" if layout == "atom" else "type.raw")).exists()
        back = read_deepks_system(folder)
        ref = ds.stack(group, ["coords", "target/energy", "target/forces", "target/dm",
                               "base/energy"])
        assert back.symbols == tuple(ds.group_info(group)["symbols"])
        np.testing.assert_allclose(back.coords, ref["coords"], rtol=1e-14, atol=1e-13)
        np.testing.assert_array_equal(back.energy, ref["target/energy"])
        np.testing.assert_array_equal(back.force, ref["target/forces"])
        np.testing.assert_array_equal(back.dm, ref["target/dm"])
        assert np.load(folder / "energy.npy").shape == (len(idx), 1)
        np.testing.assert_array_equal(np.load(folder / "e_base.npy")[:, 0], ref["base/energy"])
        # on-disk coordinates are in the unit that unit.raw names
        stored = (np.load(folder / "atom.npy")[:, :, 1:] if layout == "atom"
                  else np.load(folder / "coord.npy"))
        scale = ANGSTROM_PER_BOHR if unit == "angstrom" else 1.0
        np.testing.assert_allclose(stored, ref["coords"] * scale, rtol=1e-15, atol=1e-14)
        # the folder reads back as geometries too
        systems = read_frames(folder)
        assert len(systems) == len(idx)
        np.testing.assert_allclose(systems[0].coords, ref["coords"][0], atol=1e-13)


def test_missing_unit_raw_means_bohr(tmp_path):
    coords = np.array([[[0.0, 0.0, 0.2], [0.0, 1.4, -0.9], [0.0, -1.4, -0.9]]])
    write_deepks_system(tmp_path, ["O", "H", "H"], coords, energy=[-76.0],
                        force=np.zeros_like(coords), unit="Bohr")
    (tmp_path / "unit.raw").unlink()
    back = read_deepks_system(tmp_path)
    assert back.unit == "Bohr"
    np.testing.assert_array_equal(back.coords, coords)
    assert back.energy.shape == (1,) and back.dm is None


def test_descriptor_writer_shapes(tmp_path):
    nf, na = 3, 6
    write_deepks_descriptors(tmp_path, np.zeros((nf, na, 108)), np.arange(nf) * 1.0,
                             np.ones((nf, na, 3)), conv=[True, False, True])
    assert np.load(tmp_path / "dm_eig.npy").shape == (nf, na, 108)
    assert np.load(tmp_path / "l_e_delta.npy").shape == (nf, 1)
    assert np.load(tmp_path / "l_f_delta.npy").shape == (nf, na, 3)
    conv = np.load(tmp_path / "conv.npy")
    assert conv.dtype == bool and conv.shape == (nf, 1) and not conv[1, 0]
    with pytest.raises(InputError, match="l_f_delta"):
        write_deepks_descriptors(tmp_path, np.zeros((nf, na, 108)), np.zeros(nf),
                                 np.ones((nf, na + 1, 3)))


def test_bad_folders_are_reported(tmp_path):
    with pytest.raises(InputError, match="no atom.npy or coord.npy"):
        read_deepks_system(tmp_path)
    np.save(tmp_path / "coord.npy", np.zeros((2, 3, 3)))
    with pytest.raises(InputError, match="type.raw"):
        read_deepks_system(tmp_path)
    (tmp_path / "type.raw").write_text("O\nH\nH\n")
    (tmp_path / "unit.raw").write_text("furlong\n")
    with pytest.raises(InputError, match="unknown length unit"):
        read_deepks_system(tmp_path)
    (tmp_path / "unit.raw").write_text("Angstrom\n")
    (tmp_path / "energy.npy").write_bytes(b"\x93NUMPY trunc")
    with pytest.raises(InputError, match="damaged or truncated"):
        read_deepks_system(tmp_path)


def test_export_descriptors_layout_and_values(dataset, tmp_path):
    from pyscf import gto

    from jaxks.integrals.projectors import default_basis, projector_mol

    assert main(["export", str(dataset), str(tmp_path), "--descriptors"]) == 0
    ds = Dataset(dataset)
    for group, idx in ds.groups.items():
        nf, natm = len(idx), len(ds.group_info(group)["symbols"])
        folder = tmp_path / group
        dm_eig = np.load(folder / "dm_eig.npy")
        assert dm_eig.shape == (nf, natm, 108)
        l_e = np.load(folder / "l_e_delta.npy")
        l_f = np.load(folder / "l_f_delta.npy")
        conv = np.load(folder / "conv.npy")
        assert l_e.shape == (nf, 1) and l_f.shape == (nf, natm, 3) and conv.shape == (nf, 1)
        assert conv.all()
        arrays, _ = ds.frame(idx[0])
        assert l_e[0, 0] == pytest.approx(float(arrays["target/energy"] - arrays["base/energy"]),
                                          abs=1e-12)
        np.testing.assert_allclose(l_f[0], arrays["target/forces"] - arrays["base/forces"],
                                   atol=1e-12)
        # independent evaluation: eigvalsh(Pᵀ Γ P) per atom and (l, radial) block, s, p, d
        mol = gto.M(atom=[(int(z), c) for z, c in zip(arrays["atomic_numbers"], arrays["coords"])],
                    unit="Bohr", basis="sto-3g", verbose=0)
        pmol = projector_mol(mol, default_basis())
        p = gto.intor_cross("int1e_ovlp", mol, pmol).reshape(mol.nao, mol.natm, 108)
        gamma = arrays["base/dm"]
        for atom in range(mol.natm):
            ref, k = [], 0
            for l in (0, 1, 2):
                for _ in range(12):
                    block = p[:, atom, k:k + 2 * l + 1]
                    ref.append(np.linalg.eigvalsh(block.T @ gamma @ block))
                    k += 2 * l + 1
            np.testing.assert_allclose(dm_eig[0, atom], np.concatenate(ref), atol=1e-12)

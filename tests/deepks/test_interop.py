"""DeePKS-kit descriptor/label export from a labelled dataset, against NumPy/PySCF."""

import numpy as np
import pytest
from pyscf import gto

from jaxks.cli import main
from jaxks.data.store import Dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from jaxks.data.datasets import builtin_frames
    from jaxks.data.labels import LabelSettings
    from jaxks.data.pipeline import label_frames

    out = tmp_path_factory.mktemp("ds") / "w1"
    label_frames(builtin_frames("water_monomers")[:2], out,
                 LabelSettings(basis="sto-3g", grid_level=0), progress=None, threads=1)
    return Dataset(out)


def test_export_descriptors_layout_and_values(dataset, tmp_path):
    from jaxks.deepks.projectors import default_basis, projector_mol

    assert main(["export", dataset.folder, str(tmp_path), "--descriptors"]) == 0
    group = next(iter(dataset.groups))
    folder = tmp_path / group
    dm_eig = np.load(folder / "dm_eig.npy")
    assert dm_eig.shape == (2, 3, 108)
    l_e = np.load(folder / "l_e_delta.npy")
    l_f = np.load(folder / "l_f_delta.npy")
    conv = np.load(folder / "conv.npy")
    assert l_e.shape == (2, 1) and l_f.shape == (2, 3, 3) and conv.shape == (2, 1) and conv.all()
    arrays, _ = dataset.frame(dataset.groups[group][0])
    assert l_e[0, 0] == pytest.approx(float(arrays["target/energy"] - arrays["base/energy"]),
                                      abs=1e-12)
    np.testing.assert_allclose(l_f[0], arrays["target/forces"] - arrays["base/forces"],
                               atol=1e-12)
    # independent evaluation: eigvalsh(Pᵀ Γ P) per atom and (l, radial) block, s then p then d
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

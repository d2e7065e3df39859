"""Input validation of jaxks.system: each bad input gives the documented message."""

import numpy as np
import pytest

from jaxks.system import InputError, System
from jaxks.units import BOHR_PER_ANGSTROM

WATER_XYZ = """3
water
O   0.000000   0.000000   0.117790
H   0.000000   0.755453  -0.471161
H   0.000000  -0.755453  -0.471161
"""


def test_xyz_is_read_in_angstrom(tmp_path):
    path = tmp_path / "w.xyz"
    path.write_text(WATER_XYZ)
    s = System.from_xyz(path)
    assert s.symbols == ("O", "H", "H")
    np.testing.assert_allclose(s.coords[1], np.array([0.0, 0.755453, -0.471161]) * BOHR_PER_ANGSTROM)
    assert s.n_electrons == 10
    mol = s.to_pyscf()
    np.testing.assert_allclose(mol.atom_coords(unit="Angstrom")[1], [0.0, 0.755453, -0.471161],
                               atol=1e-12)


def test_from_pyscf_round_trip():
    from pyscf import gto

    mol = gto.M(atom="N 0 0 0; N 0 0 1.1", basis="sto-3g", verbose=0)
    s = System.from_pyscf(mol)
    assert s.symbols == ("N", "N") and s.basis == "sto-3g"
    np.testing.assert_allclose(s.coords, mol.atom_coords())


def test_unknown_element(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text(WATER_XYZ.replace("O  ", "Qq "))
    with pytest.raises(InputError, match="line 3: unknown element: 'Qq'"):
        System.from_xyz(path)
    with pytest.raises(InputError, match="unknown element"):
        System.from_symbols(["Xy"], [[0, 0, 0]])


def test_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="cannot read xyz file"):
        System.from_xyz(tmp_path / "missing.xyz")
    binary = tmp_path / "binary.xyz"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="cannot read xyz file"):
        System.from_xyz(binary)


@pytest.mark.parametrize("text,message", [
    ("", "empty xyz file"),
    ("three\nc\nO 0 0 0\n", "expected the number of atoms"),
    ("3\nc\nO 0 0 0\nH 0 0 1\n", "announces 3 atoms but only 2"),
    ("1\nc\nO 0 0\n", "expected 'element x y z'"),
    ("1\nc\nO 0 zero 0\n", "coordinates are not numbers"),
])
def test_malformed_xyz(tmp_path, text, message):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        System.from_xyz(path)


def test_odd_electron_count():
    with pytest.raises(InputError, match="open-shell systems are not supported yet: 9 electrons"):
        System.from_symbols(["O", "H"], [[0, 0, 0], [0, 0, 0.97]])
    with pytest.raises(InputError, match="open-shell systems are not supported yet: 11 electrons"):
        System.from_xyz_string(WATER_XYZ, charge=-1)


def test_atoms_on_top_of_each_other():
    with pytest.raises(InputError, match="atoms 0 \\(O\\) and 2 \\(H\\) are on top of each other"):
        System.from_symbols(["O", "H", "H"], [[0, 0, 0], [0, 0.76, 0.59], [0, 0, 0.05]])


def test_unknown_basis_for_element():
    s = System.from_symbols(["U", "U"], [[0, 0, 0], [0, 0, 3.0]], basis="6-31g")
    with pytest.raises(InputError, match="cannot build basis"):
        s.to_pyscf()


# --------------------------------------------------------------------------- periodic cells
BOX_XYZ = """3
Lattice="4.5 0.0 0.0 0.0 4.5 0.0 0.0 0.0 4.5" Properties=species:S:1:pos:R:3 pbc="T T T"
O   0.000000   0.000000   0.117790
H   0.000000   0.755453  -0.471161
H   0.000000  -0.755453  -0.471161
"""


def test_extxyz_lattice_makes_a_periodic_cell():
    s = System.from_xyz_string(BOX_XYZ)
    assert s.periodic
    np.testing.assert_allclose(s.lattice, np.eye(3) * 4.5 * BOHR_PER_ANGSTROM)
    # ASE reads a Lattice without pbc as periodic too
    assert System.from_xyz_string(BOX_XYZ.replace(' pbc="T T T"', "")).periodic
    # pbc="F F F": a molecule in a box
    assert not System.from_xyz_string(BOX_XYZ.replace("T T T", "F F F")).periodic
    assert not System.from_xyz_string(WATER_XYZ).periodic


def test_periodic_xyz_round_trip():
    s = System.from_xyz_string(BOX_XYZ)
    again = System.from_xyz_string(s.to_xyz("frame 0"))
    assert again.periodic and again.symbols == s.symbols
    np.testing.assert_allclose(again.lattice, s.lattice, atol=1e-9)
    np.testing.assert_allclose(again.coords, s.coords, atol=1e-9)


@pytest.mark.parametrize("comment,message", [
    ('Lattice="4.5 0 0 0 4.5 0 0 0 4.5" pbc="T T F"', "periodic in some directions only"),
    ('pbc="T T T"', "has no Lattice"),
    ('Lattice="4.5 0 0 0 4.5 0" pbc="T T T"', "has 6 numbers, expected 9"),
    ('Lattice="4.5 0 0 0 4.5 0 0 0 x"', "is not nine numbers"),
    ('Lattice="4.5 0 0 4.5 0 0 0 0 4.5"', "linearly independent"),
    ('Lattice="0.2 0 0 0 4.5 0 0 0 4.5"', "a periodic image"),
    ('Lattice="4.5 0 0 0 4.5 0 0 0 4.5" pbc="yes"', "is not three T/F flags"),
])
def test_bad_periodic_settings_are_errors(comment, message):
    with pytest.raises(InputError, match=message):
        System.from_xyz_string(BOX_XYZ.splitlines()[0] + "\n" + comment + "\n"
                               + "\n".join(BOX_XYZ.splitlines()[2:]))


def test_atoms_too_close_across_the_boundary():
    with pytest.raises(InputError, match=r"\(a periodic image\) are on top of each other"):
        System.from_symbols(["He", "He"], [[0.1, 0, 0], [4.35, 0, 0]], lattice_angstrom=[4.5] * 3)


def test_a_cell_is_never_run_as_a_molecule():
    from jaxks.system import require_cluster

    s = System.from_xyz_string(BOX_XYZ)
    with pytest.raises(InputError, match="molecules \\(clusters\\) only; OH2 is a periodic cell"):
        s.to_pyscf()
    with pytest.raises(InputError, match="forces is implemented for molecules"):
        require_cluster(s, "forces")
    require_cluster(System.from_xyz_string(WATER_XYZ), "forces")  # a molecule passes


def test_ase_atoms_with_a_cell():
    ase = pytest.importorskip("ase")
    atoms = ase.Atoms("OH2", positions=[[0, 0, 0.1], [0, 0.76, -0.47], [0, -0.76, -0.47]],
                      cell=[5.0, 5.0, 5.0], pbc=True)
    s = System.from_ase(atoms)
    assert s.periodic
    np.testing.assert_allclose(s.lattice, np.eye(3) * 5.0 * BOHR_PER_ANGSTROM)
    atoms.pbc = False
    assert not System.from_ase(atoms).periodic
    atoms.pbc = [True, True, False]
    with pytest.raises(InputError, match="some directions only"):
        System.from_ase(atoms)


def test_from_pyscf_cell():
    from pyscf.pbc import gto

    cell = gto.M(atom="He 0 0 0", a=np.eye(3) * 3.0, basis="sto-3g", verbose=0)
    s = System.from_pyscf(cell)
    assert s.periodic
    np.testing.assert_allclose(s.lattice, cell.lattice_vectors())

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

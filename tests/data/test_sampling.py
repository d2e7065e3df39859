"""Water geometry generation: validity criteria, requested size, determinism, carving."""

import numpy as np
import pytest

import jaxks  # noqa: F401
from jaxks.cli import main
from jaxks.data.forcefield import SPC_FW, water_energy
from jaxks.data.readers import read_xyz_frames
from jaxks.data.sampling import carve_cluster, sample_water, sample_water_box, write_frames_xyz
from jaxks.system import InputError
from jaxks.units import ANGSTROM_PER_BOHR


def _check_water_frames(systems, n):
    """The issue's criteria, computed here independently of the sampler's own checks."""
    for s in systems:
        assert s.symbols == ("O", "H", "H") * n
        x = np.asarray(s.coords).reshape(n, 3, 3) * ANGSTROM_PER_BOHR
        # every H is bonded to its own O, and nearer to it than to any other O
        oh = np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1)
        assert oh.min() >= 0.85 and oh.max() <= 1.15, oh
        if n > 1:
            d = np.linalg.norm(x[:, None, 0] - x[None, :, 0], axis=-1)
            assert d[np.triu_indices(n, 1)].min() >= 2.3
            h = x[:, 1:].reshape(-1, 3)
            d_ho = np.linalg.norm(h[:, None] - x[None, :, 0], axis=-1)
            assert np.array_equal(np.argmin(d_ho, axis=1), np.repeat(np.arange(n), 2))


@pytest.fixture(scope="module")
def tetramers():
    return sample_water(4, 12, seed=0, distort=0.5)


def test_clusters_satisfy_criteria(tetramers, tmp_path):
    path = tmp_path / "w4.xyz"
    write_frames_xyz(tetramers, path)
    frames = read_xyz_frames(path, with_info=True)
    assert len(frames) == 12
    _check_water_frames([s for s, _ in frames], 4)
    infos = [i for _, i in frames]
    assert {i["variant"] for i in infos} == {"md", "distorted"}
    assert all(i["units"] == "angstrom" and i["seed"] == "0" and i["n"] == "4" for i in infos)
    assert [int(i["frame"]) for i in infos] == list(range(12))


def test_clusters_have_hydrogen_bond_network(tetramers):
    """Liquid-like clusters: most molecules have an O–O neighbour within H-bond range."""
    near = []
    for f in tetramers:
        if f.info["variant"] != "md":
            continue
        o = f.coords.reshape(4, 3, 3)[:, 0]
        d = np.linalg.norm(o[:, None] - o[None], axis=-1) + 10 * np.eye(4)
        near.append(d.min(axis=1) < 3.3)
    assert np.mean(near) > 0.75


@pytest.mark.parametrize("n", [1, 9])
def test_other_sizes(n):
    frames = sample_water(n, 3, seed=3, equilibration_fs=300.0)
    assert len(frames) == 3
    _check_water_frames([f.to_system() for f in frames], n)


def test_same_seed_same_output_through_cli(tmp_path):
    args = ["sample", "water", "--n", "3", "--frames", "5", "--equilibration", "200", "--quiet"]
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert main(args + ["--seed", str(seed), "-o", str(tmp_path / f"{name}.xyz")]) == 0
    a, b, c = ((tmp_path / f"{k}.xyz").read_bytes() for k in "abc")
    assert a == b
    assert a != c
    _check_water_frames(read_xyz_frames(tmp_path / "a.xyz"), 3)


def test_bad_requests_are_refused():
    with pytest.raises(InputError, match="between 1 and"):
        sample_water(0, 3)
    with pytest.raises(InputError, match="positive"):
        sample_water(2, 0)


def test_carve_unwraps_across_the_boundary():
    """Molecules near the opposite face of the box come back next to the centre, whole."""
    box = 10.0
    mol = np.array([[0.0, 0.0, 0.0], [0.95, 0.0, 0.0], [-0.3, 0.9, 0.0]])
    centres = np.array([[0.5, 5.0, 5.0], [9.6, 5.0, 5.0], [5.0, 5.0, 5.0], [3.4, 5.0, 5.0]])
    pos = centres[:, None, :] + mol[None]
    x = carve_cluster(pos, box, centre=0, n=3)
    # nearest by minimum image: itself (0), the one across the face (0.9 away), then 2.9 away
    assert np.allclose(x[:, 0, 0], [0.5, -0.4, 3.4])
    assert np.allclose(x - x[:, :1], mol[None] - mol[:1])


def test_forcefield_matches_numpy_two_molecules():
    """SPC/Fw energy of two molecules in a large box vs a direct NumPy evaluation."""
    from scipy.special import erfc

    rng = np.random.default_rng(0)
    a = np.array([[0.0, 0.0, 0.0], [1.0, 0.1, 0.0], [-0.25, 0.97, 0.05]])
    b = a @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T + np.array([2.9, 0.3, -0.2])
    pos = np.stack([a, b])
    m = SPC_FW
    rc, al = 9.0, 0.2

    def intra(x):
        u, v = x[1] - x[0], x[2] - x[0]
        ru, rv = np.linalg.norm(u), np.linalg.norm(v)
        th = np.arccos(u @ v / ru / rv)
        return (0.5 * m.k_bond * ((ru - m.r0) ** 2 + (rv - m.r0) ** 2)
                + 0.5 * m.k_angle * (th - np.deg2rad(m.theta0)) ** 2)

    q = [m.q_o, m.q_h, m.q_h]
    vc = lambda r: (erfc(al * r) / r - erfc(al * rc) / rc  # noqa: E731
                    + (erfc(al * rc) / rc**2 + 2 * al / np.sqrt(np.pi)
                       * np.exp(-al**2 * rc**2) / rc) * (r - rc))
    e = intra(a) + intra(b)
    e += sum(332.0637 * q[i] * q[j] * vc(np.linalg.norm(a[i] - b[j]))
             for i in range(3) for j in range(3))
    r = np.linalg.norm(a[0] - b[0])
    lj = lambda r: 4 * m.epsilon * ((m.sigma / r) ** 12 - (m.sigma / r) ** 6)  # noqa: E731
    e += lj(r) - lj(rc)
    assert abs(float(water_energy(pos, 40.0, m, rc, al)) - e) < 1e-9


def test_forcefield_images_equal_a_brute_force_lattice_sum():
    """Two molecules in a 4 Å box (smaller than twice the 9 Å cutoff): the image-summed energy
    per cell equals ½ Σ over every site pair of the cell and of its images within R_c
    (NumPy, translations up to ±4 cells), plus the intramolecular terms."""
    from scipy.special import erfc

    m, rc, al, box = SPC_FW, 9.0, 0.2, 4.0
    a = np.array([[0.3, 0.2, 0.1], [1.25, 0.35, 0.1], [0.05, 1.17, 0.15]])
    b = np.array([[2.3, 2.1, 2.4], [3.2, 2.4, 2.2], [2.1, 2.2, 3.35]])
    pos = np.stack([a, b])
    q = np.array([m.q_o, m.q_h, m.q_h])
    vc = lambda r: (erfc(al * r) / r - erfc(al * rc) / rc  # noqa: E731
                    + (erfc(al * rc) / rc**2 + 2 * al / np.sqrt(np.pi)
                       * np.exp(-al**2 * rc**2) / rc) * (r - rc))
    lj = lambda r: 4 * m.epsilon * ((m.sigma / r) ** 12 - (m.sigma / r) ** 6)  # noqa: E731
    inter = 0.0
    for n in np.ndindex(9, 9, 9):
        t = (np.array(n) - 4) * box
        for i in range(2):
            for j in range(2):
                if i == j and not t.any():
                    continue
                for s in range(3):
                    for u in range(3):
                        r = np.linalg.norm(pos[i, s] - pos[j, u] - t)
                        if r < rc:
                            inter += 0.5 * 332.0637 * q[s] * q[u] * vc(r)
                            if s == u == 0:
                                inter += 0.5 * (lj(r) - lj(rc))
    intra = float(water_energy(pos[:1], 100.0, m, rc, al) + water_energy(pos[1:], 100.0, m, rc, al))
    got = float(water_energy(pos, box, m, rc, al, images=3))
    assert abs(got - (intra + inter)) < 1e-8 * max(1.0, abs(inter))


def test_periodic_boxes(tmp_path):
    """--box N: periodic cells of N molecules at liquid density, written as extended xyz with
    Lattice= and pbc="T T T" and read back as periodic Systems; minimum-image distances pass
    the water criteria; a liquid: every molecule has an O–O neighbour (an image counts) closer
    than 3.3 Å."""
    from jaxks.data.forcefield import WATER_NUMBER_DENSITY

    path = tmp_path / "box.extxyz"
    args = ["sample", "water", "--box", "8", "--frames", "2", "--equilibration", "600", "--quiet",
            "-o", str(path)]
    assert main(args) == 0
    text = path.read_text().splitlines()
    assert text[1].startswith('Lattice="6.21') and 'pbc="T T T"' in text[1]
    systems = read_xyz_frames(path)
    assert len(systems) == 2
    for s in systems:
        assert s.periodic and s.symbols == ("O", "H", "H") * 8
        side = s.lattice[0, 0] * ANGSTROM_PER_BOHR
        np.testing.assert_allclose(s.lattice * ANGSTROM_PER_BOHR, np.eye(3) * side)
        assert abs(8 / side**3 - WATER_NUMBER_DENSITY) < 1e-9
        x = np.asarray(s.coords).reshape(8, 3, 3) * ANGSTROM_PER_BOHR
        assert np.all((x[:, 0] >= 0) & (x[:, 0] < side))
        oh = np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1)
        assert oh.min() >= 0.85 and oh.max() <= 1.15
        v = x[:, None, 0] - x[None, :, 0]
        v -= side * np.round(v / side)
        d = np.linalg.norm(v, axis=-1) + np.diag(np.full(8, np.inf))
        assert d.min() >= 2.3 and np.all(d.min(1) < 3.3), d.min(1)
    for extra in (["--n", "2"], ["--distort", "0.5"]):
        assert main(args + extra) == 2
    # DFT-like molecules in a box (as for clusters): shorter O–H than SPC/Fw's 1.03 Å
    (dft,) = sample_water_box(2, 1, seed=1, equilibration_fs=300.0, intramolecular="dft")
    x = dft.coords.reshape(2, 3, 3)
    assert dft.lattice is not None and dft.info["intramolecular"] == "dft"
    assert np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1).mean() < 1.0
    # the jaxks labeller is for clusters only: refused before any calculation, not run as a
    # cluster (PySCF labels boxes: tests/data/test_cell_labels.py)
    assert main(["label", str(path), "--out", str(tmp_path / "data"), "--quiet",
                 "--engine", "jaxks"]) == 2
    assert not (tmp_path / "data").exists()


def _oh_and_angles(frames, n):
    x = np.stack([f.coords.reshape(n, 3, 3) for f in frames])
    u = x[:, :, 1:] - x[:, :, :1]
    r = np.linalg.norm(u, axis=-1)
    cos = np.sum(u[:, :, 0] * u[:, :, 1], -1) / (r[..., 0] * r[..., 1])
    return r.ravel(), np.degrees(np.arccos(cos)).ravel()


def test_dft_intramolecular_geometry_covers_optimised_water():
    """``intramolecular="dft"``: the same dynamics, every O–H shorter by 0.042 Å and every HOH
    narrower by 9.04° (thermal spread kept): bonds near 0.99 Å instead of SPC/Fw's 1.03 Å."""
    ff = sample_water(4, 6, seed=2, distort=0.0, equilibration_fs=300.0)
    dft = sample_water(4, 6, seed=2, distort=0.0, equilibration_fs=300.0,
                       intramolecular="dft")
    r_ff, a_ff = _oh_and_angles(ff, 4)
    r_dft, a_dft = _oh_and_angles(dft, 4)
    np.testing.assert_allclose(r_dft, r_ff - 0.042, atol=1e-9)
    np.testing.assert_allclose(a_dft, a_ff - (113.24 - 104.2), atol=1e-7)
    assert 0.96 < r_dft.mean() < 1.0 and r_ff.mean() > 1.0
    assert all(f.info["intramolecular"] == "dft" for f in dft)
    # the O positions (the intermolecular structure) are untouched
    o = lambda fr: np.stack([f.coords.reshape(4, 3, 3)[:, 0] - f.coords.reshape(4, 3, 3)[:, 0].mean(0) for f in fr])  # noqa: E731
    np.testing.assert_allclose(o(dft), o(ff), atol=1e-2)
    with pytest.raises(InputError, match="intramolecular"):
        sample_water(1, 1, intramolecular="tip3p")

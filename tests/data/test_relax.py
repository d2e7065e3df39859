"""``jaxks sample water --relax``: carved clusters minimised in vacuum (compact H-bonded minima)."""

import numpy as np
import pytest

import jaxks  # noqa: F401
from jaxks.cli import main
from jaxks.data.forcefield import SPC_FW, cluster_energy
from jaxks.data.readers import read_xyz_frames
from jaxks.data.sampling import cluster_structure, sample_water
from jaxks.units import ANGSTROM_PER_BOHR

N = 4


def _numpy_energy(x):
    """SPC/Fw of an isolated cluster, written out pair by pair (kcal/mol): harmonic O–H and HOH,
    plain Coulomb between every intermolecular site pair, plain O–O Lennard-Jones."""
    m, x = SPC_FW, x.reshape(-1, 3, 3)
    q = [m.q_o, m.q_h, m.q_h]
    e = 0.0
    for a in x:
        u, v = a[1] - a[0], a[2] - a[0]
        ru, rv = np.linalg.norm(u), np.linalg.norm(v)
        th = np.arccos(u @ v / ru / rv)
        e += (0.5 * m.k_bond * ((ru - m.r0) ** 2 + (rv - m.r0) ** 2)
              + 0.5 * m.k_angle * (th - np.deg2rad(m.theta0)) ** 2)
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            for s in range(3):
                for t in range(3):
                    e += 332.0637 * q[s] * q[t] / np.linalg.norm(x[i, s] - x[j, t])
            r = np.linalg.norm(x[i, 0] - x[j, 0])
            e += 4 * m.epsilon * ((m.sigma / r) ** 12 - (m.sigma / r) ** 6)
    return e


def _numpy_gradient(x, h=1e-5):
    x = np.asarray(x, np.float64).ravel()
    g = np.zeros_like(x)
    for k in range(len(x)):
        d = np.zeros_like(x)
        d[k] = h
        g[k] = (_numpy_energy(x + d) - _numpy_energy(x - d)) / (2 * h)
    return g


def _hbonds(x):
    """Donor O–H groups pointing (within 30°) at another O closer than 3.3 Å, per molecule."""
    x = x.reshape(-1, 3, 3)
    count = 0
    for i, a in enumerate(x):
        for h in (1, 2):
            oh = a[h] - a[0]
            for j, b in enumerate(x):
                oo = b[0] - a[0]
                r = np.linalg.norm(oo)
                if j != i and r < 3.3 and oh @ oo / (np.linalg.norm(oh) * r) > np.cos(np.pi / 6):
                    count += 1
                    break
    return count / len(x)


@pytest.fixture(scope="module")
def pairs():
    """(carved, relaxed) tetramers: the relaxation leaves the carving untouched (same seed)."""
    kw = dict(seed=5, equilibration_fs=300.0, distort=0.0)
    carved = sample_water(N, 4, **kw)
    relaxed = sample_water(N, 4, relax=True, anneal_fs=500.0, **kw)
    return list(zip(carved, relaxed))


def test_cluster_energy_matches_numpy():
    rng = np.random.default_rng(1)
    a = np.array([[0.0, 0.0, 0.0], [1.0, 0.1, 0.0], [-0.25, 0.97, 0.05]])
    x = np.stack([a @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T + 2.9 * k * np.array(
        [1.0, 0.2, -0.1]) for k in range(3)])
    assert abs(float(cluster_energy(x)) - _numpy_energy(x)) < 1e-9


def test_relaxed_clusters_are_minima(pairs):
    """Finite-difference gradient of the NumPy energy ~0; energy below the carved cluster's;
    at least as many H-bonds; metadata records the relaxation."""
    for carved, relaxed in pairs:
        assert relaxed.info["centre"] == carved.info["centre"]
        assert relaxed.info["snapshot"] == carved.info["snapshot"]
        assert relaxed.info["relaxed"] is True and relaxed.info["variant"] == "relaxed"
        assert relaxed.info["anneal_fs"] == 500.0 and relaxed.info["anneal_T"] == 100.0
        assert np.abs(_numpy_gradient(relaxed.coords)).max() < 1e-3
        assert _numpy_energy(relaxed.coords) < _numpy_energy(carved.coords) - 1.0
        assert _hbonds(relaxed.coords) >= _hbonds(carved.coords)
        assert _hbonds(relaxed.coords) == pytest.approx(
            cluster_structure(relaxed.coords.reshape(N, 3, 3))["hbonds"])


def test_cluster_structure_of_a_dimer():
    """Linear H-bonded dimer at O–O 2.9 Å: one bond for two molecules, O–O nearest-neighbour
    2.9, oxygen radius of gyration 1.45; the same dimer with the donor H turned away: none."""
    donor = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    acceptor = np.array([[2.9, 0.0, 0.0], [3.2, 0.6, 0.6], [3.2, -0.6, 0.6]])
    s = cluster_structure(np.stack([donor, acceptor]))
    assert s == pytest.approx(dict(oo_nn=2.9, hbonds=0.5, rg=1.45))
    turned = donor * np.array([-1.0, 1.0, 1.0])
    assert cluster_structure(np.stack([turned, acceptor]))["hbonds"] == 0.0


def test_relax_is_deterministic_and_refused_for_boxes(tmp_path, capsys):
    args = ["sample", "water", "--n", "3", "--frames", "2", "--equilibration", "200", "--quiet",
            "--relax", "--anneal-time", "300", "--intramolecular", "dft"]
    for name in "ab":
        assert main(args + ["-o", str(tmp_path / f"{name}.xyz")]) == 0
    a, b = ((tmp_path / f"{k}.xyz").read_bytes() for k in "ab")
    assert a == b
    text = a.decode().splitlines()[1]
    assert "relaxed=T" in text and "anneal_fs=300.0" in text and "intramolecular=dft" in text
    for s in read_xyz_frames(tmp_path / "a.xyz"):  # the DFT-like molecules of the minimum
        x = np.asarray(s.coords).reshape(3, 3, 3) * ANGSTROM_PER_BOHR
        assert 0.95 < np.linalg.norm(x[:, 1:] - x[:, :1], axis=-1).mean() < 1.0
    box = ["sample", "water", "--box", "8", "--frames", "1", "--quiet", "-o",
           str(tmp_path / "c.xyz")]
    capsys.readouterr()
    assert main(box + ["--relax"]) == 2
    assert "--relax minimises isolated clusters" in capsys.readouterr().err
    assert main(args[:-5] + ["--anneal-only", "-o", str(tmp_path / "d.xyz")]) == 2
    assert not (tmp_path / "c.xyz").exists() and not (tmp_path / "d.xyz").exists()


def test_anneal_only_keeps_the_snapshot_above_its_minimum(pairs):
    """``minimise=False``: the 100 K vacuum snapshot with the sampler's key (documented in
    sample_water) — below the carved cluster in energy (the heat of the new H-bonds is carried
    away), above the minimum the sampler reached from it, and not itself stationary."""
    import jax

    from jaxks.data.sampling import make_relaxer

    relax = make_relaxer(anneal_fs=500.0, minimise=False)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(5), 2**32 - 1), 1)
    carved, relaxed = pairs[0]
    snap, info = relax(carved.coords.reshape(N, 3, 3), key)
    assert info["minimised"] is False and "relax_e_kcal" not in info
    e_snap = _numpy_energy(snap)
    assert _numpy_energy(relaxed.coords) < e_snap < _numpy_energy(carved.coords)
    assert np.abs(_numpy_gradient(snap)).max() > 0.1

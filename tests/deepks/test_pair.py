"""The optional pair term E_pair = Σ_{I≠J} [NN_pair(q^{IJ}) − NN_pair(0)] / output_scale on the
off-site projected blocks (water dimer, STO-3G, default projector basis):

* the features against a NumPy loop over atom pairs and shells written from the definition, and
  the whole term against a NumPy forward pass of the pair network;
* invariance of q and E_pair under a rotation of the dimer (RHF densities of both orientations)
  and of q under swapping the pair with transposition;
* V_δ = ∂E_δ/∂Γ against finite differences, forces against finite differences of E_δ at fixed Γ
  moving the atoms (projector overlaps from PySCF at every displaced geometry);
* a fresh pair model is the on-site-only model (zero last layer); model files keep the pair
  network, and files without it (the shipped water model) load as models without it;
* a DeePKS-SCF with a random pair network converges.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.deepks.correction import (DeePKSTerm, correction_potential, deepks_forces,
                                     deepks_params)
from jaxks.deepks.descriptors import DIFFUSE_PAIR_RADIAL
from jaxks.deepks.io import DeePKSModel, ModelFileError, load_model, save_model
from jaxks.deepks.model import ModelConfig, init_model
from jaxks.integrals.projectors import default_basis, projector_derivatives, projector_overlaps
from jaxks.system import InputError
from jaxks.units import BOHR_PER_ANGSTROM
from tests import geometries as geo
from tests.deepks.conftest import fd_forces_at_fixed_density, make_mol, rhf_density, richardson
from tests.deepks.test_model import numpy_forward

DIMER = (geo.WATER_DIMER[0], np.asarray(geo.WATER_DIMER[1]) * BOHR_PER_ANGSTROM)
#: Start of the l = 0, 1, 2 shells of the default basis along the projector axis (12 radial
#: functions each, m fastest inside a radial function).
L_START = {0: 0, 1: 12, 2: 48}


def pair_model(seed=0, output_scale=100.0, last_scale=0.0, **pair):
    """On-site network (32, 32) plus a pair network; ``last_scale`` > 0 draws its last layer
    (zero in a fresh model) from N(0, last_scale²) so that E_pair ≠ 0."""
    basis = default_basis()
    pair = dict(dict(pair_radial=DIFFUSE_PAIR_RADIAL), **pair)
    config = ModelConfig(basis.shell_sections, hidden=(32, 32), output_scale=output_scale,
                         **pair)
    params = init_model(config, jax.random.PRNGKey(seed))
    # shift by a typical descriptor value so the on-site network sees O(1) inputs
    params = dataclasses.replace(params, shift=jnp.full(config.ndesc, 0.2))
    if last_scale:
        rng = np.random.default_rng(seed)
        last = f"dense_{len(config.pair_hidden)}"
        layers = dict(params.pair_net["params"])
        layers[last] = {k: jnp.asarray(rng.normal(size=v.shape) * last_scale)
                        for k, v in layers[last].items()}
        params = dataclasses.replace(params, pair_net={"params": layers})
    return DeePKSTerm.for_model(config, basis), params


@pytest.fixture(scope="module")
def dimer():
    mol = make_mol(*DIMER)
    return mol, jnp.asarray(rhf_density(mol))


def brute_force_q(p, dm, pair_radial, pair_l, floor):
    """q[I, J, a, b] by explicit loops (pair shells: l slowest, then radial index)."""
    natm = p.shape[1]
    shells = [(l, r) for l in pair_l for r in pair_radial]
    q = np.zeros((natm, natm, len(shells), len(shells)))
    for i in range(natm):
        for j in range(natm):
            for a, (la, ra) in enumerate(shells):
                for b, (lb, rb) in enumerate(shells):
                    sa = L_START[la] + ra * (2 * la + 1)
                    sb = L_START[lb] + rb * (2 * lb + 1)
                    block = p[:, i, sa:sa + 2 * la + 1].T @ dm @ p[:, j, sb:sb + 2 * lb + 1]
                    q[i, j, a, b] = np.sqrt(np.sum(block ** 2) + floor ** 2) - floor
    return q


@pytest.mark.parametrize("pair", [dict(), dict(pair_radial=(11, 4, 7), pair_l=(2, 0),
                                               pair_floor=1e-2)])
def test_features_and_energy_match_brute_force(dimer, pair):
    mol, dm = dimer
    term, params = pair_model(last_scale=0.5, **pair)
    c = term.config
    p = np.asarray(projector_overlaps(mol).overlaps)
    ref = brute_force_q(p, np.asarray(dm), c.pair_radial, c.pair_l, c.pair_floor)
    q = np.asarray(term.pair_features(dm, jnp.asarray(p)))
    assert q.shape == ref.shape == (6, 6, c.n_pair_shells, c.n_pair_shells)
    np.testing.assert_allclose(q, ref, rtol=0, atol=1e-12)
    # swapping the pair with transposition: q^{JI}_{ba} = q^{IJ}_{ab}
    np.testing.assert_allclose(q, q.transpose(1, 0, 3, 2), rtol=0, atol=1e-14)
    assert ref[0, 3].max() > 1e-2  # the two molecules see each other

    # E_δ with the pair term − without it = Σ_{I≠J} [MLP(q^{IJ}) − MLP(0)] / output_scale
    theta = deepks_params(params, projector_overlaps(mol))
    onsite = DeePKSTerm(dataclasses.replace(c, pair_radial=()), term.shells)
    got = float(term(dm, theta) - onsite(dm, theta))
    mlp = numpy_forward(params.pair_net, ref.reshape(6, 6, -1), c.pair_hidden, resnet=False)
    mlp0 = numpy_forward(params.pair_net, np.zeros(c.n_pair_shells ** 2), c.pair_hidden,
                         resnet=False)
    want = np.sum((mlp - mlp0) * (1 - np.eye(6))) / c.output_scale
    assert abs(want) > 1e-4
    assert abs(got - want) < 1e-12 * max(1.0, abs(want))


def rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_rotation_invariance(dimer):
    """q and E_pair of the rotated and translated dimer (its own RHF density) are those of the
    original, atom by atom (RHF converged to 1e-13 Eh: no grid breaks the symmetry)."""
    mol, dm = dimer
    term, params = pair_model(last_scale=0.5)
    coords = DIMER[1]
    centre = coords.mean(0)
    moved = (coords - centre) @ rotation(3).T + centre + np.array([0.7, -1.1, 0.4])
    mol_r = make_mol(DIMER[0], moved)
    dm_r = jnp.asarray(rhf_density(mol_r))
    theta = deepks_params(params, projector_overlaps(mol))
    theta_r = deepks_params(params, projector_overlaps(mol_r))
    q = term.pair_features(dm, theta.overlaps)
    q_r = term.pair_features(dm_r, theta_r.overlaps)
    np.testing.assert_allclose(q_r, q, rtol=0, atol=1e-9)
    onsite = DeePKSTerm(dataclasses.replace(term.config, pair_radial=()), term.shells)
    e_pair = float(term(dm, theta) - onsite(dm, theta))
    e_pair_r = float(term(dm_r, theta_r) - onsite(dm_r, theta_r))
    assert abs(e_pair) > 1e-4
    assert abs(e_pair_r - e_pair) < 1e-9 * abs(e_pair)


def test_potential_matches_finite_differences(dimer):
    mol, dm = dimer
    term, params = pair_model(seed=1, output_scale=10.0, last_scale=1.0)
    theta = deepks_params(params, projector_overlaps(mol))
    v = correction_potential(term, dm, theta)
    onsite = DeePKSTerm(dataclasses.replace(term.config, pair_radial=()), term.shells)
    assert np.abs(v - correction_potential(onsite, dm, theta)).max() > 1e-3  # the pair part
    energy = jax.jit(term)
    rng = np.random.default_rng(7)
    n, h = dm.shape[0], 1e-5
    directions = [rng.normal(size=(n, n)) for _ in range(3)]
    for i, j in [(0, 0), (2, 9), (5, 12)]:  # single elements, intra- and intermolecular
        e = np.zeros((n, n))
        e[i, j] = e[j, i] = 1.0
        directions.append(e)
    for t in directions:
        t = jnp.asarray(0.5 * (t + t.T))
        fd = richardson(lambda s: float(energy(dm + s * t, theta)), h)
        np.testing.assert_allclose(jnp.vdot(v, t), fd, rtol=0, atol=1e-9)


def test_forces_match_finite_differences(dimer):
    """F = −dE_δ/dR at fixed Γ with the pair term: move one atom (its AOs and projectors) and
    recompute the overlaps P with PySCF."""
    mol, dm = dimer
    term, params = pair_model(seed=2, output_scale=10.0, last_scale=1.0)
    theta = deepks_params(params, projector_overlaps(mol))
    forces = np.asarray(deepks_forces(term, dm, theta, projector_derivatives(mol)))
    onsite = DeePKSTerm(dataclasses.replace(term.config, pair_radial=()), term.shells)
    f_onsite = np.asarray(deepks_forces(onsite, dm, theta, projector_derivatives(mol)))
    assert np.abs(forces - f_onsite).max() > 1e-3  # the pair part is not negligible
    np.testing.assert_allclose(forces.sum(0), 0, atol=1e-10)  # translation invariance
    fd = fd_forces_at_fixed_density(term, params, mol, dm)
    np.testing.assert_allclose(forces, fd, rtol=0, atol=1e-9)


def test_fresh_pair_model_is_the_onsite_model_and_files_keep_it(dimer, tmp_path):
    mol, dm = dimer
    basis = default_basis()
    term, params = pair_model(seed=4)
    onsite_config = dataclasses.replace(term.config, pair_radial=())
    onsite_params = init_model(onsite_config, jax.random.PRNGKey(4))
    onsite_params = dataclasses.replace(onsite_params, shift=params.shift)
    assert onsite_params.pair_net == {}
    onsite = DeePKSTerm(onsite_config, term.shells)
    theta = deepks_params(params, projector_overlaps(mol))
    theta0 = deepks_params(onsite_params, projector_overlaps(mol))
    # the same on-site network (same key) and a zero last pair layer: E_pair = 0 exactly
    assert float(term(dm, theta)) == float(onsite(dm, theta0))
    np.testing.assert_allclose(correction_potential(term, dm, theta),
                               correction_potential(onsite, dm, theta0), rtol=0, atol=1e-15)

    _, trained = pair_model(seed=4, last_scale=0.3)
    path = tmp_path / "pair.npz"
    save_model(path, DeePKSModel(config=term.config, params=trained, basis=basis))
    loaded = load_model(path)
    assert loaded.config == term.config and loaded.config.pair_radial == DIFFUSE_PAIR_RADIAL
    a, ta = jax.tree_util.tree_flatten(trained)
    b, tb = jax.tree_util.tree_flatten(loaded.params)
    assert ta == tb and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert loaded.params.pair_net["params"]["dense_2"]["kernel"].shape == (32, 1)

    # a pair config without its network (or a network without the config) is refused
    save_model(tmp_path / "bad.npz", DeePKSModel(config=term.config, params=onsite_params,
                                                 basis=basis))
    with pytest.raises(ModelFileError, match="no pair-network parameters"):
        load_model(tmp_path / "bad.npz")
    save_model(tmp_path / "bad2.npz", DeePKSModel(config=onsite_config, params=trained,
                                                  basis=basis))
    with pytest.raises(ModelFileError, match="without pair shells"):
        load_model(tmp_path / "bad2.npz")


def test_old_model_file_loads_without_pair_term():
    from jaxks.models import load_model as load_named

    model = load_named("water", allow_other_version=True)  # written before the pair term
    assert model.config.pair_radial == () and model.params.pair_net == {}


def test_bad_pair_shells_are_input_errors():
    sections = default_basis().shell_sections
    for bad, match in [(dict(pair_radial=(12,)), "out of range"),
                       (dict(pair_radial=(-1,)), "out of range"),
                       (dict(pair_radial=(3,), pair_l=(3,)), "no l = 3"),
                       (dict(pair_radial=(3, 3)), "repeat"),
                       (dict(pair_radial=(3,), pair_hidden=(0,)), "pair_hidden"),
                       (dict(pair_radial=(3,), pair_floor=0.0), "pair_floor")]:
        with pytest.raises(InputError, match=match):
            ModelConfig(sections, **bad)


def test_scf_with_random_pair_model_converges():
    from jaxks.integrals import integrals_from_pyscf
    from jaxks.scf import SCFOptions, run_scf
    from tests.conftest import make_system

    term, params = pair_model(seed=5, output_scale=10.0, last_scale=1.0)
    mol = make_system(geo.WATER_DIMER, basis="sto-3g", grid_level=0).to_pyscf()
    ints = integrals_from_pyscf(mol, "def2-universal-jkfit", 0)
    theta = deepks_params(params, projector_overlaps(mol))
    res = run_scf(ints, "pbe", term=term, params=theta,
                  options=SCFOptions(e_tol=1e-10, comm_tol=1e-7))
    assert bool(res.converged)
    onsite = DeePKSTerm(dataclasses.replace(term.config, pair_radial=()), term.shells)
    e_pair = float(res.parts.term - onsite(res.gamma, theta))
    assert abs(e_pair) > 1e-4  # the pair term is part of the self-consistent solution

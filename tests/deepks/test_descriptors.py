"""Descriptors against an independent NumPy evaluation, symmetry invariances, degenerate atoms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto

from jaxks.deepks.descriptors import descriptors, projected_density_blocks
from jaxks.integrals.projectors import default_basis, projector_mol, projector_overlaps
from tests.deepks.conftest import WATER_BOHR, make_mol, rhf_density


def numpy_descriptors(mol, dm):
    """eigvalsh(Pᵀ Γ P) atom by atom, shell by shell, in DeePKS-kit order (s, p, d; radial index
    outer; ascending eigenvalues), with P taken straight from PySCF."""
    pmol = projector_mol(mol, default_basis())
    p_all = gto.intor_cross("int1e_ovlp", mol, pmol)
    rows = []
    for atom in range(mol.natm):
        p_atom = p_all[:, 108 * atom:108 * (atom + 1)]
        row, col = [], 0
        for l in range(3):
            m = 2 * l + 1
            for n in range(12):
                p = p_atom[:, col:col + m]
                row.extend(np.linalg.eigvalsh(p.T @ dm @ p))
                col += m
        rows.append(row)
    return np.array(rows)


def test_descriptors_match_numpy(water_mol, water_dm):
    d = descriptors(jnp.asarray(water_dm), projector_overlaps(water_mol))
    assert d.shape == (3, 108)
    np.testing.assert_allclose(d, numpy_descriptors(water_mol, water_dm), rtol=0, atol=1e-12)


def test_descriptors_match_numpy_def2svp_dimer():
    mol = make_mol(["O", "H", "H", "O", "H", "H"],
                   np.concatenate([WATER_BOHR, WATER_BOHR @ np.diag([1, -1, 1]) + [5.3, 0.4, 0.2]]),
                   basis="def2-svp")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(mol.nao, mol.nao))
    dm = a @ a.T / mol.nao  # any symmetric matrix will do for the algebra
    d = jax.jit(descriptors)(jnp.asarray(dm), projector_overlaps(mol))
    assert d.shape == (6, 108)
    np.testing.assert_allclose(d, numpy_descriptors(mol, dm), rtol=0, atol=1e-12)


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("basis", ["sto-3g", "def2-svp"])
def test_rotation_translation_invariance(basis):
    mol = make_mol(["O", "H", "H"], WATER_BOHR, basis)
    ref = descriptors(jnp.asarray(rhf_density(mol)), projector_overlaps(mol))
    coords = WATER_BOHR @ random_rotation(3).T + np.array([0.7, -1.9, 2.4])
    mol2 = make_mol(["O", "H", "H"], coords, basis)
    d = descriptors(jnp.asarray(rhf_density(mol2)), projector_overlaps(mol2))
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-9)
    # the projected blocks themselves do change: the test is not trivially satisfied
    b1 = projected_density_blocks(jnp.asarray(rhf_density(mol)), projector_overlaps(mol).overlaps,
                                  default_basis().shell_structure)[1]
    b2 = projected_density_blocks(jnp.asarray(rhf_density(mol2)),
                                  projector_overlaps(mol2).overlaps,
                                  default_basis().shell_structure)[1]
    assert np.abs(np.asarray(b1) - np.asarray(b2)).max() > 1e-3


def test_atom_permutation_permutes_rows(water_mol, water_dm):
    ref = descriptors(jnp.asarray(water_dm), projector_overlaps(water_mol))
    perm = [2, 0, 1]
    mol2 = make_mol(["H", "O", "H"], WATER_BOHR[perm])
    d = descriptors(jnp.asarray(rhf_density(mol2)), projector_overlaps(mol2))
    np.testing.assert_allclose(d, np.asarray(ref)[perm], rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", ["Ne", "CH4"])
def test_degenerate_blocks_give_finite_derivatives(case):
    """A free atom (p, d blocks exactly degenerate) and a Td molecule: descriptors, gradient and
    second derivative of a nonlinear function of them stay finite, and the gradient of a
    symmetric function of a degenerate block agrees with central differences."""
    if case == "Ne":
        mol = gto.M(atom="Ne 0 0 0", basis="sto-3g", verbose=0)
    else:
        r = 1.19
        mol = gto.M(atom=[("C", (0, 0, 0))] + [("H", tuple(r * np.array(v))) for v in
                                               [(1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)]],
                    unit="Bohr", basis="sto-3g", verbose=0)
    dm = jnp.asarray(rhf_density(mol))
    proj = projector_overlaps(mol)
    d = descriptors(dm, proj)
    assert np.all(np.isfinite(d))
    p_c = np.asarray(d[0, 12:48]).reshape(12, 3)
    assert np.ptp(p_c, axis=1).max() < 1e-10  # exactly degenerate p blocks on the centre

    def f(g):
        x = descriptors(g, proj)
        return jnp.sum(jnp.tanh(3 * x) * jnp.arange(x.shape[-1])) + jnp.sum(x ** 3)

    direction = jnp.asarray(np.random.default_rng(1).normal(size=dm.shape))
    direction = direction + direction.T
    grad, hvp = jax.jit(lambda g, t: jax.jvp(jax.grad(f), (g,), (t,)))(dm, direction)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hvp))

    def sym(g):  # symmetric in each block's eigenvalues: differentiable at the degeneracy
        return jnp.sum(descriptors(g, proj) ** 2)

    h = 1e-5
    sym_jit = jax.jit(sym)
    fd = (sym_jit(dm + h * direction) - sym_jit(dm - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(jax.jit(jax.grad(sym))(dm), direction), fd, rtol=1e-7)


# --------------------------------------------------------------------------- Schatten descriptor
def numpy_schatten(mol, dm):
    """‖D‖_k = (Σ_i λ_i^k + τ^k)^{1/k}, k = 1 … 2l+1, from NumPy eigenvalues of PySCF blocks."""
    from jaxks.deepks.descriptors import SCHATTEN_FLOOR as tau

    eig = numpy_descriptors(mol, dm)
    out = np.empty_like(eig)
    col = 0
    for l in range(3):
        m = 2 * l + 1
        for _ in range(12):
            lam = eig[:, col:col + m]
            for k in range(1, m + 1):
                out[:, col + k - 1] = (np.sum(lam ** k, axis=1) + tau ** k) ** (1.0 / k)
            col += m
    return out


def test_schatten_descriptors_match_numpy(water_mol, water_dm):
    d = jax.jit(descriptors, static_argnums=2)(jnp.asarray(water_dm),
                                               projector_overlaps(water_mol), "schatten")
    ref = numpy_schatten(water_mol, water_dm)
    assert d.shape == (3, 108)
    np.testing.assert_allclose(d, ref, rtol=1e-11, atol=1e-14)
    # not the eigenvalues: the p and d blocks differ from the eig kind
    eig = numpy_descriptors(water_mol, water_dm)
    assert np.abs(np.asarray(d)[:, 12:] - eig[:, 12:]).max() > 1e-2


@pytest.mark.parametrize("basis", ["sto-3g", "def2-svp"])
def test_schatten_rotation_translation_invariance(basis):
    mol = make_mol(["O", "H", "H"], WATER_BOHR, basis)
    ref = descriptors(jnp.asarray(rhf_density(mol)), projector_overlaps(mol), "schatten")
    coords = WATER_BOHR @ random_rotation(5).T + np.array([-1.2, 0.4, 3.1])
    mol2 = make_mol(["O", "H", "H"], coords, basis)
    d = descriptors(jnp.asarray(rhf_density(mol2)), projector_overlaps(mol2), "schatten")
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-9)


def test_unknown_descriptor_kind_is_an_input_error(water_mol, water_dm):
    from jaxks.system import InputError

    with pytest.raises(InputError, match="unknown descriptor kind"):
        descriptors(jnp.asarray(water_dm), projector_overlaps(water_mol), "sorted")


def _crossing_model(kind):
    """A random network on one atom with one d shell (m = 5), P = 1: D = Γ."""
    from jaxks.deepks.correction import DeePKSParams, DeePKSTerm
    from jaxks.deepks.model import ModelConfig, init_model

    config = ModelConfig((5,), hidden=(16, 16), output_scale=1.0, descriptor=kind)
    params = init_model(config, jax.random.PRNGKey(7))
    term = DeePKSTerm(config, ((2, 1),))
    theta = DeePKSParams(model=params, overlaps=jnp.eye(5)[:, None, :],
                         element_onehot=jnp.zeros((1, 0)))
    return term, theta


def _path(t):
    """Γ(t) = R diag(0.1, 0.4 + t, 0.4 − t, 0.7, 1.0) Rᵀ: two eigenvalues cross at t = 0."""
    r = random_rotation(11)
    rot = np.eye(5)
    rot[:3, :3] = r
    return jnp.asarray(rot @ np.diag([0.1, 0.4 + t, 0.4 - t, 0.7, 1.0]) @ rot.T)


@pytest.mark.parametrize("kind", ["eig", "schatten"])
def test_energy_and_potential_through_an_exact_crossing(kind):
    """One-sided slopes of E_δ(Γ(t)) and V_δ(Γ(±h)) at a crossing of two eigenvalues of a block:
    the sorted (eig) form has a kink (slopes differ by O(1), V_δ jumps by O(1) as h → 0); the
    Schatten form is smooth (slopes agree to O(h), V_δ moves by O(h))."""
    term, theta = _crossing_model(kind)
    energy = jax.jit(lambda g: term(g, theta))
    potential = jax.jit(lambda g: jax.grad(term)(g, theta))
    e0 = float(energy(_path(0.0)))
    jumps = {}
    for h in (1e-3, 1e-5):
        right = (float(energy(_path(h))) - e0) / h
        left = (e0 - float(energy(_path(-h)))) / h
        dv = float(jnp.abs(potential(_path(h)) - potential(_path(-h))).max())
        jumps[h] = (abs(right - left), dv)
    print(kind, jumps)
    if kind == "eig":
        for h in jumps:  # a jump that does not shrink with h
            assert jumps[h][0] > 1e-3 and jumps[h][1] > 1e-3
        assert jumps[1e-5][1] > 0.5 * jumps[1e-3][1]
    else:
        for h, (slope_jump, dv) in jumps.items():
            assert slope_jump < 50 * h and dv < 50 * h
        assert jumps[1e-5][1] < 0.1 * jumps[1e-3][1]   # shrinks with h: continuous


@pytest.mark.parametrize("case", ["water", "Ne"])
def test_schatten_potential_is_the_gradient_of_the_energy(case, water_mol, water_dm):
    """V_δ = ∂E_δ/∂Γ of a random network on Schatten descriptors against central differences of
    E_δ along a random symmetric direction, for water and for a free atom (degenerate p and d
    blocks: where sorted eigenvalues need a degeneracy-safe eigensolver)."""
    from jaxks.deepks.correction import DeePKSTerm, correction_potential, deepks_params
    from jaxks.deepks.model import ModelConfig, init_model

    if case == "water":
        mol, dm = water_mol, water_dm
    else:
        mol = gto.M(atom="Ne 0 0 0", basis="sto-3g", verbose=0)
        dm = rhf_density(mol)
    basis = default_basis()
    config = ModelConfig(basis.shell_sections, hidden=(32, 32), output_scale=1.0)
    assert config.descriptor == "schatten"  # the default of new models
    params = init_model(config, jax.random.PRNGKey(3))
    term = DeePKSTerm.for_model(config, basis)
    theta = deepks_params(params, projector_overlaps(mol))
    g = jnp.asarray(dm)
    v = correction_potential(term, g, theta)
    assert np.all(np.isfinite(v))
    direction = np.random.default_rng(4).normal(size=dm.shape)
    direction = jnp.asarray(direction + direction.T)
    e = jax.jit(lambda x: term(x, theta))
    h = 1e-5
    fd = (float(e(g + h * direction)) - float(e(g - h * direction))) / (2 * h)
    np.testing.assert_allclose(float(jnp.vdot(v, direction)), fd, rtol=1e-7)

"""The DeePKS-ES loss terms (jaxks.train.losses) against independent NumPy formulas, central
finite differences, their invariances, and the orbital window / degenerate groups on PySCF data.
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxks.train import losses as L

NAO = 7
WINDOW = L.OrbitalWindow(1, 7)  # valence occupied (1-4) + two virtuals (5, 6)
#: Orbital energies (5 occupied) with a degenerate pair (2, 3) and a near-degenerate chained
#: triple (4, 5, 6) spanning HOMO and virtuals (so the gap loss sees a zero target gap).
EPS_DEGENERATE = np.array([-20.0, -1.1, -0.6, -0.6 + 1e-8, -0.3, -0.3 + 6e-6, -0.3 + 1.2e-5])


# --------------------------------------------------------------------------- helpers
def overlap_and_orbitals(rng, n=NAO):
    """A random SPD overlap S [n, n] and S-orthonormal orbitals C (Cᵀ S C = 1)."""
    a = rng.normal(size=(n, n))
    s = a @ a.T / n + np.eye(n)
    w, v = np.linalg.eigh(s)
    x = v @ np.diag(w ** -0.5) @ v.T
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return s, x @ q


def rotate(c, i, j, angle):
    """Rotate columns i, j of C by ``angle`` (keeps S-orthonormality)."""
    c = c.copy()
    ci, cj = c[:, i].copy(), c[:, j].copy()
    c[:, i] = np.cos(angle) * ci + np.sin(angle) * cj
    c[:, j] = -np.sin(angle) * ci + np.cos(angle) * cj
    return c


def perturbed_orbitals(rng, c, scale=0.2):
    """C exp(K), K antisymmetric: another S-orthonormal set near C."""
    k = rng.normal(size=c.shape) * scale
    w, v = np.linalg.eigh(1j * (k - k.T))  # exp of a real antisymmetric matrix
    return (c @ (v @ np.diag(np.exp(-1j * w)) @ v.conj().T)).real


def numpy_subspace_loss(c_pred, c_ref, s, eps_ref, window, tol=1e-5):
    """Σ_g ½‖Lᵀ(P_t,g − P_d,g)L‖²_F / N_window with S = L Lᵀ and P_g = C_g C_gᵀ the projector
    on degenerate group g of the target (independent of the overlap-matrix form)."""
    lch = np.linalg.cholesky(s)
    idx = np.arange(window.start, window.stop)
    eps = eps_ref[idx]
    groups, current = [], [idx[0]]
    for k in range(1, len(idx)):  # chain levels closer than tol
        if eps[k] - eps[k - 1] < tol:
            current.append(idx[k])
        else:
            groups.append(current)
            current = [idx[k]]
    groups.append(current)
    total = 0.0
    for g in groups:
        dp = c_ref[:, g] @ c_ref[:, g].T - c_pred[:, g] @ c_pred[:, g].T
        total += 0.5 * np.sum((lch.T @ dp @ lch) ** 2)
    return total / window.size


def check_gradient(fun, x, h=1e-4, rtol=1e-7):
    """jax.grad of the scalar ``fun`` at ``x`` vs central differences over every entry.

    Every loss is a quadratic polynomial of the prediction, so central differences are exact
    up to round-off and a tight tolerance is honest.
    """
    x = np.asarray(x, dtype=float)
    grad = np.asarray(jax.grad(lambda y: fun(y))(jnp.asarray(x)))
    fd = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        fd[k] = (float(fun(jnp.asarray(xp))) - float(fun(jnp.asarray(xm)))) / (2 * h)
    assert np.max(np.abs(grad)) > 0
    np.testing.assert_allclose(grad, fd, rtol=rtol, atol=rtol * np.max(np.abs(fd)))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def labels(rng):
    """A target and a prediction (dicts as loss_terms takes them) of a 3-atom, 7-AO system."""
    s, c = overlap_and_orbitals(rng)
    sym = lambda m: 0.5 * (m + m.T)  # noqa: E731
    eps = EPS_DEGENERATE
    ref = dict(energy=jnp.asarray(-76.3), forces=jnp.asarray(rng.normal(size=(3, 3)) * 0.02),
               fock=jnp.asarray(sym(rng.normal(size=(NAO, NAO)))), mo_energy=jnp.asarray(eps),
               mo_coeff=jnp.asarray(c), gamma=jnp.asarray(2 * c[:, :5] @ c[:, :5].T),
               overlap=jnp.asarray(s), group_mask=jnp.asarray(L.group_mask(eps, WINDOW)))
    c_pred = perturbed_orbitals(rng, c)
    pred = dict(energy=ref["energy"] + 0.01,
                forces=ref["forces"] + rng.normal(size=(3, 3)) * 0.01,
                fock=ref["fock"] + sym(rng.normal(size=(NAO, NAO))) * 0.05,
                mo_energy=ref["mo_energy"] + rng.normal(size=NAO) * 0.02,
                mo_coeff=jnp.asarray(c_pred), gamma=jnp.asarray(2 * c_pred[:, :5] @ c_pred[:, :5].T))
    return pred, ref


def term_functions(ref, n_atoms=3, n_occ=5):
    """Each loss term as a function of its prediction array (target fixed)."""
    return {
        "energy": (lambda e: L.energy_loss(e, ref["energy"], n_atoms), "energy"),
        "force": (lambda f: L.force_loss(f, ref["forces"]), "forces"),
        "hamiltonian": (lambda h: L.hamiltonian_loss(h, ref["fock"]), "fock"),
        "valence_hamiltonian": (lambda h: L.valence_hamiltonian_loss(h, ref["fock"], ref["mo_coeff"],
                                                                     WINDOW), "fock"),
        "density": (lambda g: L.density_loss(g, ref["gamma"]), "gamma"),
        "eigenvalue": (lambda e: L.eigenvalue_loss(e, ref["mo_energy"], WINDOW), "mo_energy"),
        "gap": (lambda e: L.gap_loss(e, ref["mo_energy"], n_occ), "mo_energy"),
        "eigenvector": (lambda c: L.eigenvector_loss(c, ref["mo_coeff"], ref["overlap"], WINDOW,
                                                     ref["group_mask"]), "mo_coeff"),
    }


def numpy_terms(pred, ref, n_atoms=3, n_occ=5):
    """Every term from its definition (method.md §4), in NumPy."""
    p = {k: np.asarray(v) for k, v in pred.items()}
    r = {k: np.asarray(v) for k, v in ref.items()}
    w = slice(WINDOW.start, WINDOW.stop)
    gap = lambda e: e[n_occ] - e[n_occ - 1]  # noqa: E731
    return dict(
        energy=((r["energy"] - p["energy"]) / n_atoms) ** 2,
        force=np.sum((r["forces"] - p["forces"]) ** 2) / (3 * n_atoms),
        hamiltonian=np.sum((r["fock"] - p["fock"]) ** 2) / NAO,
        valence_hamiltonian=sum((r["mo_coeff"][:, i] @ (r["fock"] - p["fock"]) @ r["mo_coeff"][:, j]) ** 2
                                for i in range(WINDOW.start, WINDOW.stop)
                                for j in range(WINDOW.start, WINDOW.stop)) / WINDOW.size,
        density=np.sum((r["gamma"] - p["gamma"]) ** 2) / NAO,
        eigenvalue=np.sum((r["mo_energy"][w] - p["mo_energy"][w]) ** 2) / WINDOW.size,
        gap=(gap(r["mo_energy"]) - gap(p["mo_energy"])) ** 2,
        eigenvector=numpy_subspace_loss(p["mo_coeff"], r["mo_coeff"], r["overlap"],
                                        r["mo_energy"], WINDOW))


# --------------------------------------------------------------------------- every term
TERMS = ["energy", "force", "hamiltonian", "valence_hamiltonian", "density", "eigenvalue", "gap",
         "eigenvector"]


@pytest.mark.parametrize("name", TERMS)
def test_term_zero_at_target_positive_away_and_matches_numpy(labels, name):
    pred, ref = labels
    fun, key = term_functions(ref)[name]
    assert abs(float(fun(ref[key]))) < 1e-14
    away = float(fun(pred[key]))
    assert away > 1e-8
    np.testing.assert_allclose(away, numpy_terms(pred, ref)[name], rtol=1e-10)


@pytest.mark.parametrize("name", TERMS)
def test_term_gradient_matches_finite_differences(labels, name):
    pred, ref = labels
    fun, key = term_functions(ref)[name]
    check_gradient(fun, pred[key])


def test_loss_terms_sum_weights_and_skip_zero_weights(labels):
    pred, ref = labels
    weights = L.LossWeights(energy=1.0, force=0.5, hamiltonian=0.005, valence_hamiltonian=0.7,
                            eigenvector=0.1, eigenvalue=0.01, density=0.2, gap=0.3)
    terms = L.loss_terms(pred, ref, weights, WINDOW, n_atoms=3, n_occ=5)
    expected = numpy_terms(pred, ref)
    for k, v in expected.items():
        np.testing.assert_allclose(float(terms[k]), v, rtol=1e-10)
    total = sum(getattr(weights, k) * v for k, v in expected.items())
    np.testing.assert_allclose(float(terms["total"]), total, rtol=1e-10)

    # default weights: density and gap are off and absent; forces are then not needed
    no_forces = {k: v for k, v in pred.items() if k != "forces"}
    terms = L.loss_terms(no_forces, ref, L.LossWeights(force=0.0), WINDOW, 3, 5)
    assert set(terms) == {"energy", "hamiltonian", "eigenvector", "eigenvalue", "total"}
    assert float(terms["total"]) == pytest.approx(
        expected["energy"] + 0.005 * expected["hamiltonian"] + 0.1 * expected["eigenvector"]
        + 0.01 * expected["eigenvalue"], rel=1e-10)


def test_total_loss_gradient_matches_finite_differences(labels):
    """The weighted sum, differentiated with respect to every prediction array at once along a
    random direction."""
    pred, ref = labels
    weights = L.LossWeights(density=0.2, gap=0.3, valence_hamiltonian=0.7)
    keys = ["energy", "forces", "fock", "mo_energy", "mo_coeff", "gamma"]
    rng = np.random.default_rng(1)
    direction = {k: rng.normal(size=np.shape(pred[k])) for k in keys}

    def total(t):
        p = {k: pred[k] + t * direction[k] for k in keys}
        return L.loss_terms(p, ref, weights, WINDOW, 3, 5)["total"]

    grad = jax.grad(lambda p: L.loss_terms(p, ref, weights, WINDOW, 3, 5)["total"])(pred)
    analytic = sum(float(jnp.sum(grad[k] * direction[k])) for k in keys)
    h = 1e-4
    fd = (float(total(h)) - float(total(-h))) / (2 * h)
    assert analytic == pytest.approx(fd, rel=1e-8)


# --------------------------------------------------------------------------- valence Hamiltonian
def test_valence_hamiltonian_sees_the_window_and_not_the_core(labels):
    """ΔH_v² from what it must mean, not from its formula: a uniform shift a·S of H moves every
    window level by a and couples none (ΔH_v² = a²); a shift b·S c_k c_kᵀ S of one window level
    k moves only that level (b²/N_window); the same on the core orbital (index 0, outside the
    window) is invisible to it while ΔH² sees it; rotating the target's window orbitals among
    themselves changes nothing."""
    _, ref = labels
    s, c, h = (np.asarray(ref[k]) for k in ("overlap", "mo_coeff", "fock"))

    def loss(h_pred, c_ref=c):
        return float(L.valence_hamiltonian_loss(jnp.asarray(h_pred), jnp.asarray(h),
                                                jnp.asarray(c_ref), WINDOW))

    assert loss(h + 0.03 * s) == pytest.approx(0.03 ** 2, rel=1e-10)
    level = lambda k: s @ np.outer(c[:, k], c[:, k]) @ s  # noqa: E731
    assert loss(h + 0.05 * level(3)) == pytest.approx(0.05 ** 2 / WINDOW.size, rel=1e-10)
    assert loss(h + 0.5 * level(0)) < 1e-25
    assert float(L.hamiltonian_loss(jnp.asarray(h + 0.5 * level(0)), jnp.asarray(h))) > 1e-3
    h_pred = h + 0.05 * np.asarray(labels[0]["fock"] - ref["fock"])
    assert loss(h_pred, rotate(rotate(c, 1, 5, 0.7), 2, 6, -1.1)) == pytest.approx(loss(h_pred),
                                                                                  rel=1e-10)


# --------------------------------------------------------------------------- eigenvectors
def eigvec_loss(c_pred, ref):
    return float(L.eigenvector_loss(jnp.asarray(c_pred), ref["mo_coeff"], ref["overlap"], WINDOW,
                                    ref["group_mask"]))


def test_eigenvector_loss_invariant_to_orbital_signs(labels):
    pred, ref = labels
    c = np.asarray(pred["mo_coeff"])
    base = eigvec_loss(c, ref)
    for signs in ([-1, 1, 1, 1, 1, 1, 1], [1, -1, 1, -1, 1, 1, -1], -np.ones(NAO)):
        assert eigvec_loss(c * np.asarray(signs), ref) == pytest.approx(base, rel=1e-12)
    # and the target's signs do not matter either
    flipped = dict(ref, mo_coeff=ref["mo_coeff"] * jnp.asarray([1, -1, -1, 1, -1, 1, 1]))
    assert eigvec_loss(c, flipped) == pytest.approx(base, rel=1e-12)
    assert eigvec_loss(np.asarray(ref["mo_coeff"]) * -1.0, ref) < 1e-14


@pytest.mark.parametrize("pair", [(2, 3), (4, 5), (5, 6), (4, 6)])
def test_eigenvector_loss_invariant_to_rotations_inside_degenerate_groups(labels, pair):
    pred, ref = labels
    c = np.asarray(pred["mo_coeff"])
    base = eigvec_loss(c, ref)
    for angle in (0.3, 1.2, np.pi / 2):
        assert eigvec_loss(rotate(c, *pair, angle), ref) == pytest.approx(base, rel=1e-12)
    # the target rotated inside its group is a perfect prediction
    assert eigvec_loss(rotate(np.asarray(ref["mo_coeff"]), *pair, 0.7), ref) < 1e-14


@pytest.mark.parametrize("pair", [(1, 2), (3, 4)])
def test_eigenvector_loss_sees_rotations_across_levels(labels, pair):
    """Not trivially invariant: mixing orbitals of different levels costs."""
    _, ref = labels
    c = np.asarray(ref["mo_coeff"])
    assert eigvec_loss(rotate(c, *pair, 0.3), ref) > 1e-3


def test_eigenvector_loss_ignores_orbitals_outside_window(labels):
    pred, ref = labels
    c = np.asarray(pred["mo_coeff"]).copy()
    base = eigvec_loss(c, ref)
    c[:, 0] = np.random.default_rng(3).normal(size=NAO)  # the core orbital
    assert eigvec_loss(c, ref) == pytest.approx(base, rel=1e-12)


# --------------------------------------------------------------------------- window and groups
def test_group_mask_groups_near_degenerate_levels():
    window = L.OrbitalWindow(1, 7)
    mask = L.group_mask(EPS_DEGENERATE, window)
    labels = np.array([0, 1, 1, 2, 2, 2])  # window orbitals 1..6: {1}, {2, 3}, {4, 5, 6}
    np.testing.assert_array_equal(mask, (labels[:, None] == labels[None, :]).astype(float))
    # a tighter tolerance splits the triple (6e-6 steps) but not the pair (1e-8)
    tight = L.group_mask(EPS_DEGENERATE, window, tol=1e-6)
    labels = np.array([0, 1, 1, 2, 3, 4])
    np.testing.assert_array_equal(tight, (labels[:, None] == labels[None, :]).astype(float))
    assert mask.shape == (window.size, window.size)


def _pyscf_mo_energies(atom, method="rhf"):
    from pyscf import dft, gto, scf

    mol = gto.M(atom=atom, basis="sto-3g", verbose=0)
    mf = scf.RHF(mol) if method == "rhf" else dft.RKS(mol, xc="pbe")
    mf.conv_tol = 1e-12
    mf.kernel()
    assert mf.converged
    return mol, mf.mo_energy, mf.mo_occ


def test_group_mask_finds_methane_t2_triple():
    """CH4 (Td): the three HOMOs are an exactly degenerate t2 set (RHF: no grid to break it)."""
    a = 1.09 / np.sqrt(3)
    atom = [("C", (0, 0, 0)), ("H", (a, a, a)), ("H", (a, -a, -a)), ("H", (-a, a, -a)),
            ("H", (-a, -a, a))]
    mol, eps, occ = _pyscf_mo_energies(atom)
    n_occ = int(np.sum(occ > 0))
    window = L.default_window(mol.atom_charges(), n_occ)
    assert (window.start, window.stop) == (1, n_occ + 1)  # C 1s out, LUMO in
    mask = L.group_mask(eps, window)
    # window: 2a1, t2, t2, t2, LUMO
    assert mask[1:4, 1:4].sum() == 9
    assert mask[0, 1:].sum() == 0 and mask[1:4, 4].sum() == 0


def test_default_window_for_water_excludes_o1s_and_includes_lumo():
    mol, eps, occ = _pyscf_mo_energies("O 0 0 0.117; H 0 0.757 -0.469; H 0 -0.757 -0.469",
                                       method="pbe")
    z = mol.atom_charges()
    n_occ = int(np.sum(occ > 0))
    assert L.n_core_orbitals(z) == 1
    window = L.default_window(z, n_occ)
    inside = eps[window.start:window.stop]
    assert eps[:window.start].max() < -10.0  # O 1s (about −18.9 Hartree) is out
    assert inside.min() > -2.0               # valence only
    assert window.stop == n_occ + 1 and occ[window.stop - 1] == 0  # the LUMO is in
    assert occ[window.start:n_occ].min() == 2 and window.size == n_occ  # every valence level

    assert L.default_window(z, n_occ, include_core=True).start == 0
    assert L.default_window(z, n_occ, n_virtual=3).stop == n_occ + 3
    assert L.default_window(z, n_occ, n_virtual=0).stop == n_occ


def test_n_core_orbitals_is_the_preceding_noble_gas_shell():
    """Core = the orbitals of the previous noble gas: Z ≤ 2 none, Li–Ne 1s, Na–Ar [Ne] ..."""
    noble = [0, 2, 10, 18, 36, 54, 86]
    for z in range(1, 87):
        core_electrons = max(n for n in noble if n < z)
        assert L.n_core_orbitals([z]) == core_electrons // 2, z
    assert L.n_core_orbitals([8, 1, 1, 8, 1, 1]) == 2

"""AO values and derivatives in JAX (jaxks.basis) against PySCF's eval_gto, to 1e-12."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto

from jaxks.basis import basis_data, eval_ao

WATER = "O 0 0 0.1178; H 0 0.7555 -0.4712; H 0 -0.7555 -0.4712"
G_SHELL = {"O": [[0, [5.0, 1.0]], [1, [1.2, 1.0]], [2, [0.9, 1.0]], [3, [0.7, 1.0]],
                 [4, [0.5, 0.6], [1.1, 0.4]]], "H": "sto-3g"}


def _points(mol, n=400, seed=0):
    """Points near and far from the atoms, plus points exactly on the nuclei."""
    rng = np.random.default_rng(seed)
    centres = mol.atom_coords()
    near = centres[rng.integers(len(centres), size=n)] + rng.normal(scale=0.6, size=(n, 3))
    far = rng.uniform(-6.0, 6.0, size=(n // 4, 3))
    return np.concatenate([near, far, centres])


CASES = {
    "def2-svp (s, p, d)": dict(atom=WATER, basis="def2-svp"),
    "def2-tzvp (f on O)": dict(atom=WATER, basis="def2-tzvp"),
    "cc-pvdz (general contraction)": dict(atom=WATER, basis="cc-pvdz"),
    "custom up to g": dict(atom=WATER, basis=G_SHELL),
}


@pytest.mark.parametrize("deriv,name", [(0, "GTOval_sph"), (1, "GTOval_sph_deriv1"),
                                        (2, "GTOval_sph_deriv2")])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_pyscf(case, deriv, name):
    mol = gto.M(verbose=0, **CASES[case])
    pts = _points(mol)
    ref = mol.eval_gto(name, pts)
    ref = ref[None] if deriv == 0 else ref
    got = np.asarray(jax.jit(eval_ao, static_argnames="deriv")(basis_data(mol), jnp.asarray(pts),
                                                                deriv=deriv))
    assert got.shape == ref.shape
    # absolute, relative to the largest AO value or derivative of each component
    scale = np.max(np.abs(ref), axis=(1, 2), keepdims=True)
    np.testing.assert_array_less(np.abs(got - ref) / scale, 1e-12)


def test_angular_momenta_present():
    mol = gto.M(verbose=0, **CASES["custom up to g"])
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 4
    mol = gto.M(verbose=0, **CASES["def2-tzvp (f on O)"])
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 3


def test_centre_derivative_is_minus_ao_gradient():
    """∂φ_μ(r)/∂A = −∇φ_μ(r) for the atom A carrying μ: autodiff w.r.t. centres vs deriv=1."""
    mol = gto.M(verbose=0, atom=WATER, basis="def2-svp")
    bd = basis_data(mol)
    pts = jnp.asarray(_points(mol, n=60))
    w = jnp.asarray(np.random.default_rng(1).normal(size=(pts.shape[0], mol.nao)))

    def f(centers):
        import dataclasses
        return jnp.sum(w * eval_ao(dataclasses.replace(bd, centers=centers), pts)[0])

    g = np.asarray(jax.grad(f)(bd.centers))
    grad = np.asarray(eval_ao(bd, pts, deriv=1))[1:4]
    ao_atom = np.array([mol.bas_atom(i) for i in range(mol.nbas)
                        for _ in range(mol.bas_nctr(i) * (2 * mol.bas_angular(i) + 1))])
    expected = np.zeros((mol.natm, 3))
    for a in range(mol.natm):
        expected[a] = -np.einsum("xgm,gm->x", grad[:, :, ao_atom == a],
                                 np.asarray(w)[:, ao_atom == a])
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)

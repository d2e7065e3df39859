"""jaxks.basis against PySCF's ``mol.eval_gto`` (values, gradients, Hessians) and its own
centre derivatives against the AO gradients (translation: ∂φ/∂A = −∇_r φ)."""

import numpy as np
import pytest
from pyscf import gto

import jaxks  # noqa: F401  (float64 on)
import jax
import jax.numpy as jnp

from jaxks.basis import BasisData, basis_data, eval_ao

from tests.geometries import WATER

EVAL_NAMES = ("GTOval_sph", "GTOval_sph_deriv1", "GTOval_sph_deriv2")

# A made-up basis that exercises what the standard ones do not all have at once: shells listed
# out of l order, l = 3 and l = 4, and generally contracted shells (two contractions sharing
# primitives) of high angular momentum.
CUSTOM = {
    "He": [[4, [1.3, 1.0]],
           [0, [30.0, 0.1, 0.0], [5.0, 0.4, 0.3], [0.8, 0.6, 1.0]],
           [1, [2.1, 0.5], [0.5, 0.6]],
           [4, [2.5, 0.3, 1.0], [0.6, 0.8, -0.4]],
           [3, [1.7, 0.7, 0.2], [0.45, 0.4, 0.9]],
           [2, [0.9, 1.0]]],
}


def _mol(atom, basis, **kw):
    return gto.M(atom=atom, basis=basis, unit="Angstrom", verbose=0, **kw)


def _water(basis):
    symbols, xyz = WATER
    return _mol(list(zip(symbols, xyz)), basis)


def _points(mol, seed=0):
    """Grid points on and near every nucleus (0.01–0.3 Bohr), in the bonding region and far away
    (4–12 Bohr)."""
    rng = np.random.default_rng(seed)
    centres = mol.atom_coords()
    near = (centres[:, None, :] + rng.normal(size=(len(centres), 8, 3))
            * rng.choice([0.01, 0.05, 0.3], size=(len(centres), 8, 1))).reshape(-1, 3)
    mid = centres.mean(0) + rng.normal(size=(40, 3)) * 1.5
    far = rng.normal(size=(24, 3))
    far *= rng.uniform(4.0, 12.0, size=(24, 1)) / np.linalg.norm(far, axis=1, keepdims=True)
    return np.concatenate([centres, near, mid, far])


def _assert_matches_pyscf(mol, deriv, coords=None):
    coords = _points(mol) if coords is None else coords
    ref = mol.eval_gto(EVAL_NAMES[deriv], coords).reshape(-1, len(coords), mol.nao)
    got = np.asarray(eval_ao(basis_data(mol), jnp.asarray(coords), deriv=deriv))
    assert got.shape == ref.shape
    for c in range(ref.shape[0]):
        # absolute error relative to the scale of the component (Hessians near nuclei are ~1e4)
        scale = max(1.0, np.abs(ref[c]).max())
        np.testing.assert_allclose(got[c], ref[c], rtol=0, atol=1e-12 * scale, err_msg=f"component {c}")


@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_water_def2svp_spd(deriv):
    _assert_matches_pyscf(_water("def2-svp"), deriv)


@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_water_ccpvdz_general_contraction(deriv):
    mol = _water("cc-pvdz")
    assert any(mol.bas_nctr(i) > 1 for i in range(mol.nbas))
    _assert_matches_pyscf(mol, deriv)


@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_water_def2tzvp_f_functions(deriv):
    mol = _water("def2-tzvp")
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 3
    _assert_matches_pyscf(mol, deriv)


@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_n2_ccpvtz_f_functions(deriv):
    mol = _mol("N 0 0 0; N 0 0 1.1", "cc-pvtz")
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 3
    _assert_matches_pyscf(mol, deriv)


@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_custom_basis_g_functions_out_of_order(deriv):
    mol = _mol("He 0 0 0; He 0.3 -0.2 1.4", CUSTOM)
    assert {mol.bas_angular(i) for i in range(mol.nbas)} == {0, 1, 2, 3, 4}
    _assert_matches_pyscf(mol, deriv)


def test_neon_ccpvqz_g_functions():
    mol = _mol("Ne 0.1 0.2 -0.3", "cc-pvqz")
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 4
    _assert_matches_pyscf(mol, 2)


def test_charged_mixed_elements_with_ghost_atom():
    mol = _mol("C 0 0 0; H 0.6 0.6 0.6; Cl -0.9 0.8 0.1; ghost-O 1.5 -1.0 0.0", "def2-svp",
               charge=1, spin=1)
    _assert_matches_pyscf(mol, 1)


def test_jit_scan_and_pytree():
    mol = _water("def2-svp")
    bd = basis_data(mol)
    assert isinstance(bd, BasisData) and bd.n_ao == mol.nao
    leaves, treedef = jax.tree_util.tree_flatten(bd)
    assert any(leaf is bd.centers for leaf in leaves)
    coords = jnp.asarray(_points(mol)[:88])
    eager = eval_ao(bd, coords, deriv=1)
    jitted = jax.jit(eval_ao, static_argnames="deriv")(bd, coords, deriv=1)
    np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-13)

    def body(carry, block):
        return carry, eval_ao(bd, block, deriv=1)

    _, blocks = jax.jit(lambda c: jax.lax.scan(body, 0, c.reshape(4, 22, 3)))(coords)
    np.testing.assert_allclose(jnp.concatenate(blocks, axis=1), eager, rtol=0, atol=1e-13)


@pytest.mark.parametrize("basis", ["def2-svp", "cc-pvdz"])
def test_centre_derivative_is_minus_ao_gradient(basis):
    """∂/∂A_x Σ_gμ W_gμ φ_μ(r_g) = −Σ_g Σ_{μ on A} W_gμ ∂_x φ_μ(r_g), forward and reverse mode."""
    mol = _water(basis)
    bd = basis_data(mol)
    coords = jnp.asarray(_points(mol, seed=3)[::2])
    w = jnp.asarray(np.random.default_rng(1).normal(size=(len(coords), mol.nao)))

    def scalar(centers):
        return jnp.sum(w * eval_ao(_with_centers(bd, centers), coords, deriv=0)[0])

    grad_ao = np.asarray(eval_ao(bd, coords, deriv=1))[1:4]             # [3, ng, nao]
    per_ao = np.einsum("xgm,gm->mx", grad_ao, np.asarray(w))
    aoslices = mol.aoslice_by_atom()
    expected = np.array([-per_ao[p0:p1].sum(0) for _, _, p0, p1 in aoslices])
    for mode in (jax.grad, jax.jacfwd):
        np.testing.assert_allclose(jax.jit(mode(scalar))(bd.centers), expected,
                                   rtol=1e-12, atol=1e-11)


def test_centre_derivative_of_gradients_is_minus_hessian():
    """Differentiating deriv=1 output w.r.t. the centres gives −(second derivatives): what forces of
    GGA functionals need."""
    mol = _water("def2-svp")
    bd = basis_data(mol)
    coords = jnp.asarray(_points(mol, seed=5)[::3])
    hess = np.asarray(eval_ao(bd, coords, deriv=2))[4:]                  # xx xy xz yy yz zz

    def grad_y(centers):                                                  # ∂_y φ, all points and AOs
        return eval_ao(_with_centers(bd, centers), coords, deriv=1)[2]

    jac = np.asarray(jax.jit(jax.jacfwd(grad_y))(bd.centers))                      # [ng, nao, natm, 3]
    atom_of_ao = np.repeat(np.arange(mol.natm), [p1 - p0 for _, _, p0, p1 in mol.aoslice_by_atom()])
    got = jac[:, np.arange(mol.nao), atom_of_ao, :]                       # [ng, nao, 3]: ∂/∂A_x,y,z
    expected = -np.stack([hess[1], hess[3], hess[4]], axis=-1)            # −(xy, yy, yz)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale)


def _with_centers(bd, centers):
    import dataclasses

    return dataclasses.replace(bd, centers=centers)


def test_bad_input():
    with pytest.raises(ValueError, match="Cartesian"):
        basis_data(_mol("H 0 0 0; H 0 0 0.74", "cc-pvdz", cart=True))
    bd = basis_data(_mol("H 0 0 0; H 0 0 0.74", "sto-3g"))
    with pytest.raises(ValueError, match="deriv"):
        eval_ao(bd, jnp.zeros((4, 3)), deriv=3)
    with pytest.raises(ValueError, match="shape"):
        eval_ao(bd, jnp.zeros((4, 2)))


# ----------------------------------------------------------------------------- AO screening
def _grid_blocks(mol, level=0, block_size=128):
    from jaxks.integrals import make_grids

    coords = make_grids(mol, level).coords
    n_real = len(coords)
    pad = -n_real % block_size
    return np.concatenate([coords, np.repeat(coords[:1], pad, 0)]), n_real


@pytest.mark.parametrize("deriv", [0, 2])   # deriv=2 output holds the deriv=1 components too
@pytest.mark.parametrize("case", ["tzvp", "custom"])
def test_screened_columns_equal_eval_ao(case, deriv):
    """eval_ao_screened gives eval_ao's columns ao_index (spd f, g and general contractions),
    padded slots exactly zero."""
    from jaxks.basis import eval_ao_screened, screen_blocks

    mol = _water("def2-tzvp") if case == "tzvp" else _mol("He 0 0 0; He 0.3 -0.2 7.4", CUSTOM)
    bd = basis_data(mol)
    coords, n_real = _grid_blocks(mol)
    screen = screen_blocks(bd, coords, 128, n_real=n_real, cutoff=1e-6)
    blocks = jnp.asarray(coords).reshape(-1, 128, 3)
    for b in screen.bins:
        for i in (0, len(b.blocks) - 1):
            row = jax.tree_util.tree_map(lambda x: x[i], b)
            pts = blocks[int(row.blocks)]
            got = np.asarray(eval_ao_screened(bd, pts, row, deriv=deriv))
            ref = np.asarray(eval_ao(bd, pts, deriv=deriv))[:, :, np.asarray(row.ao_index)]
            live = np.concatenate([np.repeat(np.asarray(m), bd.shell_nctr[g[0]]
                                             * (2 * bd.shell_l[g[0]] + 1))
                                   for m, g in zip(row.mask, bd.groups)]) > 0
            scale = max(1.0, np.abs(ref).max())
            np.testing.assert_allclose(got[:, :, live], ref[:, :, live], rtol=0,
                                       atol=1e-13 * scale)
            assert np.all(got[:, :, ~live] == 0.0)


def test_screen_drops_only_small_aos():
    """Every AO a block leaves out is below the cutoff in value and gradient at all its points,
    and something is left out (a water hexamer: the screen is not empty)."""
    from jaxks.basis import screen_blocks
    from tests.geometries import WATER_HEXAMER

    mol = _mol(list(zip(*WATER_HEXAMER)), "def2-svp")
    bd = basis_data(mol)
    coords, n_real = _grid_blocks(mol, block_size=256)
    cutoff = 1e-8
    screen = screen_blocks(bd, coords, 256, n_real=n_real, cutoff=cutoff)
    assert min(b.n_sig for b in screen.bins) < mol.nao
    blocks = coords.reshape(-1, 256, 3)
    real = (np.arange(len(coords)) < n_real).reshape(-1, 256)
    seen = np.zeros(len(blocks), bool)
    worst = 0.0
    for b in screen.bins:
        for i, blk in enumerate(np.asarray(b.blocks)):
            seen[blk] = True
            ao = np.abs(mol.eval_gto("GTOval_sph_deriv1", blocks[blk][real[blk]]))
            dropped = np.setdiff1d(np.arange(mol.nao), np.asarray(b.ao_index[i]))
            if dropped.size:
                worst = max(worst, ao[:, :, dropped].max())
    assert worst < cutoff, worst
    assert np.array_equal(seen, real.any(axis=1))   # every block with real points, once

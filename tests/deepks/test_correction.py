"""The DeePKS energy term: V_δ against finite differences in Γ, forces at fixed Γ against
finite differences of E_δ moving the atoms (projector and AO centres), basis checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxks.deepks.correction import (DeePKSTerm, correction_potential, deepks_forces,
                                     deepks_params)
from jaxks.deepks.model import ModelConfig, init_model
from jaxks.integrals.projectors import (basis_from_exponents, default_basis,
                                        projector_derivatives, projector_overlaps)
from jaxks.system import InputError
from tests.deepks.conftest import fd_forces_at_fixed_density


def small_model(basis, seed=0, elements=()):
    config = ModelConfig(basis.shell_sections, hidden=(32, 32), elements=elements)
    params = init_model(config, jax.random.PRNGKey(seed))
    # a nonzero prefit and element constants so every part of the energy is exercised
    params = params.__class__(
        net=params.net, shift=jnp.full(config.ndesc, 0.1), scale=params.scale,
        prefit_weight=jnp.asarray(np.random.default_rng(seed).normal(size=config.ndesc) * 1e-2),
        prefit_bias=jnp.asarray(-0.2),
        element_energy=jnp.arange(1.0, len(elements) + 1.0))
    return config, params


@pytest.fixture(scope="module")
def setup(water_mol, water_dm):
    basis = default_basis()
    config, params = small_model(basis, elements=("H", "O"))
    term = DeePKSTerm.for_model(config, basis)
    theta = deepks_params(params, projector_overlaps(water_mol, basis), ["O", "H", "H"],
                          config.elements)
    return term, theta, jnp.asarray(water_dm)


def test_term_is_hashable_and_jittable(setup):
    term, theta, dm = setup
    assert hash(term) == hash(DeePKSTerm.for_model(term.config, default_basis()))
    e = jax.jit(term)(dm, theta)
    np.testing.assert_allclose(e, term(dm, theta), rtol=1e-13)
    # the element constants enter once per atom: 2 H (c=1) + 1 O (c=2)
    no_const = theta.__class__(model=theta.model.__class__(
        **{**theta.model.__dict__, "element_energy": jnp.zeros(2)}),
        overlaps=theta.overlaps, element_onehot=theta.element_onehot)
    np.testing.assert_allclose(e - term(dm, no_const), 4.0, rtol=1e-13)


def test_potential_matches_finite_differences(setup):
    term, theta, dm = setup
    v = correction_potential(term, dm, theta)
    np.testing.assert_allclose(v, v.T, rtol=0, atol=1e-12)
    assert np.abs(v).max() > 1e-4
    energy = jax.jit(term)
    rng = np.random.default_rng(7)
    h = 1e-5
    n = dm.shape[0]
    directions = [rng.normal(size=(n, n)) for _ in range(3)]
    for i, j in [(0, 0), (1, 4), (6, 2)]:  # single symmetric elements
        e = np.zeros((n, n))
        e[i, j] = e[j, i] = 1.0
        directions.append(e)
    for t in directions:
        t = jnp.asarray(0.5 * (t + t.T))
        fd = (energy(dm + h * t, theta) - energy(dm - h * t, theta)) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(v, t), fd, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["schatten", "eig"])
def test_potential_is_sum_of_projected_block_gradients(setup, kind):
    """V_δ = Σ_I Σ_nl P_nl (∂E/∂D_nl) P_nlᵀ (method.md §2), from the blocks' own gradient, for
    both descriptor kinds (each block's invariants computed here from the block itself)."""
    import dataclasses

    from jaxks.deepks.descriptors import projected_density_blocks, schatten_norms
    from jaxks.deepks.model import model_energy
    from jaxks.linalg import eigh

    term, theta, dm = setup
    term = dataclasses.replace(term, config=dataclasses.replace(term.config, descriptor=kind))
    invariants = (lambda b: eigh(b)[0]) if kind == "eig" else schatten_norms
    p = theta.overlaps
    blocks = projected_density_blocks(dm, p, term.shells)

    def e_of_blocks(bs):
        d = jnp.concatenate([invariants(b).reshape(3, -1) for b in bs], -1)
        return model_energy(term.config, theta.model, d, theta.element_onehot)

    gb = jax.jit(jax.grad(e_of_blocks))(blocks)
    v_ref, start = 0, 0
    for (l, n), g in zip(term.shells, gb):
        m = 2 * l + 1
        pl = p[:, :, start:start + n * m].reshape(p.shape[0], 3, n, m)
        v_ref = v_ref + jnp.einsum("uanm,anmk,vank->uv", pl, g, pl)
        start += n * m
    v_ref = 0.5 * (v_ref + v_ref.T)
    np.testing.assert_allclose(correction_potential(term, dm, theta), v_ref, atol=1e-12)


def test_forces_match_finite_differences(water_mol, water_dm):
    """F = −dE_δ/dR at fixed Γ: move one atom (its AOs and projectors), recompute P only."""
    basis = basis_from_exponents([6.0, 1.5, 0.4], l_values=(0, 1, 2))  # small: fast
    config, params = small_model(basis, seed=2)
    term = DeePKSTerm.for_model(config, basis)
    dm = jnp.asarray(water_dm)
    theta = deepks_params(params, projector_overlaps(water_mol, basis))
    forces = deepks_forces(term, dm, theta, projector_derivatives(water_mol, basis))
    assert forces.shape == (3, 3)
    np.testing.assert_allclose(forces.sum(0), 0, atol=1e-10)  # translation invariance
    assert np.abs(forces).max() > 1e-4
    fd = fd_forces_at_fixed_density(term, params, water_mol, dm, basis)
    np.testing.assert_allclose(forces, fd, rtol=0, atol=1e-8)


def test_default_basis_forces_sum_to_zero(setup, water_mol):
    term, theta, dm = setup
    f = deepks_forces(term, dm, theta, projector_derivatives(water_mol))
    np.testing.assert_allclose(f.sum(0), 0, atol=1e-10)


def test_single_atom_and_symmetric_molecule_no_nan():
    from tests.deepks.conftest import rhf_density
    from pyscf import gto

    basis = default_basis()
    config, params = small_model(basis, seed=4)
    term = DeePKSTerm.for_model(config, basis)
    for mol in [gto.M(atom="Ne 0 0 0", basis="sto-3g", verbose=0),
                gto.M(atom="N 0 0 0; H 0 1.77 -0.72; H 1.533 -0.885 -0.72; H -1.533 -0.885 -0.72",
                      unit="Bohr", basis="sto-3g", verbose=0)]:
        dm = jnp.asarray(rhf_density(mol))
        theta = deepks_params(params, projector_overlaps(mol, basis))
        v = correction_potential(term, dm, theta)
        grad_theta = jax.jit(jax.grad(term, argnums=1))(dm, theta)
        f = deepks_forces(term, dm, theta, projector_derivatives(mol, basis))
        for x in [v, f, *jax.tree_util.tree_leaves(grad_theta)]:
            assert np.all(np.isfinite(x))


def test_mismatched_basis_rejected():
    config, _ = small_model(default_basis())
    with pytest.raises(InputError, match="projector basis"):
        DeePKSTerm.for_model(config, basis_from_exponents([1.0, 0.5], l_values=(0, 1)))


def test_element_constants_need_symbols(water_mol):
    basis = default_basis()
    _, params = small_model(basis, elements=("H",))
    with pytest.raises(InputError, match="symbols"):
        deepks_params(params, projector_overlaps(water_mol), None, ("H",))
    with pytest.raises(InputError, match="element O"):
        deepks_params(params, projector_overlaps(water_mol), ["O", "H", "H"], ("H",))

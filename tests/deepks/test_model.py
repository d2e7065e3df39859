"""The network against an independent NumPy forward pass; statistics, prefit and element
constants against independent least-squares formulations; the thermal embedding."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxks.deepks.model import (ModelConfig, atomic_energies, descriptor_statistics,
                                element_onehot, fit_element_energies, fit_model, fit_prefit,
                                freeze_non_trainable, init_model, model_energy)
from jaxks.integrals.projectors import default_basis
from jaxks.system import InputError

SECTIONS = default_basis().shell_sections


def numpy_forward(net, x, hidden, resnet=True):
    """x → GELU(tanh) MLP with residuals between equal widths, written from the equations."""
    gelu = lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    layers = net["params"]
    for i in range(len(hidden) + 1):
        w = np.asarray(layers[f"dense_{i}"]["kernel"])
        b = np.asarray(layers[f"dense_{i}"]["bias"])
        y = x @ w + b
        if i < len(hidden):
            y = gelu(y)
        x = x + y if (resnet and y.shape == x.shape) else y
    return x[..., 0]


def random_params(config, seed=0):
    p = init_model(config, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    n = config.ndesc
    return p.__class__(net=p.net, shift=jnp.asarray(rng.normal(size=n)),
                       scale=jnp.asarray(rng.uniform(0.5, 2, size=n)),
                       prefit_weight=jnp.asarray(rng.normal(size=n) * 1e-2),
                       prefit_bias=jnp.asarray(0.3),
                       element_energy=jnp.asarray(rng.normal(size=len(config.elements))))


def test_default_network_shape_and_dtype():
    config = ModelConfig(SECTIONS)
    p = init_model(config, jax.random.PRNGKey(0))
    shapes = {k: v["kernel"].shape for k, v in p.net["params"].items()}
    assert shapes == {"dense_0": (108, 100), "dense_1": (100, 100), "dense_2": (100, 100),
                      "dense_3": (100, 1)}
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(p))


def test_forward_matches_numpy():
    config = ModelConfig(SECTIONS, elements=("H", "O"))
    p = random_params(config)
    d = np.random.default_rng(5).normal(size=(2, 3, 108))
    x = (d - np.asarray(p.shift)) / np.asarray(p.scale)
    ref_atoms = (numpy_forward(p.net, x, config.hidden) / 100.0 + x @ np.asarray(p.prefit_weight)
                 + 0.3)
    np.testing.assert_allclose(atomic_energies(config, p, jnp.asarray(d)), ref_atoms,
                               rtol=1e-12, atol=1e-14)
    onehot = element_onehot(["O", "H", "H"], config.elements)
    ref = ref_atoms.sum(-1) + np.asarray(p.element_energy) @ np.array([2, 1])
    np.testing.assert_allclose(model_energy(config, p, jnp.asarray(d), jnp.asarray(onehot)), ref,
                               rtol=1e-12)


def test_no_resnet_between_unequal_widths():
    config = ModelConfig(SECTIONS, hidden=(32, 16, 16), use_resnet=True)
    p = random_params(config, 1)
    d = np.random.default_rng(2).normal(size=(4, 108))
    x = (d - np.asarray(p.shift)) / np.asarray(p.scale)
    got = atomic_energies(config, p, jnp.asarray(d)) - x @ np.asarray(p.prefit_weight) - 0.3
    np.testing.assert_allclose(got, numpy_forward(p.net, x, config.hidden) / 100, rtol=1e-12)


def test_wrong_descriptor_width_is_reported():
    config = ModelConfig(SECTIONS)
    with pytest.raises(InputError, match="108 descriptors"):
        atomic_energies(config, init_model(config, jax.random.PRNGKey(0)), jnp.zeros((3, 12)))


def test_unknown_element_and_bad_config():
    with pytest.raises(InputError, match="no energy constant for element C"):
        element_onehot(["O", "C"], ("H", "O"))
    with pytest.raises(InputError, match="embedding"):
        ModelConfig(SECTIONS, embedding="gaussian")


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    descs = [rng.normal(size=(7, 3, 108)) + 1.0, rng.normal(size=(5, 6, 108))]
    energies = [rng.normal(size=7), rng.normal(size=5) + 2]
    return descs, energies


def test_statistics():
    descs, _ = make_data()
    mean, std = descriptor_statistics(descs)
    allx = np.concatenate([descs[0].reshape(-1, 108), descs[1].reshape(-1, 108)])
    np.testing.assert_allclose(mean, allx.mean(0), rtol=1e-13)
    np.testing.assert_allclose(std, allx.std(0), rtol=1e-13)
    m2, _ = descriptor_statistics(descs, SECTIONS)
    np.testing.assert_allclose(m2[12:15], allx[:, 12:15].mean(), rtol=1e-13)


def test_prefit_is_ridge_regression():
    """Ridge as an augmented least-squares problem (an independent formulation)."""
    descs, energies = make_data()
    shift = descriptor_statistics(descs)[0]
    w, b = fit_prefit(descs, energies, shift, np.ones(108), ridge_alpha=10.0)
    rows = [np.append((d - shift).sum(1)[f], d.shape[1]) for d in descs for f in range(len(d))]
    X = np.array(rows)
    y = np.concatenate(energies)
    aug_X = np.vstack([X, np.hstack([np.sqrt(10.0) * np.eye(108), np.zeros((108, 1))])])
    coef, *_ = np.linalg.lstsq(aug_X, np.concatenate([y, np.zeros(108)]), rcond=None)
    np.testing.assert_allclose(w, coef[:-1], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(b, coef[-1], rtol=1e-8)


def test_element_constants_recovered():
    counts = np.array([[1, 2], [2, 4], [3, 6], [1, 3], [0, 2]], float)
    c_true = np.array([-0.5, -75.0])
    np.testing.assert_allclose(fit_element_energies(counts, counts @ c_true), c_true, rtol=1e-12)


def test_fit_model_sets_frozen_parts_only():
    config = ModelConfig(SECTIONS, hidden=(16,), elements=("H", "O"))
    p0 = init_model(config, jax.random.PRNGKey(0))
    descs, energies = make_data()
    symbols = [["O", "H", "H"], ["O", "H", "H", "O", "H", "H"]]
    p = fit_model(config, p0, descs, energies, symbols)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: np.array_equal(a, b),
                                                         p.net, p0.net))
    np.testing.assert_allclose(p.shift, descriptor_statistics(descs)[0], rtol=1e-13)
    np.testing.assert_array_equal(p.scale, np.ones(108))
    counts = np.array([[2, 1]] * 7 + [[4, 2]] * 5, float)
    c = fit_element_energies(counts, np.concatenate(energies))
    np.testing.assert_allclose(p.element_energy, c, rtol=1e-12)
    resid = [energies[0] - counts[0] @ c, energies[1] - counts[-1] @ c]
    w, b = fit_prefit(descs, resid, p.shift, p.scale, 10.0)
    np.testing.assert_allclose(p.prefit_weight, w, rtol=1e-10)
    assert fit_model(config, p0, descs, energies, symbols, prescale=True).scale.min() > 0.5


def test_trainable_mask_freezes_statistics():
    config = ModelConfig(SECTIONS, hidden=(8,))
    p = random_params(config)
    grads = jax.tree_util.tree_map(jnp.ones_like, p)
    opt = freeze_non_trainable(optax.sgd(1.0), p)
    updates, _ = opt.update(grads, opt.init(p), p)
    new = optax.apply_updates(p, updates)
    np.testing.assert_array_equal(new.shift, p.shift)
    np.testing.assert_array_equal(new.prefit_weight, p.prefit_weight)
    assert not np.array_equal(new.net["params"]["dense_0"]["bias"],
                              p.net["params"]["dense_0"]["bias"])


def test_thermal_embedding():
    """Order-free within a shell, equal to the softmax formula, finite at degeneracy."""
    config = ModelConfig(SECTIONS, hidden=(16, 16), embedding="thermal", descriptor="eig")
    p = init_model(config, jax.random.PRNGKey(3))
    beta = p.net["params"]["embedding"]
    np.testing.assert_allclose(beta["beta_1"], np.tile(np.linspace(5, -5, 3), (12, 1)))
    np.testing.assert_allclose(beta["beta_2"], np.tile(np.linspace(5, -5, 5), (12, 1)))
    rng = np.random.default_rng(0)
    d = rng.normal(size=(2, 108))
    d_perm = d.copy()
    d_perm[:, 12:15] = d[:, [14, 12, 13]]
    d_perm[:, 48:53] = d[:, [52, 50, 48, 49, 51]]
    energies = jax.jit(lambda z: atomic_energies(config, p, z))
    np.testing.assert_allclose(energies(jnp.asarray(d_perm)), energies(jnp.asarray(d)),
                               rtol=1e-12)
    # embedding output for one p shell written out
    from jaxks.deepks.model import ThermalEmbedding
    emb = ThermalEmbedding(SECTIONS).apply({"params": beta}, jnp.asarray(d))
    x = d[0, 12:15]
    for pp, b in enumerate(np.linspace(5, -5, 3)):
        wts = np.exp(-b * x) / np.exp(-b * x).sum()
        np.testing.assert_allclose(emb[0, 12 + pp], x @ wts, rtol=1e-12)
    d_deg = d.copy()
    d_deg[:, 12:15] = 0.7
    g = jax.jit(jax.grad(lambda z: energies(z).sum()))(jnp.asarray(d_deg))
    assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------- per-element prefit
def per_element_data(seed=0, ndesc=6, sizes=(2, 3, 5, 7), frames=12):
    """Random descriptors of frames with random element assignments (so counts are not
    collinear) and energies exactly linear per element: E = Σ_I w_{Z_I}·d^I + Σ_Z c_Z n_Z."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, ndesc))
    c = np.array([-0.5, -75.0])
    descs, energies, onehots = [], [], []
    for natm in sizes:
        z = rng.integers(0, 2, size=natm)
        z[:2] = (0, 1)
        oh = np.eye(2)[z]
        d = rng.uniform(0, 2, size=(frames, natm, ndesc))
        descs.append(d)
        onehots.append(oh)
        energies.append(np.einsum("fad,ad->f", d, oh @ w) + oh.sum(0) @ c)
    return descs, energies, onehots, w, c


def test_per_element_prefit_recovers_linear_energies():
    """Exactly per-element-linear energies are recovered (weights, constants, and energies of
    frames of a size never fitted), at α → 0 and with any shift (absorbed by the constants)."""
    from jaxks.deepks.model import fit_prefit_per_element

    descs, energies, onehots, w, c = per_element_data()
    shift = np.random.default_rng(1).normal(size=6)
    weight, const = fit_prefit_per_element(descs[:3], energies[:3], onehots[:3], shift,
                                           np.ones(6), ridge_alpha=1e-12)
    np.testing.assert_allclose(weight, w, rtol=1e-7, atol=1e-9)
    # E = Σ_Z w_Z·Σ_{I∈Z}(d − shift) + c'_Z n_Z: c' = c + w_Z·shift
    np.testing.assert_allclose(const, c + w @ shift, rtol=1e-9, atol=1e-9)
    pred = np.einsum("fad,ad->f", descs[3] - shift, onehots[3] @ weight) + onehots[3].sum(0) @ const
    np.testing.assert_allclose(pred, energies[3], rtol=1e-9, atol=1e-8)
    # a large α shrinks the weights (the penalty acts): the fit can fail
    weight_big, _ = fit_prefit_per_element(descs[:3], energies[:3], onehots[:3], shift,
                                           np.ones(6), ridge_alpha=1e3)
    assert np.abs(weight_big).sum() < 0.5 * np.abs(w).sum()


def test_per_element_prefit_in_the_model_energy():
    """fit_model with prefit_per_element: E_δ (network output zeroed) = Σ_I w_{Z_I}·x^I + Σ c_Z,
    written out here with NumPy; the file round trip keeps it; the config needs elements."""
    import dataclasses
    import os
    import tempfile

    from jaxks.deepks.io import DeePKSModel, load_model, save_model

    with pytest.raises(InputError, match="element table"):
        ModelConfig(SECTIONS, prefit_per_element=True)
    config = ModelConfig(SECTIONS, hidden=(8,), elements=("H", "O"), prefit_per_element=True)
    p0 = init_model(config, jax.random.PRNGKey(0))
    assert p0.prefit_weight.shape == (2, 108)
    rng = np.random.default_rng(3)
    symbols = [["O", "H", "H"], ["O", "H", "H", "O", "H", "H"]]
    descs = [rng.uniform(0, 1, size=(7, 3, 108)), rng.uniform(0, 1, size=(5, 6, 108))]
    energies = [rng.normal(size=7), rng.normal(size=5)]
    p = fit_model(config, p0, descs, energies, symbols, ridge_alpha=1e-3)
    net = jax.tree_util.tree_map(jnp.zeros_like, p.net)  # network output 0
    p = dataclasses.replace(p, net=net)
    oh = element_onehot(symbols[1], config.elements)
    d = descs[1][0]
    x = (d - np.asarray(p.shift)) / np.asarray(p.scale)
    expected = (np.sum((oh @ np.asarray(p.prefit_weight)) * x) + oh.sum(0) @ np.asarray(
        p.element_energy) + 6 * float(p.prefit_bias))
    got = float(model_energy(config, p, jnp.asarray(d), jnp.asarray(oh)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    with pytest.raises(InputError, match="one-hot"):
        model_energy(config, p, jnp.asarray(d))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        save_model(path, DeePKSModel(config=config, params=p, basis=default_basis()))
        back = load_model(path)
    assert back.config.prefit_per_element
    np.testing.assert_array_equal(np.asarray(back.params.prefit_weight),
                                  np.asarray(p.prefit_weight))

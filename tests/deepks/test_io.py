"""Model files: bit-exact round trip; damaged, foreign and mismatched files give clear errors."""

import json

import jax
import numpy as np
import pytest

import jaxks
from jaxks.deepks.io import DeePKSModel, ModelFileError, load_model, save_model
from jaxks.deepks.model import ModelConfig, fit_model, init_model
from jaxks.integrals.projectors import basis_from_exponents, default_basis


@pytest.fixture(scope="module")
def model():
    basis = default_basis()
    config = ModelConfig(basis.shell_sections, hidden=(24, 24), embedding="thermal",
                         descriptor="eig", elements=("H", "O"))
    params = init_model(config, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    params = fit_model(config, params, [rng.normal(size=(4, 3, 108))], [rng.normal(size=4)],
                       [["O", "H", "H"]], prescale=True)
    return DeePKSModel(config=config, params=params, basis=basis, base_xc="pbe",
                       metadata={"trained_on": "test data"})


def test_round_trip_bit_exact(model, tmp_path):
    path = tmp_path / "model.npz"
    save_model(path, model)
    loaded = load_model(path, basis=default_basis(), base_xc="PBE")
    assert loaded.config == model.config
    assert loaded.basis == model.basis
    assert loaded.base_xc == "pbe" and loaded.metadata == model.metadata
    a, ta = jax.tree_util.tree_flatten(model.params)
    b, tb = jax.tree_util.tree_flatten(loaded.params)
    assert ta == tb
    for x, y in zip(a, b):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))  # bit-exact (no NaNs present)
    # and the loaded model is usable: same energy on the same descriptors
    from jaxks.deepks.model import model_energy
    d = np.random.default_rng(3).normal(size=(3, 108))
    assert model_energy(model.config, model.params, d) == model_energy(loaded.config,
                                                                       loaded.params, d)


def _rewrite_header(src, dst, **changes):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["__header__"].tobytes())
    header.update(changes)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **arrays)


def test_other_version_rejected(model, tmp_path):
    save_model(tmp_path / "m.npz", model)
    _rewrite_header(tmp_path / "m.npz", tmp_path / "old.npz", jaxks_version="0.0.1")
    with pytest.raises(ModelFileError, match="written by jaxks 0.0.1"):
        load_model(tmp_path / "old.npz")
    assert load_model(tmp_path / "old.npz", allow_other_version=True).config == model.config
    _rewrite_header(tmp_path / "m.npz", tmp_path / "fmt.npz", format_version=99)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(tmp_path / "fmt.npz")
    assert jaxks.__version__ != "0.0.1"


def test_mismatched_basis_or_functional_rejected(model, tmp_path):
    save_model(tmp_path / "m.npz", model)
    other = basis_from_exponents([2.0, 0.5], l_values=(0, 1, 2))
    with pytest.raises(ModelFileError, match="projector basis"):
        load_model(tmp_path / "m.npz", basis=other)
    with pytest.raises(ModelFileError, match="base functional"):
        load_model(tmp_path / "m.npz", base_xc="lda")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty_npz", "missing"])
def test_damaged_files_rejected(model, tmp_path, damage):
    path = tmp_path / "m.npz"
    save_model(path, model)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":  # inside the stored (uncompressed) parameter data
        i = raw.index(b"net/params/dense_1/kernel.npy") + 400
        raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "garbage":
        path.write_text("this is not a model\n")
    elif damage == "empty_npz":
        np.savez(path, x=np.zeros(3))
    else:
        path = tmp_path / "nothing_here.npz"
    with pytest.raises(ModelFileError):
        load_model(path)


def test_checksum_catches_consistent_zip_with_altered_array(model, tmp_path):
    """A file rewritten with a changed parameter but the old header is caught by the checksum."""
    save_model(tmp_path / "m.npz", model)
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["shift"] = arrays["shift"] + 1e-12
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="corrupted"):
        load_model(tmp_path / "bad.npz")


def test_loaded_model_prepares_scf_term(model, tmp_path, water_mol, water_dm):
    """The bundle builds (term, θ) with element constants from the molecule's own symbols."""
    from jaxks.deepks.correction import deepks_forces, deepks_params
    from jaxks.integrals.projectors import projector_derivatives, projector_overlaps

    save_model(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz")
    term, theta = loaded.prepare(water_mol)
    ref = deepks_params(model.params, projector_overlaps(water_mol), ["O", "H", "H"], ("H", "O"))
    np.testing.assert_array_equal(theta.element_onehot, ref.element_onehot)
    assert term(water_dm, theta) == model.term(water_dm, ref)
    np.testing.assert_array_equal(
        loaded.forces(water_mol, water_dm),
        deepks_forces(model.term, water_dm, ref, projector_derivatives(water_mol)))

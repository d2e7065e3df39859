"""Built-in models by name, and a model's binding to the settings it was trained with."""

import json

import jax
import numpy as np
import pytest

from jaxks.cli import main
from jaxks.deepks.io import DeePKSModel, ModelFileError, load_model, save_model
from jaxks.deepks.model import ModelConfig, init_model
from jaxks.integrals.projectors import default_basis
from jaxks.models import BUILTIN, builtin_path, card_path, check_settings, model_settings
from tests import geometries as geo
from tests.conftest import make_system

SETTINGS = dict(basis="def2-svp", auxbasis="def2-universal-jkfit", grid_level=0, base="pbe",
                target="hse06")


@pytest.fixture(scope="module")
def bound_model_file(tmp_path_factory):
    """A small untrained model whose metadata binds it to grid level 0."""
    basis = default_basis()
    config = ModelConfig(basis.shell_sections, hidden=(8,), elements=("H", "O"))
    params = init_model(config, jax.random.PRNGKey(0))
    model = DeePKSModel(config=config, params=params, basis=basis, base_xc="pbe",
                        metadata=dict(settings=SETTINGS))
    path = tmp_path_factory.mktemp("model") / "bound.npz"
    save_model(path, model)
    return path


@pytest.fixture()
def water_xyz(tmp_path):
    path = tmp_path / "water.xyz"
    path.write_text(make_system(geo.WATER).to_xyz("water"))
    return path


def test_check_settings_names_the_mismatch(bound_model_file):
    model = load_model(bound_model_file)
    assert model_settings(model) == SETTINGS
    check_settings(model, "m", basis="DEF2-SVP", grid_level=0, auxbasis=None)  # same: no error
    with pytest.raises(ModelFileError, match=r"basis 'def2-tzvp' \(trained with 'def2-svp'\)"):
        check_settings(model, "m", basis="def2-tzvp")
    with pytest.raises(ModelFileError, match="grid_level 3"):
        check_settings(model, "m", grid_level=3)


def test_scf_takes_the_model_settings_and_refuses_others(bound_model_file, water_xyz, capsys):
    # no --grid-level: the model's level 0 is used, not the command's default 3
    rc = main(["scf", str(water_xyz), "--model", str(bound_model_file), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["converged"]
    rc0 = main(["scf", str(water_xyz), "--model", str(bound_model_file), "--grid-level", "0",
                "--json"])
    same = json.loads(capsys.readouterr().out)
    assert rc0 == 0 and abs(same["energy_eh"] - out["energy_eh"]) < 1e-10
    # an explicit setting other than the model's: a clear error, exit status 2
    rc = main(["scf", str(water_xyz), "--model", str(bound_model_file), "--basis", "def2-tzvp"])
    err = capsys.readouterr().err
    assert rc == 2 and "trained with 'def2-svp'" in err


def test_unknown_model_name_is_a_clear_error(water_xyz, capsys):
    rc = main(["scf", str(water_xyz), "--model", "no-such-model"])
    err = capsys.readouterr().err
    assert rc == 2 and "not the name of a built-in model" in err and "water" in err


def test_builtin_names_resolve_to_package_files():
    assert set(BUILTIN) == {"water"}
    path = builtin_path("Water")
    assert path.endswith("water.npz") and card_path("water").endswith("water.md")
    assert builtin_path("nope") is None

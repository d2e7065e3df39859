"""Training configuration (jaxks.train.config): TOML round trips, defaults for partial files,
clear errors for unknown or bad settings."""

import dataclasses
import tomllib

import pytest

import jaxks  # noqa: F401
from jaxks.system import InputError
from jaxks.train.config import (DataConfig, LossSection, ModelSection, OptimSection, SCFSection,
                                StageSection, TrainConfig, TrainSection, dumps_config,
                                load_config, save_config)
from jaxks.train.losses import LossWeights


def every_setting_changed() -> TrainConfig:
    """A config in which no setting has its default value (tuples, bools, ints, floats with
    exponents, strings with quotes, backslashes and non-ASCII characters)."""
    return TrainConfig(
        data=DataConfig(train=("data/w1", 'odd "name"\\dir', "données/w3"), test=("data/w4",),
                        max_frames=17, skip_unconverged_labels=False),
        model=ModelSection(hidden=(32, 8), embedding="thermal", descriptor="eig",
                           element_constants=False, prefit=False, ridge_alpha=0.25,
                           output_scale=20.0, seed=11, pair_radial=(9, 4), pair_l=(2,),
                           pair_hidden=(8,), pair_floor=2.5e-3, prefit_per_element=True),
        loss=LossSection(energy=2.0, force=0.0, hamiltonian=1.5e-3, valence_hamiltonian=0.75,
                         eigenvector=0.0,
                         eigenvalue=0.125, density=0.3, gap=1e-7, n_virtual=3,
                         include_core=True),
        optim=OptimSection(learning_rate=3e-4, decay_steps=7, decay_rate=0.5,
                           end_learning_rate=1.25e-6, clip_norm=10.0),
        scf=SCFSection(max_cycles=23, e_tol=1e-13, comm_tol=2.5e-8, level_shift=0.2,
                       damping=0.3, adjoint_tol=1e-11),
        train=TrainSection(mode="fixed", steps=5, batch_size=3, seed=42, refresh_every=2,
                           checkpoint_every=4, log_every=3, out="runs/try 1",
                           scf_frames_per_vmap=2, refresh_cycles=12, refresh_e_tol=3e-9,
                           refresh_comm_tol=5e-5),
        stages=(StageSection(mode="scf", steps=7, batch_size=2, refresh_every=3,
                             learning_rate=1e-4, decay_steps=9, decay_rate=0.7, energy=0.5,
                             force=2.0, hamiltonian=0.0, valence_hamiltonian=3.0,
                             eigenvector=0.2, eigenvalue=1.0,
                             density=0.1, gap=0.05),
                StageSection(mode="fixed", steps=0)))


def write(tmp_path, text, name="config.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_field_differs_from_default():
    """Guards the round-trip test: a setting added later without a changed value here fails."""
    changed, default = every_setting_changed(), TrainConfig()
    for section in dataclasses.fields(TrainConfig):
        a, b = getattr(changed, section.name), getattr(default, section.name)
        if section.name == "stages":
            a, b = a[0], StageSection()
        for f in dataclasses.fields(a):
            assert getattr(a, f.name) != getattr(b, f.name), f"{section.name}.{f.name}"


@pytest.mark.parametrize("config", [TrainConfig(), every_setting_changed()],
                         ids=["defaults", "all-changed"])
def test_round_trip_through_toml_file(tmp_path, config):
    path = write(tmp_path, dumps_config(config))
    assert load_config(path) == config
    save_config(config, tmp_path / "saved.toml")
    assert load_config(tmp_path / "saved.toml") == config
    assert (tmp_path / "saved.toml").read_text(encoding="utf-8") == dumps_config(config)


def test_dumped_config_is_complete_toml():
    """Every setting of every section is written (the file records exactly what ran)."""
    config = every_setting_changed()
    parsed = tomllib.loads(dumps_config(config))
    assert set(parsed) == {f.name for f in dataclasses.fields(TrainConfig)}
    for section in dataclasses.fields(TrainConfig):
        if section.name == "stages":
            names = {f.name for f in dataclasses.fields(StageSection)}
            assert len(parsed["stages"]) == 2
            assert all(set(stage) == names for stage in parsed["stages"])
            continue
        names = {f.name for f in dataclasses.fields(getattr(TrainConfig(), section.name))}
        assert set(parsed[section.name]) == names


def test_partial_file_takes_defaults(tmp_path):
    path = write(tmp_path, '[data]\ntrain = ["a", "b"]\n\n[train]\nsteps = 7\nmode = "fixed"\n'
                           "[optim]\nlearning_rate = 1\n")
    cfg = load_config(path)
    assert cfg == TrainConfig(data=DataConfig(train=("a", "b")),
                              train=TrainSection(steps=7, mode="fixed"),
                              optim=OptimSection(learning_rate=1.0))
    assert isinstance(cfg.optim.learning_rate, float)  # TOML integer accepted for a number
    assert load_config(write(tmp_path, "", "empty.toml")) == TrainConfig()
    assert load_config(write(tmp_path, "# comments only\n[scf]\n", "c.toml")) == TrainConfig()


@pytest.mark.parametrize("text, words", [
    ("[trian]\nsteps = 3\n", ["unknown", "trian"]),
    ("[train]\nstepz = 3\n", ["unknown", "[train]", "stepz", "steps"]),
    ("[loss]\nenergy = 1.0\nforces = 1.0\n", ["[loss]", "forces", "force"]),
    ("train = 3\n", ["train", "section"]),
    ('[train]\nmode = "e2e"\n', ["train.mode", "scf", "fixed", "e2e"]),
    ('[model]\nembedding = "warm"\n', ["embedding", "thermal", "warm"]),
    ('[model]\ndescriptor = "sorted"\n', ["model.descriptor", "schatten", "eig", "sorted"]),
    ('[model]\nembedding = "thermal"\n', ["thermal", "model.descriptor", "eig"]),
    ("[train]\nsteps = -1\n", ["train.steps", ">= 0"]),
    ("[train]\nbatch_size = 0\n", ["batch_size", ">= 1"]),
    ('[train]\nsteps = "ten"\n', ["[train] steps", "integer", "ten"]),
    ("[train]\nsteps = 2.5\n", ["[train] steps", "integer", "2.5"]),
    ("[train]\nsteps = true\n", ["[train] steps", "integer"]),
    ('[model]\nprefit = "no"\n', ["[model] prefit", "true or false"]),
    ('[optim]\nlearning_rate = "fast"\n', ["[optim] learning_rate", "number"]),
    ("[optim]\nlearning_rate = -0.1\n", ["learning_rate", "> 0"]),
    ('[data]\ntrain = "data/w1"\n', ["[data] train", "list"]),
    ('[model]\nhidden = [100, "wide"]\n', ["[model] hidden", "integer", "wide"]),
    ("[model]\nhidden = [100, 0]\n", ["hidden", ">= 1"]),
    ("[model]\npair_radial = [6, 12]\n", ["pair_radial", "[12]", "out of range", "0..11"]),
    ("[model]\npair_radial = [6]\npair_l = [0, 3]\n", ["pair_l", "no l = 3"]),
    ("[model]\npair_hidden = [0]\n", ["pair_hidden", ">= 1"]),
    ("[model]\npair_floor = 0.0\n", ["pair_floor", "> 0"]),
    ('[train]\nout = 5\n', ["[train] out", "string"]),
    ("[loss]\neigenvalue = -0.01\n", ["loss weights", ">= 0"]),
    ("[scf]\nmax_cycles = 0\n", ["max_cycles", ">= 1"]),
    ("[scf]\ncomm_tol = 0.0\n", ["comm_tol", "> 0"]),
    ("[train]\nrefresh_comm_tol = 0.0\n", ["refresh_comm_tol", "> 0"]),
    ("[scf]\ndamping = 1.0\n", ["damping"]),
])
def test_bad_settings_give_clear_input_errors(tmp_path, text, words):
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, text))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(InputError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="invalid TOML"):
        load_config(write(tmp_path, "[train\nsteps = 3\n"))
    with pytest.raises(InputError, match="invalid TOML"):
        load_config(write(tmp_path, "[train]\nsteps = \n"))


def test_direct_construction_is_validated():
    with pytest.raises(InputError, match="train.mode"):
        TrainConfig(train=TrainSection(mode="SCF"))
    with pytest.raises(InputError, match="damping"):
        TrainConfig(scf=SCFSection(damping=-0.1))


def test_stages_inherit_unset_values_and_default_to_one_stage(tmp_path):
    """Without [[stages]] one stage is [train] mode and steps; a stage's 0 / −1 values take
    [train], [optim] and [loss] values, set values win."""
    cfg = load_config(write(tmp_path, """
[train]
mode = "scf"
steps = 11
batch_size = 5
refresh_every = 4
[optim]
learning_rate = 2e-3
[loss]
eigenvalue = 0.3
"""))
    (only,) = cfg.resolved_stages()
    assert (only.mode, only.steps, only.batch_size, only.refresh_every) == ("scf", 11, 5, 4)
    assert only.learning_rate == 2e-3 and only.weights.eigenvalue == 0.3
    cfg = load_config(write(tmp_path, """
[train]
batch_size = 5
[loss]
eigenvalue = 0.3
[[stages]]
mode = "fixed"
steps = 3
[[stages]]
mode = "scf"
steps = 2
learning_rate = 1e-4
eigenvalue = 0.0
batch_size = 2
""", "staged.toml"))
    first, second = cfg.resolved_stages()
    assert cfg.total_steps == 5
    assert (first.mode, first.steps, first.batch_size, first.learning_rate) == ("fixed", 3, 5,
                                                                               1e-3)
    assert first.weights == LossWeights(**{**dataclasses.asdict(LossWeights()),
                                           "eigenvalue": 0.3})
    assert (second.mode, second.batch_size, second.learning_rate) == ("scf", 2, 1e-4)
    assert second.weights.eigenvalue == 0.0 and second.weights.energy == 1.0


@pytest.mark.parametrize("text,words", [
    ('[[stages]]\nmode = "both"\n', "mode must be"),
    ("[[stages]]\nsteps = -1\n", "must be >= 0"),
    ("[[stages]]\nenergy = -2.0\n", "loss weights"),
    ("[[stages]]\nlr = 1.0\n", "unknown setting"),
    ("stages = 3\n", "list of [[stages]]"),
])
def test_bad_stages_give_clear_errors(tmp_path, text, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))

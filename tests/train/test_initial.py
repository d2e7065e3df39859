"""The initial model of a run and the label settings it is bound to
(:mod:`jaxks.train.initial`)."""

import jaxks  # noqa: F401  (float64 on)
from jaxks.train.initial import new_model, training_settings
from tests.train.conftest import train_config


def test_training_settings_of_the_datasets(water_dataset, label_settings, tmp_path):
    """The labels' settings when every dataset agrees; none when a folder is no dataset."""
    st = training_settings([water_dataset, water_dataset])
    assert st == dict(basis=label_settings.basis, auxbasis=label_settings.auxbasis,
                      grid_level=label_settings.grid_level, base="pbe", target="hse06")
    assert training_settings([water_dataset, str(tmp_path)]) == {}
    assert training_settings([]) == {}


def test_new_model_covers_the_elements_and_projector_shells(water_records, tmp_path):
    """One element constant per element of the frames (sorted), one descriptor section of
    2l+1 per projector shell."""
    cfg = train_config(tmp_path, "fixed")
    config, params, basis = new_model(cfg, water_records)
    assert config.elements == ("H", "O")
    assert config.shell_sections == tuple(2 * l + 1 for l, n in basis.shell_structure
                                          for _ in range(n))
    assert params.element_energy.shape[-1] == 2

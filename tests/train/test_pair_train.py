"""Training a model with the pair term: two fixed-density steps of :func:`jaxks.train.loop.train`
on labelled water monomers move the pair network away from its initial (zero last layer) state,
and the saved model file carries it."""

import dataclasses
import os

import jax
import numpy as np

from jaxks.deepks.io import load_model
from jaxks.deepks.model import init_model
from jaxks.train import loop
from tests.train.conftest import params_equal, train_config


def test_fixed_mode_trains_the_pair_network(water_records, tmp_path):
    cfg = train_config(tmp_path, "fixed", steps=2, refresh_every=100)
    # no force term: the pair network's forces are tested in tests/deepks/test_pair.py
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, pair_radial=(8, 10), pair_hidden=(8,)),
        loss=dataclasses.replace(cfg.loss, force=0.0))
    result = loop.train(cfg, water_records, stream=None)
    assert result.steps == 2
    config = result.model.config
    assert config.pair_radial == (8, 10) and config.pair_l == (0, 1)
    start = init_model(config, jax.random.PRNGKey(cfg.model.seed)).pair_net
    trained = result.model.params.pair_net
    # the initial last layer is zero; after two steps every layer has moved
    assert not np.any(np.asarray(start["params"]["dense_1"]["kernel"]))
    for layer in ("dense_0", "dense_1"):
        assert not np.array_equal(np.asarray(trained["params"][layer]["kernel"]),
                                  np.asarray(start["params"][layer]["kernel"])), layer
    saved = load_model(os.path.join(cfg.train.out, loop.MODEL_NAME))
    assert saved.config == config and params_equal(saved.params, result.model.params)

"""Fixed-density training on periodic frames: water clusters and a Γ-point water box in one
training set (``jaxks label`` of a box, :func:`jaxks.train.frames.load_records` without
forces, :func:`jaxks.train.loop.train` in fixed mode)."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.cli import main
from jaxks.integrals.projectors import default_basis
from jaxks.train import loop
from jaxks.train.frames import load_records
from jaxks.train.predict import fixed_cache, predict_fixed
from tests.data.test_cell_labels import BOX
from tests.train.conftest import label_builtin, train_config
from tests.train.test_loop import loss_setup, perturbed


def test_fixed_training_on_clusters_and_a_box(tmp_path, label_settings):
    (tmp_path / "box.extxyz").write_text(BOX)
    assert main(["label", str(tmp_path / "box.extxyz"), "--out", str(tmp_path / "boxes"),
                 "--basis", "sto-3g", "--grid-level", "0", "--quiet"]) == 0
    mono = label_builtin(tmp_path / "mono", "water_monomers", 2, label_settings)
    records = load_records([mono, str(tmp_path / "boxes")], default_basis(), ("H", "O"),
                           with_forces=False)
    (box,) = [r for r in records if r.system.lattice is not None]
    assert len(records) == 3 and box.key not in {r.key for r in records if r is not box}
    assert box.frame.ints.lattice is not None and box.frame.fints is None

    cfg = train_config(tmp_path / "out", "fixed", steps=3, refresh_every=2, batch_size=1)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, force=0.0))
    params, setup = loss_setup(cfg, [box])
    assert not setup.predict.with_forces
    # the box's frozen-density cache at PySCF's base density: the jaxks Γ-point PBE energy
    # functional there is PySCF's label energy; the prediction adds E_δ of the cell's P
    gamma = jnp.asarray(box.base["dm"])
    cache = jax.jit(fixed_cache, static_argnames=("setup",))(box.frame, gamma,
                                                              setup=setup.predict)
    assert abs(float(cache.energy_base) - float(box.base["energy"])) < 1e-8
    pred = jax.jit(predict_fixed, static_argnames=("setup",))(perturbed(params), cache,
                                                              setup=setup.predict)
    e_delta = float(pred["energy"]) - float(cache.energy_base)
    assert np.isfinite(e_delta) and abs(e_delta) > 1e-6
    assert np.all(np.isfinite(np.asarray(pred["mo_energy"])))

    result = loop.train(cfg, records, stream=None)
    assert result.steps == 3
    assert os.path.exists(os.path.join(result.out, loop.MODEL_NAME))
    with open(os.path.join(result.out, loop.LOG_NAME)) as f:
        lines = [line for line in f if line.strip()]
    assert len(lines) >= 3 and "nan" not in "".join(lines).lower()

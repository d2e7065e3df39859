"""The initial model of a training run and the label settings the trained model is bound to.

:func:`new_model` builds the network (seeded) and fits its frozen parts to the training frames;
:func:`training_settings` reads the datasets' label settings for the model file's metadata.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.deepks.descriptors import descriptors_from_overlaps
from jaxks.deepks.model import ModelConfig, fit_model, init_model
from jaxks.integrals.projectors import ProjectorBasis, default_basis
from jaxks.train.config import TrainConfig
from jaxks.train.frames import FrameRecord


def new_model(cfg: TrainConfig, records: Sequence[FrameRecord],
              basis: ProjectorBasis | None = None) -> tuple[ModelConfig, object, ProjectorBasis]:
    """Initialise the network (seeded) and fit its frozen parts (shift, ridge prefit, element
    constants) to E_target − E_base on the base-functional densities of ``records``."""
    basis = basis or default_basis()
    sections = tuple(2 * l + 1 for l, n in basis.shell_structure for _ in range(n))
    elements = tuple(sorted({s for r in records for s in r.system.symbols}))
    config = ModelConfig(shell_sections=sections, hidden=cfg.model.hidden,
                         embedding=None if cfg.model.embedding == "none" else "thermal",
                         elements=elements if cfg.model.element_constants else (),
                         output_scale=cfg.model.output_scale, descriptor=cfg.model.descriptor,
                         pair_radial=cfg.model.pair_radial, pair_l=cfg.model.pair_l,
                         pair_hidden=cfg.model.pair_hidden, pair_floor=cfg.model.pair_floor,
                         prefit_per_element=cfg.model.prefit_per_element)
    params = init_model(config, jax.random.PRNGKey(cfg.model.seed))
    # the frozen parts are fitted to the on-site descriptors alone, also with the pair term:
    # a fresh pair network's last layer is zero, so E_pair = 0 for the initial model and the
    # prefit is that of E_δ itself
    shells = basis.shell_structure
    descs = [np.asarray(descriptors_from_overlaps(jnp.asarray(r.base["dm"]), r.frame.overlaps,
                                                  shells, config.descriptor))[None]
             for r in records]
    energies = [np.array([float(r.frame.target["energy"]) - float(r.base["energy"])])
                for r in records]
    params = fit_model(config, params, descs, energies, [r.system.symbols for r in records],
                       prefit=cfg.model.prefit, ridge_alpha=cfg.model.ridge_alpha,
                       fit_elements=bool(config.elements))
    return config, params, basis


def training_settings(folders: Sequence[str]) -> dict:
    """The label settings a model is bound to: basis, auxbasis, grid_level, base, target of the
    training datasets (empty when they cannot be read, e.g. frames built in memory)."""
    from jaxks.data.store import Dataset

    found = []
    for folder in folders:
        try:
            st = Dataset(folder).settings
        except Exception:  # noqa: BLE001  (not a dataset folder: no binding recorded)
            return {}
        found.append(dict(basis=st.basis, auxbasis=st.auxbasis, grid_level=int(st.grid_level),
                          base=st.base, target=st.target))
    if not found or any(f != found[0] for f in found):
        return {}
    return found[0]

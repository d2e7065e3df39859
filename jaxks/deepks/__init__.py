"""DeePKS: a learned, self-consistent correction E_δ(Γ) = Σ_I NN(d^I(Γ)) to a base functional,
optionally plus a two-centre term Σ_{I≠J} NN_pair(q^{IJ}(Γ)) on off-site projected blocks.

Modules: :mod:`~jaxks.deepks.descriptors` (invariants of projected density matrices, on-site
and off-site),
:mod:`~jaxks.deepks.model` (Flax network, statistics, prefit),
:mod:`~jaxks.deepks.correction` (SCF energy term, potential, forces),
:mod:`~jaxks.deepks.io` (model files). The projector basis and its overlaps with the orbital
basis are integrals, produced by the integrals stage: :mod:`jaxks.integrals.projectors`.
"""

from jaxks.deepks.correction import (DeePKSParams, DeePKSTerm, correction_energy,
                                     correction_potential, deepks_forces, deepks_params)
from jaxks.deepks.descriptors import descriptors, descriptors_from_overlaps, pair_features
from jaxks.deepks.io import DeePKSModel, ModelFileError, load_model, save_model
from jaxks.deepks.model import ModelConfig, ModelParams, fit_model, init_model, model_energy

__all__ = [
    "DeePKSModel", "DeePKSParams", "DeePKSTerm", "ModelConfig", "ModelFileError", "ModelParams",
    "correction_energy", "correction_potential", "deepks_forces", "deepks_params",
    "descriptors", "descriptors_from_overlaps", "fit_model", "init_model", "load_model",
    "model_energy", "pair_features", "save_model",
]

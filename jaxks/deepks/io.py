"""Trained DeePKS models as single files, and the bundle that turns one into an SCF term.

File format (``.npz``, written with :func:`save_model`):

* ``__header__``: UTF-8 JSON with ``format`` (``"jaxks-deepks-model"``), ``format_version``,
  ``jaxks_version``, the :class:`ModelConfig`, the projector basis, the base functional name,
  the element table (inside the config), free-form ``metadata``, the units of every stored
  quantity, and a SHA-256 checksum over all arrays;
* one float64 array per parameter leaf, named by its path (``net/params/dense_0/kernel``,
  ``shift``, ``scale``, ``prefit_weight``, ``prefit_bias``, ``element_energy``, and for a model
  with the pair term ``pair_net/params/dense_0/kernel`` ...).

Files written before the pair term existed (no ``pair_*`` keys in the config, no ``pair_net``
arrays) load as models without it; the format version is unchanged.

Arrays are stored exactly as they are, so save → load is bit-exact. A file that is not a model,
is truncated or damaged (zip CRC or checksum), was written by another jaxks version, or uses a
projector basis other than the one asked for raises :class:`ModelFileError` with the reason.
"""

from __future__ import annotations

import dataclasses
import io as _io
import json
import os
import zipfile
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxks
from jaxks.fileio import array_checksum
from jaxks.deepks.correction import DeePKSTerm, deepks_forces, deepks_params
from jaxks.deepks.model import ModelConfig, ModelParams
from jaxks.integrals.projectors import (ProjectorBasis, projector_derivatives,
                                        projector_overlaps, resolve_basis)
from jaxks.system import InputError

FORMAT_NAME = "jaxks-deepks-model"
FORMAT_VERSION = 1
_HEADER_KEY = "__header__"
_UNITS = {"energies": "Hartree", "lengths": "Bohr", "projector_exponents": "Bohr^-2",
          "descriptors": "electrons (eigenvalues of projected density matrices)",
          "pair_features": "electrons (Frobenius norms of off-site projected blocks)"}


class ModelFileError(InputError):
    """A DeePKS model file that cannot be used (damaged, foreign, or incompatible)."""


@dataclasses.dataclass(frozen=True)
class DeePKSModel:
    """A trained model with everything needed to use it on a new molecule.

    Attributes:
        config: network configuration (static; includes the element table).
        params: :class:`ModelParams`.
        basis: projector basis the descriptors were computed with.
        base_xc: name of the base functional the model corrects (e.g. ``"pbe"``).
        metadata: free-form JSON-serialisable information (training data, date, ...).
    """

    config: ModelConfig
    params: ModelParams
    basis: ProjectorBasis
    base_xc: str = "pbe"
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def term(self) -> DeePKSTerm:
        return DeePKSTerm.for_model(self.config, self.basis)

    def prepare(self, mol, symbols: Sequence[str] | None = None):
        """(term, θ) for the PySCF molecule ``mol``, ready for ``run_scf(..., term=, params=)``."""
        if symbols is None:
            symbols = [mol.atom_pure_symbol(i) for i in range(mol.natm)]
        proj = projector_overlaps(mol, self.basis)
        return self.term, deepks_params(self.params, proj, symbols, self.config.elements)

    def projector_derivatives(self, mol):
        """Derivative integrals for :func:`jaxks.deepks.correction.deepks_forces`."""
        return projector_derivatives(mol, self.basis)

    def forces(self, mol, gamma) -> jax.Array:
        """DeePKS force term F_A = −∂E_δ/∂R_A at fixed Γ [nao, nao], [natm, 3] (Hartree/Bohr)."""
        term, theta = self.prepare(mol)
        return deepks_forces(term, jnp.asarray(gamma), theta, self.projector_derivatives(mol))


# --------------------------------------------------------------------------- flattening
def _flatten(params: ModelParams) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        key = "/".join(_key_name(k) for k in path)
        out[key] = np.asarray(leaf)
    return out


def _key_name(k) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


_NETWORKS = ("net", "pair_net")


def _unflatten(arrays: dict[str, np.ndarray]) -> ModelParams:
    nets: dict = {name: {} for name in _NETWORKS}
    fields = {}
    for key, value in arrays.items():
        parts = key.split("/")
        if parts[0] in nets:
            node = nets[parts[0]]
            for p in parts[1:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = jnp.asarray(value)
        else:
            fields[parts[0]] = jnp.asarray(value)
    missing = {f.name for f in dataclasses.fields(ModelParams)} - set(_NETWORKS) - set(fields)
    if missing or not nets["net"]:
        raise ModelFileError(f"model file lacks parameters: {sorted(missing) or ['net']}")
    return ModelParams(**nets, **fields)


def _check_pair_net(config: ModelConfig, params: ModelParams) -> str | None:
    """Why the stored pair network does not fit ``config`` (None when it does)."""
    if not config.pair_radial:
        return "pair-network parameters without pair shells" if params.pair_net else None
    try:
        width = params.pair_net["params"]["dense_0"]["kernel"].shape[0]
    except (KeyError, TypeError, AttributeError, IndexError):
        return "pair shells but no pair-network parameters"
    if width != config.n_pair_shells ** 2:
        return (f"a pair network reading {width} features for {config.n_pair_shells} pair "
                f"shells ({config.n_pair_shells ** 2} features)")
    return None


# --------------------------------------------------------------------------- save / load
def save_model(path: str | os.PathLike, model: DeePKSModel) -> None:
    """Write ``model`` to one ``.npz`` file (see the module docstring for the layout)."""
    arrays = _flatten(model.params)
    if _HEADER_KEY in arrays:
        raise ValueError("reserved parameter name")
    header = dict(format=FORMAT_NAME, format_version=FORMAT_VERSION,
                  jaxks_version=jaxks.__version__, config=model.config.to_dict(),
                  basis=model.basis.to_dict(), base_xc=model.base_xc,
                  metadata=model.metadata, units=_UNITS, checksum=array_checksum(arrays))
    header_bytes = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), np.uint8)
    buffer = _io.BytesIO()
    np.savez(buffer, **{_HEADER_KEY: header_bytes}, **arrays)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def load_model(path: str | os.PathLike, basis: ProjectorBasis | str | None = None, *,
               base_xc: str | None = None, allow_other_version: bool = False) -> DeePKSModel:
    """Read a model written by :func:`save_model` (:func:`jaxks.models.load_model` also takes
    the name of a model shipped with jaxks).

    Args:
        path: the file.
        basis: if given, the projector basis the caller intends to use; it must equal the
            model's.
        base_xc: if given, the base functional the caller runs; it must equal the model's.
        allow_other_version: accept a file written by another jaxks version (same format).
    Raises:
        ModelFileError: missing, damaged, foreign or incompatible file (message says which).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _HEADER_KEY not in z.files:
                raise ModelFileError(f"{path!r} is not a jaxks DeePKS model file (no header)")
            header = json.loads(z[_HEADER_KEY].tobytes().decode("utf-8"))
            arrays = {k: z[k] for k in z.files if k != _HEADER_KEY}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, UnicodeDecodeError,
            json.JSONDecodeError, KeyError) as err:
        raise ModelFileError(f"model file {path!r} is damaged or not a model file: "
                             f"{type(err).__name__}: {err}") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path!r} is not a jaxks DeePKS model file")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path!r} uses model-file format version "
                             f"{header.get('format_version')}, this jaxks reads version "
                             f"{FORMAT_VERSION}")
    if header.get("jaxks_version") != jaxks.__version__ and not allow_other_version:
        raise ModelFileError(f"{path!r} was written by jaxks {header.get('jaxks_version')}, "
                             f"this is jaxks {jaxks.__version__}; retrain, or load with "
                             "allow_other_version=True if you know the model is compatible")
    if header.get("checksum") != array_checksum(arrays):
        raise ModelFileError(f"model file {path!r} is corrupted: its arrays do not match the "
                             "checksum written with them")
    try:
        config = ModelConfig.from_dict(header["config"])
        model_basis = ProjectorBasis.from_dict(header["basis"])
        params = _unflatten(arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"model file {path!r} has an invalid header: {err}") from err
    if params.shift.shape != (config.ndesc,):
        raise ModelFileError(f"model file {path!r} is inconsistent: {params.shift.shape[0]} "
                             f"descriptor shifts for {config.ndesc} descriptors")
    pair_problem = _check_pair_net(config, params)
    if pair_problem:
        raise ModelFileError(f"model file {path!r} is inconsistent: {pair_problem}")
    if model_basis.shell_sections != config.shell_sections:
        raise ModelFileError(f"model file {path!r} is inconsistent: its projector basis does "
                             "not produce the descriptors its network expects")
    if basis is not None:
        wanted = resolve_basis(basis)
        if not wanted.same_as(model_basis):
            raise ModelFileError(
                f"model {path!r} was trained with projector basis {model_basis.name!r} "
                f"({model_basis.n_proj} functions per atom), not with the requested "
                f"{wanted.name!r} ({wanted.n_proj}); descriptors would not match")
    model_xc = header.get("base_xc", "")
    if base_xc is not None and base_xc.lower() != str(model_xc).lower():
        raise ModelFileError(f"model {path!r} corrects the base functional {model_xc!r}, "
                             f"not {base_xc!r}")
    return DeePKSModel(config=config, params=params, basis=model_basis, base_xc=model_xc,
                       metadata=header.get("metadata", {}))

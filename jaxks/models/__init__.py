"""Trained DeePKS models shipped with jaxks, loadable by name.

=========  ==============================================================================
name       what it is
=========  ==============================================================================
``water``  PBE → HSE06 correction for water clusters; def2-SVP, def2-universal-jkfit, PySCF
           grid level 2; model card: ``water.md`` beside the model file (and
           ``benchmarks/results/accuracy.md``)
=========  ==============================================================================

Use::

    jaxks scf cluster.xyz --model water --forces          # command line
    model = jaxks.load_model("water")                      # Python (:func:`load_model`)

A built-in model fixes the settings it was trained with (basis, auxiliary basis, grid level,
base functional; :func:`model_settings`); using it with other settings is an
:class:`jaxks.deepks.io.ModelFileError` (exit status 2 on the command line), since its
descriptors and corrections would no longer mean what they were trained to mean.
"""

from __future__ import annotations

import os

from jaxks.deepks.io import DeePKSModel, ModelFileError
from jaxks.deepks.io import load_model as load_model_file
from jaxks.integrals.projectors import ProjectorBasis

#: Built-in model names and their files in this package directory.
BUILTIN = {"water": "water.npz"}

_HERE = os.path.dirname(os.path.abspath(__file__))


def builtin_path(name: str) -> str | None:
    """Path of the built-in model ``name`` (case-insensitive), or None if there is none."""
    file = BUILTIN.get(str(name).lower())
    return None if file is None else os.path.join(_HERE, file)


def card_path(name: str) -> str | None:
    """Path of the model card (Markdown) of the built-in model ``name``, or None."""
    path = builtin_path(name)
    return None if path is None else os.path.splitext(path)[0] + ".md"


def load_model(path: str | os.PathLike, basis: ProjectorBasis | str | None = None, *,
               base_xc: str | None = None, allow_other_version: bool = False) -> DeePKSModel:
    """A model file (:func:`jaxks.deepks.io.load_model`, same arguments), or the built-in model
    of that name (``"water"``) when no such file exists.

    Raises:
        ModelFileError: neither a file nor a built-in name; or the file's own errors.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        builtin = builtin_path(path)
        if builtin is None:
            raise ModelFileError(f"model file {path!r} does not exist (and it is not the name "
                                 f"of a built-in model: {', '.join(sorted(BUILTIN))})")
        if not os.path.exists(builtin):
            raise ModelFileError(f"built-in model {path!r} is missing from this installation "
                                 f"({builtin}); reinstall jaxks")
        path = builtin
    return load_model_file(path, basis, base_xc=base_xc,
                           allow_other_version=allow_other_version)


def model_settings(model) -> dict:
    """The settings a model was trained with, from its metadata: ``basis``, ``auxbasis``,
    ``grid_level``, ``base``, ``target`` (empty dict for models saved without them)."""
    return dict(model.metadata.get("settings", {}))


def check_settings(model, name: str, **used) -> None:
    """Raise :class:`ModelFileError` if a setting in ``used`` (``basis``, ``auxbasis``,
    ``grid_level``, ``base``) differs from the one ``model`` was trained with.

    ``None`` values are not checked (the caller takes the model's)."""
    trained = model_settings(model)
    wrong = [f"{k} {v!r} (trained with {trained[k]!r})" for k, v in used.items()
             if v is not None and k in trained and _norm(v) != _norm(trained[k])]
    if wrong:
        raise ModelFileError(f"model {name!r} used with other settings than it was trained "
                             f"with: {'; '.join(wrong)}. Leave these options out to use the "
                             "model's settings.")


def _norm(v):
    return v.lower().replace("_", "-") if isinstance(v, str) else v

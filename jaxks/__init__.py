"""jaxks: differentiable Kohn-Sham DFT in pure JAX.

Importing the package switches JAX to double precision (``jax_enable_x64``) once, for every
device: SCF energies to 1e-8 Eh and finite-difference checks of derivatives are impossible in
float32. Code that really wants float32 must ask for it explicitly with ``dtype=``.

Units inside the package are atomic units (Bohr, Hartree); xyz files are read in Angstrom.

The names below are the public API, what a notebook or script calls; they are imported lazily
(PEP 562), on first use, so ``import jaxks`` stays fast (PySCF, Flax and the trainer load only
when something needs them). Everything else lives in the submodules and may change.

Molecules and integrals
    ``System``, ``InputError``, ``compute_integrals``, ``Integrals``
Self-consistent field
    ``run_scf``, ``SCFOptions``, ``SCFResult``, ``clear_compiled``
Derivatives through the converged SCF
    ``solve``, ``AdjointOptions``, ``ExternalPotential``, ``electric_field_params``
Forces
    ``scf_forces`` (F = −dE/dR of an SCF result, DeePKS term included), ``force_integrals``
DeePKS models
    ``load_model``, ``save_model``, ``DeePKSModel``
Data, training, evaluation
    ``builtin_frames``, ``LabelSettings``, ``label_frames``, ``Dataset``, ``load_config``,
    ``TrainConfig``, ``load_records``, ``train_model``, ``evaluate``, ``format_table``
Plots
    ``density_of_states``, ``parity_plots``
ASE
    ``JaxksCalculator`` (needs ``pip install ase``)
Units
    ``EV_PER_HARTREE``, ``BOHR_PER_ANGSTROM``, ``ANGSTROM_PER_BOHR``,
    ``EV_ANGSTROM_PER_HARTREE_BOHR``

Importing it also turns on a persistent compilation cache in the user's cache directory
(:mod:`jaxks.compile_cache`; ``JAXKS_COMPILE_CACHE=0`` turns it off).
"""

import importlib
import os
import sys

if ("jax" not in sys.modules and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        and os.environ.get("JAXKS_COMPILE_CACHE", "1").strip().lower() not in ("0", "off", "false",
                                                                                "no")):
    # jaxlib 0.10 logs a spurious C++ error for every executable loaded from the persistent
    # compilation cache on the CPU (tuning flags taken for missing CPU features, jax-ml/jax#38445;
    # the load itself works). Silence XLA's C++ log unless the user configured it; this only
    # takes effect when jaxks is imported before jax.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from jaxks.compile_cache import enable_compile_cache  # noqa: E402

enable_compile_cache()


#: public name -> "module:attribute" it is imported from on first use
_API = {
    # molecules and integrals
    "System": "jaxks.system:System",
    "InputError": "jaxks.system:InputError",
    "compute_integrals": "jaxks.integrals:compute_integrals",
    "Integrals": "jaxks.integrals:Integrals",
    # SCF
    "run_scf": "jaxks.scf:run_scf",
    "SCFOptions": "jaxks.scf:SCFOptions",
    "SCFResult": "jaxks.scf:SCFResult",
    "clear_compiled": "jaxks.scf:clear_compiled",
    # derivatives through the SCF
    "solve": "jaxks.implicit:solve",
    "AdjointOptions": "jaxks.implicit:AdjointOptions",
    "ExternalPotential": "jaxks.hooks:ExternalPotential",
    "electric_field_params": "jaxks.hooks:electric_field_params",
    # forces
    # (no name "forces" or "train": those are submodules, and importing one would shadow it)
    "force_integrals": "jaxks.forces:force_integrals",
    "scf_forces": "jaxks.commands.scf:compute_forces",
    # DeePKS models
    "load_model": "jaxks.models:load_model",
    "save_model": "jaxks.deepks.io:save_model",
    "DeePKSModel": "jaxks.deepks.io:DeePKSModel",
    # data, training, evaluation
    "builtin_frames": "jaxks.data.datasets:builtin_frames",
    "LabelSettings": "jaxks.data.labels:LabelSettings",
    "label_frames": "jaxks.data.pipeline:label_frames",
    "Dataset": "jaxks.data.store:Dataset",
    "load_config": "jaxks.train.config:load_config",
    "TrainConfig": "jaxks.train.config:TrainConfig",
    "load_records": "jaxks.train.frames:load_records",
    "train_model": "jaxks.train.loop:train",
    "evaluate": "jaxks.train.evaluate:evaluate",
    "format_table": "jaxks.train.evaluate:format_table",
    # plots
    "density_of_states": "jaxks.train.plots:density_of_states",
    "parity_plots": "jaxks.train.plots:parity_plots",
    # ASE
    "JaxksCalculator": "jaxks.ase_calculator:JaxksCalculator",
    # units
    "EV_PER_HARTREE": "jaxks.units:EV_PER_HARTREE",
    "BOHR_PER_ANGSTROM": "jaxks.units:BOHR_PER_ANGSTROM",
    "ANGSTROM_PER_BOHR": "jaxks.units:ANGSTROM_PER_BOHR",
    "EV_ANGSTROM_PER_HARTREE_BOHR": "jaxks.units:EV_ANGSTROM_PER_HARTREE_BOHR",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    """Import a public name on first use (PEP 562) and keep it in the module namespace."""
    try:
        target = _API[name]
    except KeyError:
        raise AttributeError(f"module 'jaxks' has no attribute {name!r}") from None
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))

"""Shared fixtures of the trainer tests: a tiny labelled water set and its prepared frames.

Three built-in water monomers are labelled once per session (PBE base, HSE06 target, STO-3G,
grid level 0: about a second with PySCF) and turned into training frames once; tests that need
to change a frame copy it (records are mutable and shared).
"""

import dataclasses

import jax
import numpy as np
import pytest

import jaxks  # noqa: F401  (float64 on)
from jaxks.train.predict import fixed_cache

N_MONOMERS = 3
#: SCF tolerances under which the loss is smooth to ~1e-13 Hartree² in θ: needed for
#: finite differences at 1e-5 relative (comm_tol 1e-9 leaves ~1e-5 of FD noise).
TIGHT_SCF = dict(e_tol=1e-12, comm_tol=1e-11, adjoint_tol=1e-12)
#: A small network keeps compiling and training fast; the code paths are those of any size.
HIDDEN = (16, 16)


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread(one_openmp_thread):
    yield


@pytest.fixture(scope="session")
def label_settings():
    from jaxks.data.labels import LabelSettings

    return LabelSettings(basis="sto-3g", grid_level=0)


def label_builtin(out, name, count, settings) -> str:
    """Label the first ``count`` built-in structures ``name`` into ``out`` (one PySCF thread)."""
    from pyscf import lib

    from jaxks.data.datasets import builtin_frames
    from jaxks.data.pipeline import label_frames

    old = lib.num_threads()
    lib.num_threads(1)
    try:
        label_frames(builtin_frames(name)[:count], out, settings, workers=1, progress=None)
    finally:
        lib.num_threads(old)
    return str(out)


@pytest.fixture(scope="session")
def water_dataset(tmp_path_factory, label_settings):
    """Folder of :data:`N_MONOMERS` labelled water monomers (``jaxks label`` format)."""
    return label_builtin(tmp_path_factory.mktemp("water_monomers"), "water_monomers",
                         N_MONOMERS, label_settings)


@pytest.fixture(scope="session")
def water_records(water_dataset):
    """Prepared training frames (with force integrals) of :func:`water_dataset`."""
    from jaxks.train.frames import load_records
    from jaxks.integrals.projectors import default_basis

    records = load_records([water_dataset], default_basis(), ("H", "O"))
    assert len(records) == N_MONOMERS
    return records


@pytest.fixture(scope="session")
def water_dimer_records(tmp_path_factory, label_settings):
    """Two labelled, prepared built-in water dimers (a second composition: a second bucket)."""
    from jaxks.integrals.projectors import default_basis
    from jaxks.train.frames import load_records

    folder = label_builtin(tmp_path_factory.mktemp("water_dimers"), "water_dimers", 2,
                           label_settings)
    return load_records([folder], default_basis(), ("H", "O"))


def copy_record(record, **base_updates):
    """A shallow copy of a :class:`FrameRecord` whose ``base`` labels may be replaced."""
    return dataclasses.replace(record, base=dict(record.base, **base_updates))


def train_config(out, mode="scf", scf=None, **train):
    """A small :class:`TrainConfig`: tight SCF (the fixed-mode refresh too, so that tests can
    compare it with ``run_scf`` at [scf]'s tolerances), 16-16 network, batches of 2, output in
    ``out``."""
    from jaxks.train.config import ModelSection, SCFSection, TrainConfig, TrainSection

    train = dict(dict(mode=mode, steps=4, batch_size=2, seed=3, refresh_every=3,
                      checkpoint_every=100, out=str(out), refresh_e_tol=TIGHT_SCF["e_tol"],
                      refresh_comm_tol=TIGHT_SCF["comm_tol"]), **train)
    return TrainConfig(model=ModelSection(hidden=HIDDEN),
                       scf=SCFSection(**dict(TIGHT_SCF, **(scf or {}))),
                       train=TrainSection(**train))


def params_equal(a, b) -> bool:
    """Bitwise equality of two parameter pytrees."""
    import jax

    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def perturbed(params, scale=0.3, seed=1):
    """Network weights moved away from the (zero-output-biased) initialisation."""
    leaves, treedef = jax.tree_util.tree_flatten(params.net)
    rng = np.random.default_rng(seed)
    leaves = [x + scale * rng.standard_normal(x.shape) * (np.abs(x).max() + 0.1) for x in leaves]
    return dataclasses.replace(params, net=jax.tree_util.tree_unflatten(treedef, leaves))


#: :func:`fixed_cache` of one frame, jitted (the reference of the vmapped caches).
fixed_cache_jit = jax.jit(fixed_cache, static_argnames=("setup",))

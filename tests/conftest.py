import gc

import numpy as np
import pytest

import jaxks  # noqa: F401  (float64 on)
from jaxks.system import System


@pytest.fixture(autouse=True, scope="module")
def release_compiled_code():
    """Free every compiled executable after each test module.

    Each XLA:CPU executable keeps a few memory mappings for its code; a whole test session
    compiles tens of thousands of them and, kept alive, they pass the kernel's per-process map
    limit (vm.max_map_count, 65530), after which the next compilation segfaults.
    """
    yield
    from jaxks.scf import clear_compiled

    clear_compiled()
    gc.collect()


@pytest.fixture(scope="module")
def one_openmp_thread():
    """PySCF with one OpenMP thread (a shared, oversubscribed machine makes more threads crawl)."""
    from pyscf import lib

    old = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(old)


def make_system(geometry, **kwargs) -> System:
    symbols, coords = geometry
    return System.from_symbols(symbols, np.asarray(coords), **kwargs)


def pyscf_rks(mol, xc, auxbasis, grids, conv_tol=1e-12, conv_tol_grad=1e-7):
    """PySCF's density-fitted RKS on exactly the given grids (no density-based grid pruning)."""
    from pyscf import dft

    mf = dft.RKS(mol, xc=xc).density_fit(auxbasis=auxbasis)
    mf.grids = grids
    mf.small_rho_cutoff = 0
    mf.conv_tol = conv_tol
    mf.conv_tol_grad = conv_tol_grad
    mf.max_cycle = 200
    mf.kernel()
    assert mf.converged
    return mf


def save_tiny_model(path, elements=("H", "O"), metadata=None, seed=1):
    """Write a tiny random DeePKS model (default projectors, hidden (8, 8), input shift 0.2 so
    the network sees O(1) values) to ``path``; ``metadata`` as the model file keeps it (e.g.
    ``dict(settings=...)``). Returns ``path``."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxks.deepks import DeePKSModel, ModelConfig, init_model, save_model
    from jaxks.integrals.projectors import default_basis

    basis = default_basis()
    config = ModelConfig(basis.shell_sections, hidden=(8, 8), elements=tuple(elements))
    params = init_model(config, jax.random.PRNGKey(seed))
    params = dataclasses.replace(params, shift=jnp.full(config.ndesc, 0.2))
    save_model(path, DeePKSModel(config=config, params=params, basis=basis,
                                 metadata=dict(metadata or {})))
    return path

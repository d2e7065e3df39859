import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    """PySCF with one thread: the test machine is shared and oversubscribed OpenMP crawls."""
    from pyscf import lib

    old = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(old)

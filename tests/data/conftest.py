import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread(one_openmp_thread):
    yield

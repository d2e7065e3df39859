"""The notebooks in notebooks/: each executes headless without a cell error (through nbclient
and an ipykernel, from the notebooks folder, as a user opening them would), and each is
committed without outputs."""

import json
import os
import pathlib
import time

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
REPO = str(NOTEBOOKS.parent)


def test_the_four_notebooks_exist():
    assert [n[:2] for n in NAMES] == ["01", "02", "03", "04"], NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name}: a code cell has outputs; clear them"
            assert cell.get("execution_count") is None, f"{name}: a code cell has a count"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # the kernel imports jaxks from this checkout, with one OpenMP thread per process, and
    # draws with a non-interactive backend
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # run in a copy of the notebooks folder's place, so files a notebook writes go to tmp_path
    # while relative paths to ../benchmarks still resolve
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    (tmp_path / "benchmarks").symlink_to(NOTEBOOKS.parent / "benchmarks")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    client.execute()
    print(f"{name}: {time.perf_counter() - t0:.1f} s")

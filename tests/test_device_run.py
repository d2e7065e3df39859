"""benchmarks/device_run.py, the prepared accelerator run: its ``--cpu`` dry run end to end
(inputs prepared with PySCF, then the run in a process where importing PySCF fails, as on the
GPU machine), writing both result tables."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN_WITHOUT_PYSCF = textwrap.dedent("""
    import importlib.abc, sys

    class NoPySCF(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "pyscf" or name.startswith("pyscf."):
                raise ImportError("PySCF is not installed here (test)")
            return None

    sys.meta_path.insert(0, NoPySCF())
    sys.path.insert(0, "benchmarks")
    import device_run
    raise SystemExit(device_run.main(sys.argv[1:]))
""")


def test_cpu_dry_run_prepares_and_runs_without_pyscf(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    prep = subprocess.run([sys.executable, "benchmarks/device_run.py", "prepare", "--cpu",
                           "--data", str(data)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-3000:]
    assert (data / "scf_w1.npz").exists() and (data / "train_w1.npz").exists()
    run = subprocess.run([sys.executable, "-c", RUN_WITHOUT_PYSCF, "run", "--cpu", "--data",
                          str(data), "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    scf = (out / "scf_timing_cpu.md").read_text()
    train = (out / "train_timing_cpu.md").read_text()
    assert "PySCF stand-in" in scf
    # one row each, every part timed (no part skipped by the time budget)
    assert scf.strip().splitlines()[-1].startswith("| 1 | 7 |")
    row = train.strip().splitlines()[-1]
    assert row.startswith("| 1 | 7 | 2 | 2 |") and "skipped" not in row
    assert len(row.split("|")) == len(train.strip().splitlines()[-3].split("|"))

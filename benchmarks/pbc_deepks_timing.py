"""Cost of DeePKS-ES and of labels in a periodic box at Γ: the shipped water model's DeePKS-SCF
against the plain PBE SCF of the same box (same process, same integrals), and PySCF's Γ-point
PBE and HSE06 labels (``jaxks label``'s calls) of the same cell.

Case ``box2`` of ``pbc_timing.py``: a water dimer in a 6.2 Å cube; the model's settings
(PBE/def2-SVP, GDF def2-universal-jkfit, BeckeGrids level 2), cell precision 1e-10.

jaxks: integrals once; projector overlaps (lattice sums, PySCF pbc); PBE SCF compile + first
run + steady run; DeePKS-SCF compile + first run + steady run. PySCF: ``pyscf_cell_ks + run_pyscf`` for
pbe then hse06 on the same cell and grids (exxdiv ewald), conv_tol 1e-10 as ``jaxks label``.

    OMP_NUM_THREADS=1 python benchmarks/pbc_deepks_timing.py \
        --out benchmarks/results/pbc_timing_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, peak_rss_gb, report  # noqa: E402
from jaxks.integrals import integrals_from_cell  # noqa: E402
from jaxks.data.labels import LabelSettings, run_pyscf  # noqa: E402
from jaxks.integrals.cell import make_cell, make_cell_grids, pyscf_cell_ks  # noqa: E402
from jaxks.integrals.projectors import projector_overlaps  # noqa: E402
from jaxks.models import load_model, model_settings  # noqa: E402
from jaxks.scf import SCFOptions, run_scf  # noqa: E402
from pbc_timing import box_system  # noqa: E402


def bench(case: str, parts) -> dict:
    from jaxks.deepks import deepks_params

    model = load_model("water")
    st = model_settings(model)
    system = box_system(case, st["basis"], st["auxbasis"], st["grid_level"])
    cell = make_cell(system)
    cell.max_memory = 20000
    row = dict(case=case, n_water=system.n_atoms // 3, nao=cell.nao_nr())
    t0 = time.perf_counter()
    grids = make_cell_grids(cell, st["grid_level"])
    if "scf" in parts:
        ints = integrals_from_cell(cell, st["auxbasis"], st["grid_level"], grids=grids)
        jax.block_until_ready(ints.cderi)
        row["integrals_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        theta = deepks_params(model.params, projector_overlaps(cell, model.basis),
                              system.symbols, model.config.elements)
        jax.block_until_ready(theta)
        row["projectors_s"] = time.perf_counter() - t1
        opts = SCFOptions(e_tol=1e-9, comm_tol=1e-5)
        for name, kw in (("pbe", {}), ("deepks", dict(term=model.term, params=theta))):
            res, t = run_scf(ints, "pbe", options=opts, return_timings=True, **kw)
            t2 = time.perf_counter()
            res2 = run_scf(ints, "pbe", options=opts, **kw)
            jax.block_until_ready(res2.energy)
            row.update({f"{name}_compile_s": t["compile"], f"{name}_first_s": t["scf"],
                        f"{name}_steady_s": time.perf_counter() - t2,
                        f"{name}_cycles": int(res2.cycles),
                        f"{name}_converged": bool(res2.converged),
                        f"{name}_E_Eh": float(res2.energy)})
            if name == "deepks":
                row["E_delta_Eh"] = float(res2.parts.term)
            print(row, flush=True)
    if "label" in parts:
        for xc in ("pbe", "hse06"):
            t3 = time.perf_counter()
            mf = run_pyscf(pyscf_cell_ks(cell, xc, st["auxbasis"], "ewald"), LabelSettings(),
                           grids)
            row.update({f"pyscf_{xc}_s": time.perf_counter() - t3,
                        f"pyscf_{xc}_cycles": int(getattr(mf, "cycles", -1)),
                        f"pyscf_{xc}_converged": bool(mf.converged),
                        f"pyscf_{xc}_E_Eh": float(mf.e_tot)})
            print(row, flush=True)
    row["peak_rss_gb"] = peak_rss_gb()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["box2"])
    ap.add_argument("--parts", nargs="+", default=["scf", "label"], choices=["scf", "label"])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = [bench(c, a.parts) for c in a.cases]
    header = ("\n#### DeePKS-SCF (shipped water model) vs PBE SCF, and PySCF Γ-point labels, "
              "PBE/def2-svp, aux def2-universal-jkfit, BeckeGrids level 2\n"
              f"Machine: {machine()}. Times in seconds, one process (`pbc_deepks_timing.py`). "
              "`projectors_s`: lattice-summed projector overlaps + the model's parameters; "
              "`*_compile_s`/`*_first_s`: first `run_scf` (compile, then the run); "
              "`*_steady_s`: a second run; `pyscf_pbe_s`/`pyscf_hse06_s`: `pyscf_cell_ks + run_pyscf` "
              "(one label SCF each, conv_tol 1e-10, exxdiv ewald, GDF built inside).\n\n")
    report(header, rows, a.out)


if __name__ == "__main__":
    main()

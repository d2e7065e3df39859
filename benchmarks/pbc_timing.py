"""Wall time of a Γ-point PBE SCF of periodic water boxes, jaxks vs PySCF pbc, same settings.

Cases: ``box2`` two waters (a dimer from the cluster sampler) in a 6.2 Å cube (the issue's
PySCF measurement, low density); ``box8`` eight waters at liquid density (6.21 Å cube, from
``jaxks.data.sampling.sample_water_box``). All-electron PBE/def2-SVP, GDF with
def2-universal-jkfit, Becke grids for cells (``BeckeGrids``) at the grid level, one ``Cell``
(``jaxks.integrals.cell.make_cell``, precision ``CELL_PRECISION``) for both codes.

jaxks: integrals (PySCF pbc on the host: S, T, GDF nuclear attraction, the GDF tensor, grids,
AO images and screen, MINAO guess), compile, first run of the compiled SCF, steady state (a
second run). PySCF: one ``pbc.dft.RKS(cell).density_fit(auxbasis)`` ``kernel()`` with its own
grids and GDF build (it builds the same GDF tensor again), both converged to 1e-9 Eh.

    OMP_NUM_THREADS=1 python benchmarks/pbc_timing.py --cases box2 box8 \
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
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, peak_rss_gb, report  # noqa: E402
from jaxks.integrals import integrals_from_cell  # noqa: E402
from jaxks.integrals.cell import CELL_PRECISION, make_cell, make_cell_grids  # noqa: E402
from jaxks.scf import SCFOptions, run_scf  # noqa: E402
from jaxks.system import System  # noqa: E402


def box_system(case: str, basis: str, aux: str, level: int) -> System:
    """The periodic water box of ``case`` (Angstrom inputs, Bohr inside)."""
    from jaxks.data.sampling import sample_water, sample_water_box

    kw = dict(basis=basis, auxbasis=aux, grid_level=level)
    if case == "box2":
        side = 6.2
        (dimer,) = sample_water(2, 1, seed=0, distort=0.0)
        x = dimer.coords - dimer.coords.mean(0) + side / 2
        return System.from_symbols(dimer.symbols, x, lattice_angstrom=[side] * 3, **kw)
    if case == "box8":
        (frame,) = sample_water_box(8, 1, seed=0)
        return frame.to_system(**kw)
    raise SystemExit(f"unknown case {case!r} (box2, box8)")


def bench(case: str, basis: str, aux: str, level: int, xc: str = "pbe") -> dict:
    from pyscf.pbc import dft

    system = box_system(case, basis, aux, level)
    cell = make_cell(system)
    cell.max_memory = 20000
    t0 = time.perf_counter()
    grids = make_cell_grids(cell, level)
    ints = integrals_from_cell(cell, aux, level, grids=grids)
    jax.block_until_ready(ints.cderi)
    t_int = time.perf_counter() - t0
    opts = SCFOptions(e_tol=1e-9, comm_tol=1e-5)
    res, t = run_scf(ints, xc, options=opts, return_timings=True)  # compiles
    t1 = time.perf_counter()
    res2 = run_scf(ints, xc, options=opts)                        # steady state
    jax.block_until_ready(res2.energy)
    t_run = time.perf_counter() - t1
    n_img = int(ints.basis.centers.shape[0])
    row = dict(case=case, n_water=system.n_atoms // 3,
               cell_A=f"{system.lattice[0, 0] * 0.529177210903:.3f}", nao=ints.nao,
               naux=ints.naux, ngrid=ints.n_grid, image_atoms=n_img,
               jaxks_integrals_s=t_int, jaxks_compile_s=t["compile"], jaxks_first_s=t["scf"],
               jaxks_scf_s=t_run, jaxks_cycles=int(res2.cycles),
               jaxks_converged=bool(res2.converged))
    print(row, flush=True)
    t2 = time.perf_counter()
    mf = dft.RKS(cell).density_fit(auxbasis=aux)
    mf.xc = xc
    mf.grids = dft.gen_grid.BeckeGrids(cell)
    mf.grids.level = level
    mf.conv_tol = 1e-9
    mf.max_memory = 20000
    e = mf.kernel()
    t_py = time.perf_counter() - t2
    row.update(pyscf_s=t_py, pyscf_cycles=int(getattr(mf, "cycles", -1)),
               pyscf_converged=bool(mf.converged),
               jaxks_total_s=t_int + t["compile"] + t["scf"],
               ratio_total=(t_int + t["compile"] + t["scf"]) / t_py,
               ratio_steady=(t_int + t_run) / t_py,
               dE_Eh=abs(float(res2.energy) - e),
               dmo_Eh=float(np.abs(np.asarray(res2.mo_energy) - mf.mo_energy).max()),
               peak_rss_gb=peak_rss_gb())
    print(row, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["box2", "box8"])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--aux", default="def2-universal-jkfit")
    ap.add_argument("--grid-level", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = [bench(c, a.basis, a.aux, a.grid_level) for c in a.cases]
    header = (f"\n#### Γ-point PBE/{a.basis}, aux {a.aux}, BeckeGrids level {a.grid_level}, "
              f"cell precision {CELL_PRECISION:g}\nMachine: {machine()}. Times in seconds. "
              "`jaxks_total_s` = integrals + compile + first run (a first `jaxks scf`); "
              "`ratio_total` = jaxks_total_s / pyscf_s; `ratio_steady` = (integrals + "
              "steady-state SCF) / pyscf_s (a compiled loop reused, as for a second frame of "
              "the same shape); `dE_Eh`, `dmo_Eh`: |jaxks − PySCF| energy, largest orbital "
              "energy.\n\n")
    report(header, rows, a.out)


if __name__ == "__main__":
    main()

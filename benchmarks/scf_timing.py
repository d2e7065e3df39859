"""Wall time of a PBE SCF, jaxks vs PySCF (same basis, auxiliary basis, grid), for (H2O)_n.

jaxks time is split into integral generation (PySCF, host), compilation (XLA) and the
steady-state SCF (a second run of the compiled loop from the same guess). PySCF's time is
one `mf.kernel()` with density fitting, its integrals included (reported separately where
PySCF exposes them: the DF tensor build).

    python benchmarks/scf_timing.py --sizes 1 2 4 8 16 32 --out benchmarks/results/scf_timing_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the jaxks of this checkout, not an installed copy (a script's directory, not the working
# directory, leads sys.path)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

import jaxks  # noqa: E402, F401
from common import exponents_line, machine, peak_rss_gb, report, water_cluster  # noqa: E402
from jaxks.integrals import DF_PAIR_CUTOFF, integrals_from_pyscf, make_grids  # noqa: E402
from jaxks.pairs import n_pairs  # noqa: E402
from jaxks.scf import SCFOptions, run_scf  # noqa: E402
from jaxks.system import System  # noqa: E402


def bench(n: int, basis: str, aux: str, level: int, xc: str, pyscf_max: int,
          repeat_max: int = 16, pair_cutoff: float | None = DF_PAIR_CUTOFF):
    system = System.from_symbols(*water_cluster(n), basis=basis, auxbasis=aux, grid_level=level)
    mol = system.to_pyscf()
    mol.max_memory = 20000
    t0 = time.perf_counter()
    grids = make_grids(mol, level)
    ints = integrals_from_pyscf(mol, aux, level, grids=grids, pair_cutoff=pair_cutoff)
    jax.block_until_ready(ints.cderi)
    t_int = time.perf_counter() - t0
    opts = SCFOptions(e_tol=1e-9, comm_tol=1e-5)
    res, t = run_scf(ints, xc, options=opts, return_timings=True)  # compiles
    if n <= repeat_max:
        t1 = time.perf_counter()
        res2 = run_scf(ints, xc, options=opts)                      # steady state
        jax.block_until_ready(res2.energy)
        t_run = time.perf_counter() - t1
    else:
        # Too long to run twice: the first run's SCF time is already compile-free (AOT).
        res2, t_run = res, t["scf"]
    if not bool(res2.converged):
        print(f"n={n}: SCF NOT CONVERGED after {int(res2.cycles)} cycles", flush=True)
    npair = ints.nao * (ints.nao + 1) // 2
    row = dict(n=n, nao=ints.nao, naux=ints.naux, ngrid=ints.n_grid,
               pair_cutoff="none" if pair_cutoff is None else f"{pair_cutoff:.0e}",
               pairs_kept=n_pairs(ints.nao, ints.pairs) / npair, cderi_gb=ints.cderi.nbytes / 1e9,
               jaxks_integrals_s=t_int, jaxks_compile_s=t["compile"],
               jaxks_first_s=t["scf"], jaxks_scf_s=t_run,
               jaxks_cycles=int(res2.cycles), jaxks_s_per_cycle=t_run / max(int(res2.cycles), 1),
               jaxks_converged=bool(res2.converged),
               peak_rss_gb=peak_rss_gb(), pyscf_s=float("nan"), pyscf_cycles="-",
               pyscf_s_per_cycle=float("nan"), ratio=float("nan"), dE_Eh=float("nan"))
    if n <= pyscf_max:
        from pyscf import dft

        mf = dft.RKS(mol, xc=xc).density_fit(auxbasis=aux)
        mf.grids = grids
        mf.small_rho_cutoff = 0
        mf.conv_tol = 1e-9
        t2 = time.perf_counter()
        e = mf.kernel()
        t_pyscf = time.perf_counter() - t2
        row.update(pyscf_s=t_pyscf, pyscf_cycles=mf.cycles,
                   pyscf_s_per_cycle=t_pyscf / max(mf.cycles, 1), ratio=t_run / t_pyscf,
                   dE_Eh=abs(e - float(res2.energy)))
    del ints
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--auxbasis", default="def2-universal-jkfit")
    ap.add_argument("--grid-level", type=int, default=3)
    ap.add_argument("--xc", default="pbe")
    ap.add_argument("--pyscf-max", type=int, default=32, help="largest n also run with PySCF")
    ap.add_argument("--repeat-max", type=int, default=16,
                    help="largest n whose SCF is run a second time for the steady-state time")
    ap.add_argument("--no-pair-screening", action="store_true",
                    help="keep every AO pair in the DF tensor (pair_cutoff=None)")
    ap.add_argument("--out", help="append the markdown table to this file")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args.basis, args.auxbasis, args.grid_level, args.xc, args.pyscf_max,
                          args.repeat_max, None if args.no_pair_screening else DF_PAIR_CUTOFF))
        print(rows[-1], flush=True)
    header = (f"\n## {args.xc.upper()}/{args.basis}, aux {args.auxbasis}, grid level "
              f"{args.grid_level}\nMachine: {machine()}. Times in seconds; `jaxks_first_s`: first "
              f"run of the freshly compiled loop; `jaxks_scf_s`: second run (steady state); "
              f"`ratio` = jaxks_scf_s / pyscf_s; `dE_Eh` = |E_jaxks − E_PySCF|; "
              f"`pairs_kept`: fraction of AO pairs the DF tensor keeps at `pair_cutoff`, "
              f"`cderi_gb` its size.\n\n")
    report(header, rows, args.out,
           exponents_line(rows, ["jaxks_scf_s", "jaxks_s_per_cycle", "pyscf_s",
                                 "pyscf_s_per_cycle"]))


if __name__ == "__main__":
    main()

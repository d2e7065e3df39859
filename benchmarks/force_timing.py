"""Cost of analytic forces relative to the SCF, jaxks vs PySCF (same basis, aux basis, grid), (H2O)_n.

For each cluster size: jaxks derivative-integral time (PySCF, host, once per geometry), force
compile time (XLA, first call) and steady-state force time (second call), next to the jaxks SCF
time (steady state); PySCF's `nuc_grad_method().kernel()` time next to its SCF time. The ratio
force/SCF is the number to look at; `maxdF` = max |F_jaxks − F_PySCF| (Hartree/Bohr).

    python benchmarks/force_timing.py --sizes 1 2 4 8 16 --out benchmarks/results/force_timing_cpu.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the jaxks of this checkout, not an installed copy (a script's directory, not the working
# directory, leads sys.path)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import exponents_line, machine, peak_rss_gb, report, water_cluster  # noqa: E402
from jaxks.forces import force_integrals, forces  # noqa: E402
from jaxks.integrals import integrals_from_pyscf, make_grids  # noqa: E402
from jaxks.scf import SCFOptions, run_scf  # noqa: E402
from jaxks.system import System  # noqa: E402


def bench(n, basis, aux, level, xc, grid_response, pyscf_max, repeat_max=16):
    load0 = os.getloadavg()[0]
    system = System.from_symbols(*water_cluster(n), basis=basis, auxbasis=aux, grid_level=level)
    mol = system.to_pyscf()
    mol.max_memory = 16000
    grids = make_grids(mol, level)
    ints = integrals_from_pyscf(mol, aux, level, grids=grids)
    opts = SCFOptions(e_tol=1e-10, comm_tol=1e-6)
    if n <= repeat_max:
        run_scf(ints, xc, options=opts)  # compile
        t0 = time.perf_counter()
        res = run_scf(ints, xc, options=opts)
        jax.block_until_ready(res.energy)
        t_scf = time.perf_counter() - t0
    else:
        # too long to run twice: the ahead-of-time compiled loop's first run is compile-free
        res, t = run_scf(ints, xc, options=opts, return_timings=True)
        t_scf = t["scf"]

    # derivative integrals timed at their second call (the first pays one-off imports and
    # compilations, as the SCF's and the forces' first calls do)
    t_fint_first = float("nan")
    if n <= repeat_max:
        t0 = time.perf_counter()
        fints = force_integrals(mol, aux, grids=grids)
        jax.block_until_ready(fints.fit)
        t_fint_first = time.perf_counter() - t0
        del fints
    t0 = time.perf_counter()
    fints = force_integrals(mol, aux, grids=grids)
    jax.block_until_ready(fints.fit)
    t_fint = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = jax.block_until_ready(forces(res, ints, fints, xc, grid_response=grid_response))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = jax.block_until_ready(forces(res, ints, fints, xc, grid_response=grid_response))
    t_force = time.perf_counter() - t0
    # memory held by the force evaluation besides the SCF's: the derivative integrals (stored
    # 3-centre block included) and, when streamed, one block of them on the host
    fints_gb = sum(x.nbytes for x in jax.tree_util.tree_leaves(fints)) / 1e9
    block_gb = 8 * 3 * fints.aux_index.shape[1] * ints.nao ** 2 / 1e9 if fints.streamed else 0.0
    row = dict(n=n, nao=ints.nao, naux=ints.naux, ngrid=ints.n_grid,
               jaxks_scf_s=t_scf, jaxks_dint_first_s=t_fint_first, jaxks_dint_s=t_fint, jaxks_force_compile_s=t_first - t_force,
               jaxks_force_s=t_force, ip1_streamed=fints.streamed,
               jaxks_ratio=(t_force + t_fint) / t_scf,
               pyscf_scf_s=float("nan"), pyscf_force_s=float("nan"), pyscf_ratio=float("nan"),
               maxdF=float("nan"), fints_gb=fints_gb, block_gb=block_gb,
               peak_rss_gb=peak_rss_gb(), load=0.0)
    del fints
    if n <= pyscf_max:
        from pyscf import dft

        mf = dft.RKS(mol, xc=xc).density_fit(auxbasis=aux)
        mf.grids = grids
        mf.small_rho_cutoff = 0
        mf.conv_tol = 1e-10
        mf.verbose = 0
        t0 = time.perf_counter()
        mf.kernel()
        t_pscf = time.perf_counter() - t0
        g = mf.nuc_grad_method()
        g.grid_response = grid_response
        g.verbose = 0
        t0 = time.perf_counter()
        ref = -g.kernel()
        t_pforce = time.perf_counter() - t0
        row.update(pyscf_scf_s=t_pscf, pyscf_force_s=t_pforce, pyscf_ratio=t_pforce / t_pscf,
                   maxdF=float(np.max(np.abs(np.asarray(f) - ref))))
    row["load"] = 0.5 * (load0 + os.getloadavg()[0])
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--auxbasis", default="def2-universal-jkfit")
    ap.add_argument("--grid-level", type=int, default=3)
    ap.add_argument("--xc", default="pbe")
    ap.add_argument("--grid-response", action="store_true")
    ap.add_argument("--pyscf-max", type=int, default=16, help="largest n also run with PySCF")
    ap.add_argument("--repeat-max", type=int, default=16,
                    help="largest n whose SCF and derivative integrals run twice (above it the "
                    "SCF time is the ahead-of-time compiled loop's first run)")
    ap.add_argument("--out", help="append the markdown table to this file")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args.basis, args.auxbasis, args.grid_level, args.xc,
                          args.grid_response, args.pyscf_max, args.repeat_max))
        print(rows[-1], flush=True)
    header = (f"\n## Forces, {args.xc.upper()}/{args.basis}, aux {args.auxbasis}, grid level "
              f"{args.grid_level}, grid response {'on' if args.grid_response else 'off'}\n"
              f"Machine: {machine()}. Times in seconds. `jaxks_dint_s`: derivative integrals "
              f"(PySCF, once per geometry; second call, `jaxks_dint_first_s` the first); `jaxks_ratio` = (dint + force) / SCF; `pyscf_ratio` = "
              f"gradient / SCF; `maxdF` = max |F_jaxks − F_PySCF| (Hartree/Bohr); "
              f"`ip1_streamed`: the 3-centre derivatives were computed by PySCF block by block "
              f"during the force evaluation (their time is in `jaxks_force_s`), not stored; "
              f"`fints_gb`: the derivative integrals held (GB), `block_gb`: the streamed block's "
              f"host buffer; `peak_rss_gb`: the process's peak resident memory after the jaxks "
              f"forces (before PySCF's run); `load`: the machine's 1-minute load average (mean of the row's "
              f"start and end; 2 cores).\n\n")
    report(header, rows, args.out,
           exponents_line(rows, ["jaxks_scf_s", "jaxks_force_s", "pyscf_scf_s",
                                 "pyscf_force_s"]))


if __name__ == "__main__":
    main()

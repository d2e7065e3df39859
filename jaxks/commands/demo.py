"""``jaxks demo``: the built-in demonstration (no downloads, a few minutes on a laptop CPU)."""

from __future__ import annotations

import time

WATER_XYZ = """3
water monomer, Angstrom
O   0.000000   0.000000   0.117790
H   0.000000   0.755453  -0.471161
H   0.000000  -0.755453  -0.471161
"""


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the built-in demonstration",
                       description="PBE/def2-SVP SCF of a water molecule, compared with PySCF.")
    p.set_defaults(func=run)


def run(args) -> int:
    from pyscf import dft

    from jaxks.commands.scf import print_summary, summarize
    from jaxks.integrals import compute_integrals, make_grids
    from jaxks.scf import run_scf
    from jaxks.system import System

    system = System.from_xyz_string(WATER_XYZ, grid_level=2)
    t0 = time.perf_counter()
    ints = compute_integrals(system)
    t_int = time.perf_counter() - t0
    result, t = run_scf(ints, "pbe", return_timings=True)
    print_summary(summarize(system, result, dict(integrals=t_int, **t)))
    mol = system.to_pyscf()
    mf = dft.RKS(mol, xc="pbe").density_fit(auxbasis=system.auxbasis)
    mf.grids = make_grids(mol, system.grid_level)
    mf.small_rho_cutoff = 0
    mf.conv_tol = 1e-11
    e_ref = mf.kernel()
    print(f"PySCF reference   {e_ref:20.10f} Eh   |difference| = {abs(e_ref - float(result.energy)):.1e} Eh")
    return 0 if bool(result.converged) else 3

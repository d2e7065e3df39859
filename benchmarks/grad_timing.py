"""Cost of one value-and-gradient through the SCF relative to one forward SCF, for (H2O)_n.

The gradient is d(loss)/dθ for a loss on the self-consistent energy, HOMO/LUMO energies and
occupied projector, with θ a homogeneous electric field (jaxks.hooks.ExternalPotential). The
backward pass is one adjoint GMRES solve plus one differentiable Fock build/diagonalisation.
Steady-state times are the best of `--repeat` runs of the compiled functions.

    python benchmarks/grad_timing.py --sizes 1 2 4 8 16 --out benchmarks/results/grad_timing_cpu.md
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
import jax.numpy as jnp  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, peak_rss_gb, report, water_cluster  # noqa: E402
from jaxks.hooks import ExternalPotential, electric_field_params  # noqa: E402
from jaxks.implicit import solve  # noqa: E402
from jaxks.integrals import compute_integrals  # noqa: E402
from jaxks.scf import SCFOptions  # noqa: E402
from jaxks.system import System  # noqa: E402

TERM = ExternalPotential()


def best_time(fn, *args, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def bench(n, basis, level, repeat):
    system = System.from_symbols(*water_cluster(n), basis=basis, grid_level=level)
    ints = compute_integrals(system)
    params = electric_field_params(system.to_pyscf(), [1e-3, 0.0, 0.0])
    opts = SCFOptions(e_tol=1e-10, comm_tol=1e-7)

    # The integrals are an argument, not a closure: jit embeds closed-over arrays in the
    # program as constants, copied several times (peak at n = 8: 2.2 GB closed over, 1.2 GB
    # as an argument; at n = 16 the closure cost ~9 GB).
    def loss(theta, ints):
        r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=opts)
        c = r.mo_coeff[:, :r.n_occ]
        return r.energy + r.homo ** 2 + r.lumo ** 2 + jnp.sum((c @ c.T) ** 2)

    theta = params["theta"]
    # Ahead-of-time compilation, so compile time is measured alone and no run is spent on it.
    t0 = time.perf_counter()
    forward = jax.jit(loss).lower(theta, ints).compile()
    c_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    vg = jax.jit(jax.value_and_grad(loss)).lower(theta, ints).compile()
    c_vg = time.perf_counter() - t0
    t_fwd = best_time(forward, theta, ints, repeat=repeat)
    t_vg = best_time(vg, theta, ints, repeat=repeat)
    return dict(n=n, nao=ints.nao, forward_compile_s=c_fwd, value_grad_compile_s=c_vg,
                forward_s=t_fwd, value_grad_s=t_vg, ratio=t_vg / t_fwd, peak_rss_gb=peak_rss_gb())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--grid-level", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args.basis, args.grid_level, args.repeat))
        print(rows[-1], flush=True)
    header = (f"\n## value-and-gradient vs forward SCF, PBE/{args.basis}, grid level "
              f"{args.grid_level}\nMachine: {machine()}. Times in seconds (best of "
              f"{args.repeat}); `ratio` = value_grad_s / forward_s.\n\n")
    report(header, rows, args.out)


if __name__ == "__main__":
    main()

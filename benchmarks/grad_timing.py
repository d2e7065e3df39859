"""Cost of one value-and-gradient through the SCF relative to one forward SCF, for (H2O)_n.

The gradient is d(loss)/dθ for a loss on the self-consistent energy, HOMO/LUMO energies and
occupied projector, with θ a homogeneous electric field (jaxks.hooks.ExternalPotential). The
backward pass is one adjoint GMRES solve plus one differentiable Fock build/diagonalisation;
the number of products with the adjoint operator is read from the cotangent of ``probe``
(jaxks.implicit.solve). Steady-state times are the best of `--repeat` runs of the compiled
functions, as wall time and as CPU time of this process (all its threads): on a shared
machine the CPU-time ratio is the steadier measure of the work.

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
from jaxks.implicit import AdjointOptions, solve  # noqa: E402
from jaxks.integrals import compute_integrals  # noqa: E402
from jaxks.scf import SCFOptions  # noqa: E402
from jaxks.system import System  # noqa: E402

TERM = ExternalPotential()


def best_time(fn, *args, repeat=3):
    """(best wall time, best process CPU time) in seconds over ``repeat`` runs, and the output."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn(*args))
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


def bench(n, basis, level, repeat, adjoint):
    system = System.from_symbols(*water_cluster(n), basis=basis, grid_level=level)
    ints = compute_integrals(system)
    params = electric_field_params(system.to_pyscf(), [1e-3, 0.0, 0.0])
    opts = SCFOptions(e_tol=1e-10, comm_tol=1e-7)

    # The integrals are an argument, not a closure: jit embeds closed-over arrays in the
    # program as constants, copied several times (peak at n = 8: 2.2 GB closed over, 1.2 GB
    # as an argument; at n = 16 the closure cost ~9 GB).
    def loss(theta, probe, ints):
        r = solve(ints, "pbe", term=TERM, params=dict(params, theta=theta), options=opts,
                  adjoint=adjoint, probe=probe)
        c = r.mo_coeff[:, :r.n_occ]
        return r.energy + r.homo ** 2 + r.lumo ** 2 + jnp.sum((c @ c.T) ** 2), r.cycles

    theta, probe = params["theta"], jnp.zeros(())
    # Ahead-of-time compilation, so compile time is measured alone and no run is spent on it.
    t0 = time.perf_counter()
    forward = jax.jit(loss).lower(theta, probe, ints).compile()
    c_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    vg = vg.lower(theta, probe, ints).compile()
    c_vg = time.perf_counter() - t0
    t_fwd, cpu_fwd, (_, cycles) = best_time(forward, theta, probe, ints, repeat=repeat)
    t_vg, cpu_vg, (_, (_, n_matvec)) = best_time(vg, theta, probe, ints, repeat=repeat)
    return dict(n=n, nao=ints.nao, forward_compile_s=c_fwd, value_grad_compile_s=c_vg,
                forward_s=t_fwd, value_grad_s=t_vg, ratio=t_vg / t_fwd, forward_cpu_s=cpu_fwd,
                value_grad_cpu_s=cpu_vg, ratio_cpu=cpu_vg / cpu_fwd, scf_cycles=int(cycles),
                adjoint_matvecs=int(n_matvec), peak_rss_gb=peak_rss_gb())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--grid-level", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--adjoint-tol", type=float, default=AdjointOptions().tol,
                    help="relative residual tolerance of the adjoint GMRES")
    ap.add_argument("--precondition", action="store_true",
                    help="use the Coulomb/orbital-energy diagonal preconditioner")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    adjoint = AdjointOptions(tol=args.adjoint_tol, precondition=args.precondition, warn=False)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args.basis, args.grid_level, args.repeat, adjoint))
        print(rows[-1], flush=True)
    header = (f"\n## value-and-gradient vs forward SCF, PBE/{args.basis}, grid level "
              f"{args.grid_level}, adjoint tol {args.adjoint_tol:g}, "
              f"{'preconditioned' if args.precondition else 'no preconditioner'}\n"
              f"Machine: {machine()}. Times in seconds (best of {args.repeat}); `ratio` = "
              f"value_grad_s / forward_s, `ratio_cpu` the same in process CPU time; "
              f"`adjoint_matvecs`: products with (1 − ∂Φ/∂Γ)ᵀ in the adjoint solve.\n\n")
    report(header, rows, args.out)


if __name__ == "__main__":
    main()

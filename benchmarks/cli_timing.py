"""Wall time of a whole `jaxks scf water.xyz` process (start to exit), first and second invocation
(the second loads the compiled SCF loop from the persistent compilation cache), against the PySCF
`python -c` equivalent (same basis, auxiliary basis, grid level, functional).

    python benchmarks/cli_timing.py --repeat 3 --out benchmarks/results/cli_timing_cpu.md

``--profile`` instead lists every XLA program a first ``jaxks scf water.xyz`` compiles (empty
cache; one process per functional, PBE and HSE06 by default), with the seconds JAX spends tracing,
lowering and compiling each (``jax.monitoring`` duration events), and then attributes the SCF
program's compile time to its parts: each part (the functional on one grid block, the AO values
of one block, the XC potential's grid loop, the exact exchange, the whole Fock build, the whole
SCF program) is compiled on its own in the same process, and its compile wall and CPU seconds and
its count of XLA:CPU fused kernels are reported. The CPU seconds are the process's user + system
time during the compilation: on a shared machine they move less with the load than the wall
seconds, though still by ±20 % at a load of
2-3 jobs per core; the kernel counts do not move at all, and compile time is about proportional
to them (benchmarks/results/cli_timing_cpu.md).

    python benchmarks/cli_timing.py --profile --out benchmarks/results/cli_timing_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the jaxks of this checkout, not an installed copy (a script's directory, not the working
# directory, leads sys.path)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import machine, markdown_table, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WATER = """3
water, Angstrom
O 0.000000 0.000000 0.117790
H 0.000000 0.755453 -0.471161
H 0.000000 -0.755453 -0.471161
"""
PYSCF = ("from pyscf import gto, dft; mol = gto.M(atom='{xyz}', basis='def2-svp'); "
         "mf = dft.RKS(mol, xc='{xc}').density_fit(auxbasis='def2-universal-jkfit'); "
         "mf.grids.level = {level}; mf.kernel()")


def wall(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


#: jax.monitoring duration events of one compilation, in the order JAX records them.
COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                  "/jax/core/compile/backend_compile_duration": "compile_s"}
#: Why each program of a first `jaxks scf` exists (by the jitted function's name).
PROGRAM_ROLES = {
    "_copy": "jaxks.transfer.to_device: host arrays onto the device in one copy per tree "
             "(basis data, AO screen, integrals)",
    "_scf_run": "jaxks.scf._scf_run: the whole SCF (guess pass, while loop of DIIS + Fock "
                "builds, final diagonalisation) as one program",
}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread, XLA's compiler too)."""
    t = os.times()
    return t.user + t.system


def _kernels(compiled) -> int:
    """Fused kernels of a compiled XLA:CPU program (each is code-generated on its own)."""
    return compiled.as_text().count(" fusion(")


def profile_child(xc: str, grid_level: int, xyz: str) -> dict:
    """In a fresh process with an empty cache directory: run `jaxks scf` as the command does and
    record every compilation; then compile the SCF program's parts one by one (see the module
    docstring). Returns the records (JSON-ready)."""
    from jax import monitoring

    programs: list[dict] = []
    listening = [True]  # only the command's own compilations, not the parts' below

    def listen(event, duration, **kw):
        key = COMPILE_EVENTS.get(event)
        if key is None or not listening[0]:
            return
        name = kw.get("fun_name", "?")
        name = name[4:-1] if name.startswith("jit(") else name
        if key == "trace_s" or not programs or programs[-1]["program"] != name \
                or key in programs[-1]:
            programs.append(dict(program=name))
        programs[-1][key] = duration

    monitoring.register_event_duration_secs_listener(listen)
    import io
    from contextlib import redirect_stdout

    from jaxks.cli import main as cli_main
    from jaxks.compile_cache import enable_executable_cache

    enable_executable_cache()  # as the `jaxks scf` entry point does
    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()) as out:
        code = cli_main(["scf", xyz, "--xc", xc, "--basis", "def2-svp", "--grid-level",
                         str(grid_level), "--json"])
    run_s = time.perf_counter() - t0
    listening[0] = False
    summary = json.loads(out.getvalue())
    from jaxks import scf

    # XLA:CPU fused kernels of the SCF program the command compiled (held in memory by run_scf)
    kernels = [_kernels(fn) for fn in scf._COMPILED.values()]
    for p in programs:
        if p["program"] == "_scf_run" and kernels:
            p["kernels"] = kernels[-1]
        p["role"] = PROGRAM_ROLES.get(p["program"], "")
    parts = profile_parts(xc, grid_level, xyz)
    return dict(xc=xc, exit=code, run_s=run_s, timings=summary["timings_s"],
                energy_eh=summary["energy_eh"], programs=programs, parts=parts)


def profile_parts(xc_name: str, grid_level: int, xyz: str) -> list[dict]:
    """Compile wall/CPU seconds and XLA:CPU kernel counts of the SCF program and its parts."""
    import jax
    import numpy as np

    from jaxks import scf
    from jaxks.basis import eval_ao_screened
    from jaxks.exchange import exchange_energy_fock, needs_exchange, sr_omega
    from jaxks.integrals import compute_integrals
    from jaxks.numint import xc_energy_potential
    from jaxks.system import System
    from jaxks.xc import eval_xc, get_xc

    # the parts must compile, not come from the persistent cache the command just filled
    jax.config.update("jax_enable_compilation_cache", False)
    xc = get_xc(xc_name)
    system = System.from_xyz(xyz, basis="def2-svp", auxbasis="def2-universal-jkfit",
                             grid_level=grid_level)
    ints = compute_integrals(system, omega=sr_omega(xc))
    gamma = ints.guess
    bs = ints.block_size
    # one block's inputs, sliced on the host (eager slicing would compile programs of its own)
    row = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], ints.screen.bins[0])
    rho = np.linspace(1e-3, 1.0, bs)
    coords = np.asarray(ints.grid_coords)[:bs]
    parts = [
        ("functional on one block (e, v_rho, v_sigma)",
         lambda r: eval_xc(xc, r, r * r), (rho,)),
        ("AO values of one block (eval_ao_screened, deriv 1)",
         lambda c, r: eval_ao_screened(ints.basis, c, r, deriv=1), (coords, row)),
        ("XC energy and potential (grid loop)",
         lambda g, i: xc_energy_potential(g, i, xc), (gamma, ints)),
    ]
    if needs_exchange(xc):
        parts.append(("exact exchange (energy and Fock term)",
                      lambda g, i: exchange_energy_fock(g, i, xc), (gamma, ints)))
    parts += [
        ("Fock build (h + J + V_xc [+ K], energy parts)",
         lambda g, i: scf.fock_matrix(g, i, xc, None, None), (gamma, ints)),
        ("whole SCF program (_scf_run)",
         lambda i, g: scf._scf_run(i, None, g, xc, None, scf.SCFOptions()), (ints, gamma)),
    ]
    rows = []
    for name, fn, args in parts:
        t0 = time.perf_counter()
        lowered = jax.jit(fn).lower(*args)
        t1, c1 = time.perf_counter(), _cpu_seconds()
        compiled = lowered.compile()
        t2, c2 = time.perf_counter(), _cpu_seconds()
        text = compiled.as_text()
        rows.append(dict(part=name, trace_lower_s=t1 - t0, compile_s=t2 - t1,
                         compile_cpu_s=c2 - c1, kernels=_kernels(compiled),
                         library_calls=text.count(" custom-call(") + text.count(" dot(")))
    return rows


def profile(args) -> None:
    """Run :func:`profile_child` in a fresh process per functional; print/append the tables."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        xyz = Path(tmp) / "water.xyz"
        xyz.write_text(WATER)
        for xc in args.xc:
            env = dict(os.environ, JAXKS_CACHE_DIR=str(Path(tmp) / f"cache-{xc}"),
                       OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                  "--profile-child", xc, "--grid-level", str(args.grid_level),
                                  "--xyz", str(xyz)], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            res["load"] = (load, os.getloadavg()[0])
            results.append(res)
    text = ""
    for r in results:
        t = r["timings"]
        text += (f"\n#### First `jaxks scf water.xyz --xc {r['xc']}` (empty cache): the programs "
                 f"it compiles\nLoad average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after. "
                 f"The command's timing line: "
                 + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
                 + f"; in-process run {r['run_s']:.2f} s; E = {r['energy_eh']:.10f} Eh.\n\n")
        text += markdown_table([{k: p.get(k, "") for k in ("program", "trace_s", "lower_s",
                                                         "compile_s", "kernels", "role")}
                                for p in r["programs"]])
        text += (f"\n\nThe SCF program's parts, each compiled alone (`kernels`: XLA:CPU fused "
                 f"kernels; `library_calls`: dots and LAPACK custom calls):\n\n")
        text += markdown_table(r["parts"]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-level", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (fresh cache each round)")
    ap.add_argument("--out")
    ap.add_argument("--profile", action="store_true",
                    help="list the programs a first run compiles and attribute the SCF "
                    "program's compile time to its parts (module docstring)")
    ap.add_argument("--xc", nargs="+",
                    help="functionals (default: pbe; with --profile: pbe hse06)")
    ap.add_argument("--profile-child", metavar="XC", help=argparse.SUPPRESS)
    ap.add_argument("--xyz", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile_child:
        res = profile_child(args.profile_child, args.grid_level, args.xyz)
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
        os._exit(0)  # as `jaxks scf` (jaxks.cli.entry): no interpreter teardown
    if args.profile:
        args.xc = args.xc or ["pbe", "hse06"]
        profile(args)
        return
    args.xc = args.xc or ["pbe"]
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        xyz = Path(tmp) / "water.xyz"
        xyz.write_text(WATER)
        for xc in args.xc:
            jaxks = [sys.executable, "-m", "jaxks.cli", "scf", str(xyz), "--xc", xc,
                     "--basis", "def2-svp", "--grid-level", str(args.grid_level)]
            pyscf = [sys.executable, "-c", PYSCF.format(xyz=xyz, level=args.grid_level, xc=xc)]
            for r in range(args.repeat):
                env = dict(os.environ, JAXKS_CACHE_DIR=str(Path(tmp) / f"cache-{xc}-{r}"),
                           OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
                first = wall(jaxks, env)
                second = wall(jaxks, env)
                off = wall(jaxks, dict(env, JAXKS_COMPILE_CACHE="0"))
                ref = wall(pyscf, env)
                row = dict(round=r, jaxks_first_s=first, jaxks_second_s=second,
                           jaxks_no_cache_s=off, pyscf_s=ref, first_over_second=first / second,
                           second_over_pyscf=second / ref)
                rows.append(dict(xc=xc, **row) if args.xc != ["pbe"] else row)
                print(rows[-1], flush=True)
    import ml_dtypes

    header = (f"\n## `jaxks scf water.xyz` wall time (process start to exit), grid level "
              f"{args.grid_level}, {'/'.join(x.upper() for x in args.xc)}, def2-SVP\nMachine: {machine()}, ml_dtypes "
              f"{ml_dtypes.__version__} (0.7 adds ~0.45 s to `import jax`), 1-minute load average "
              f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. `jaxks_first_s`: empty "
              f"compilation cache; `jaxks_second_s`: same command again (cache filled: the SCF loop "
              f"is loaded from jaxks's executable cache without tracing); "
              f"`jaxks_no_cache_s`: JAXKS_COMPILE_CACHE=0; `pyscf_s`: `python -c` running PySCF's "
              f"DF-RKS with the same settings. OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', '1')}.\n\n")
    report(header, rows, args.out)


if __name__ == "__main__":
    main()

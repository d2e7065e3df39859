"""Wall time of a whole `jaxks scf water.xyz` process (start to exit), first and second invocation
(the second loads the compiled SCF loop from the persistent compilation cache), against the PySCF
`python -c` equivalent (same basis, auxiliary basis, grid level, functional).

    python benchmarks/cli_timing.py --repeat 3 --out benchmarks/results/cli_timing_cpu.md
"""

from __future__ import annotations

import argparse
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

from common import machine, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WATER = """3
water, Angstrom
O 0.000000 0.000000 0.117790
H 0.000000 0.755453 -0.471161
H 0.000000 -0.755453 -0.471161
"""
PYSCF = ("from pyscf import gto, dft; mol = gto.M(atom='{xyz}', basis='def2-svp'); "
         "mf = dft.RKS(mol, xc='pbe').density_fit(auxbasis='def2-universal-jkfit'); "
         "mf.grids.level = {level}; mf.kernel()")


def wall(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-level", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (fresh cache each round)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        xyz = Path(tmp) / "water.xyz"
        xyz.write_text(WATER)
        jaxks = [sys.executable, "-m", "jaxks.cli", "scf", str(xyz), "--xc", "pbe",
                 "--basis", "def2-svp", "--grid-level", str(args.grid_level)]
        pyscf = [sys.executable, "-c", PYSCF.format(xyz=xyz, level=args.grid_level)]
        for r in range(args.repeat):
            env = dict(os.environ, JAXKS_CACHE_DIR=str(Path(tmp) / f"cache{r}"),
                       OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            first = wall(jaxks, env)
            second = wall(jaxks, env)
            off = wall(jaxks, dict(env, JAXKS_COMPILE_CACHE="0"))
            ref = wall(pyscf, env)
            rows.append(dict(round=r, jaxks_first_s=first, jaxks_second_s=second,
                             jaxks_no_cache_s=off, pyscf_s=ref, first_over_second=first / second,
                             second_over_pyscf=second / ref))
            print(rows[-1], flush=True)
    import ml_dtypes

    header = (f"\n## `jaxks scf water.xyz` wall time (process start to exit), grid level "
              f"{args.grid_level}, PBE/def2-SVP\nMachine: {machine()}, ml_dtypes "
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

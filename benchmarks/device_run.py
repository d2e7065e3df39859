"""One prepared accelerator run: SCF timings, a fixed-mode and an end-to-end training step, and
a density refresh, from inputs computed beforehand (PySCF is not needed where it runs).

Two commands::

    # here (PySCF): integrals and training frames as .npz bundles in an ignored folder
    python benchmarks/device_run.py prepare --data data/device_run
    # there (a GPU, no PySCF; benchmarks/device_run.sh wraps it with a time limit)
    python benchmarks/device_run.py run --data data/device_run --out "$OUT"

``run`` writes ``scf_timing_<tag>.md`` and ``train_timing_<tag>.md`` into ``--out`` (``<tag>``:
``gpu`` on an accelerator, ``cpu`` otherwise) and stops starting new parts once ``--budget``
seconds have passed, so the whole run fits the device tool's time limit (8 minutes by
default, compile included). ``--cpu`` on both commands is the dry run: water monomers, STO-3G,
grid level 0, a small network — the same code path in tens of seconds (a CI test runs it).

Bundle format (``.npz``): the leaves of a pytree (``leaf_00000`` …) plus ``__tree__``, the
pickled tree structure (jaxks's own dataclasses: the run side imports jaxks). ``meta.npz``
holds the PySCF constants jaxks reads at import (Bohr radius, Hartree in eV, element symbols)
so that, where PySCF is missing, a stand-in ``pyscf.data`` module can be installed from them.

Sizes: the DF tensor of (H2O)n in def2-SVP grows as n³ (0.1 GB at n = 8, GBs at n = 32), far
over the device tool's 64 MiB ``carry``; ``prepare --sizes`` chooses what to ship (default
8 16 32 — move the folder by other means, or pass ``--sizes 4`` to stay under the limit).
Units: seconds; energies nowhere.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


#: Highest angular momentum whose cartesian-to-spherical table the PySCF stand-in carries.
MAX_L = 5


# ----------------------------------------------------------------------------- bundles
def save_bundle(path, tree) -> int:
    """Write the pytree ``tree`` to ``path`` (.npz): array leaves as NumPy arrays, the tree
    structure and any other leaf (small host objects) pickled. Returns the file's bytes."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = [isinstance(x, (np.ndarray, jax.Array)) for x in leaves]
    arrays = {f"leaf_{k:05d}": np.asarray(x) for k, (x, a) in enumerate(zip(leaves, is_array))
              if a}
    others = [None if a else x for x, a in zip(leaves, is_array)]
    arrays["__tree__"] = np.frombuffer(pickle.dumps((treedef, others)), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return os.path.getsize(path)


def load_bundle(path):
    """The pytree written by :func:`save_bundle` (array leaves as JAX arrays)."""
    import jax
    import jax.numpy as jnp

    with np.load(path) as z:
        treedef, leaves = pickle.loads(z["__tree__"].tobytes())
        for k in range(len(leaves)):
            if f"leaf_{k:05d}" in z.files:
                leaves[k] = jnp.asarray(z[f"leaf_{k:05d}"])
    return jax.tree_util.tree_unflatten(treedef, leaves)


def records_tree(records) -> list[dict]:
    """Training records as plain containers (a pytree whose leaves are arrays or small host
    objects) and back (:func:`records_from_tree`)."""
    return [dict(frame=r.frame, system=r.system, key=r.key, base=r.base, source=r.source)
            for r in records]


def records_from_tree(tree) -> list:
    from jaxks.train.frames import FrameRecord

    return [FrameRecord(d["frame"], d["system"], d["key"],
                        {k: np.asarray(v) for k, v in d["base"].items()}, d["source"])
            for d in tree]


def install_pyscf_stand_in(meta_path) -> bool:
    """Where PySCF is missing, install ``pyscf.data.nist`` / ``pyscf.data.elements`` stand-ins
    built from ``meta.npz`` (jaxks imports them for units and element symbols). Returns whether
    the stand-in was installed."""
    try:
        import pyscf  # noqa: F401
        return False
    except ImportError:
        pass
    with np.load(meta_path) as z:
        bohr, hartree_ev = float(z["bohr"]), float(z["hartree2ev"])
        symbols = [str(s) for s in z["elements"]]
        tables = {int(k[9:]): z[k] for k in z.files if k.startswith("cart2sph_")}
    nist = types.SimpleNamespace(BOHR=bohr, HARTREE2EV=hartree_ev)
    elements = types.SimpleNamespace(ELEMENTS=symbols, charge=lambda s: symbols.index(
        s if s in symbols else s.capitalize()))
    gto = types.SimpleNamespace(cart2sph=lambda l: tables[l])  # AO evaluation's tables
    pkg, data = types.ModuleType("pyscf"), types.ModuleType("pyscf.data")
    data.nist, data.elements, pkg.data, pkg.gto = nist, elements, data, gto
    sys.modules.update({"pyscf": pkg, "pyscf.data": data, "pyscf.data.nist": nist,
                        "pyscf.data.elements": elements, "pyscf.gto": gto})
    return True


# ----------------------------------------------------------------------------- prepare
def settings_for(cpu: bool) -> dict:
    if cpu:
        return dict(basis="sto-3g", grid_level=0, sizes=(1,), train_n=1, frames=2, batch=2,
                    hidden=(8, 8))
    return dict(basis="def2-svp", grid_level=2, sizes=(8, 16, 32), train_n=2, frames=8,
                batch=8, hidden=(100, 100, 100))


def prepare(args) -> int:
    """Integrals of (H2O)n for the SCF timings and labelled, prepared training frames."""
    from pyscf import lib
    from pyscf.data import elements, nist

    import jaxks  # noqa: F401  (float64)
    from common import water_cluster
    from jaxks.data.labels import LabelSettings
    from jaxks.data.pipeline import label_frames
    from jaxks.data.sampling import sample_water
    from jaxks.integrals.projectors import default_basis
    from jaxks.integrals import compute_integrals
    from jaxks.system import System
    from jaxks.train.frames import load_records

    s = settings_for(args.cpu)
    sizes = args.sizes or s["sizes"]
    lib.num_threads(1)
    out = Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    from pyscf import gto

    np.savez(out / "meta.npz", bohr=nist.BOHR, hartree2ev=nist.HARTREE2EV,
             elements=np.array(elements.ELEMENTS), cpu=args.cpu,
             **{f"cart2sph_{l}": np.asarray(gto.cart2sph(l)) for l in range(MAX_L + 1)})
    for n in sizes:
        symbols, coords = water_cluster(n)
        system = System.from_symbols(symbols, coords, basis=s["basis"],
                                     grid_level=s["grid_level"])
        size = save_bundle(out / f"scf_w{n}.npz", compute_integrals(system))
        print(f"scf_w{n}.npz: {size / 1e6:.1f} MB", file=sys.stderr, flush=True)
    n = s["train_n"]
    geoms = sample_water(n, s["frames"], seed=100 + n)
    systems = [System.from_symbols(g.symbols, g.coords, basis=s["basis"],
                                   grid_level=s["grid_level"]) for g in geoms]
    folder = str(out / f"labels_w{n}")
    label_frames(systems, folder, LabelSettings(base="pbe", target="pbe", basis=s["basis"],
                                                grid_level=s["grid_level"]),
                 workers=1, progress=None)
    records = load_records([folder], default_basis(), ("H", "O"), with_forces=False)
    size = save_bundle(out / f"train_w{n}.npz", records_tree(records))
    print(f"train_w{n}.npz: {size / 1e6:.1f} MB", file=sys.stderr, flush=True)
    return 0


# ----------------------------------------------------------------------------- run
def _timed(fn):
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def run_scf_timings(data: Path, deadline: float) -> list[dict]:
    """PBE SCF of each ``scf_w*.npz`` from its MINAO guess: compile and steady-state seconds."""
    from jaxks.scf import run_scf

    rows = []
    for path in sorted(data.glob("scf_w*.npz"), key=lambda p: int(p.stem[5:])):
        n = int(path.stem[5:])
        if time.perf_counter() > deadline:
            rows.append({"n": n, "note": "skipped: time budget spent"})
            continue
        ints = load_bundle(path)
        res, t = run_scf(ints, "pbe", warn=False, return_timings=True)
        steady = min(run_scf(ints, "pbe", warn=False, return_timings=True)[1]["scf"]
                     for _ in range(2))
        rows.append({"n": n, "nao": ints.nao, "n_grid": ints.n_grid, "cycles": int(res.cycles),
                     "converged": bool(res.converged), "compile_s": t["compile"],
                     "scf_s": steady, "per_cycle_s": steady / max(int(res.cycles), 1)})
        print(rows[-1], file=sys.stderr, flush=True)
        del ints
    return rows


def run_training(data: Path, cpu: bool, deadline: float) -> list[dict]:
    """A density refresh, a fixed-mode step and an end-to-end step of each ``train_w*.npz``."""
    import dataclasses

    import jax

    from jaxks.train import loop
    from jaxks.train.config import (LossSection, ModelSection, SCFSection, TrainConfig,
                                    TrainSection)

    s = settings_for(cpu)
    rows = []
    for path in sorted(data.glob("train_w*.npz")):
        n = int(path.stem[7:])
        records = records_from_tree(load_bundle(path))
        cfg = TrainConfig(model=ModelSection(hidden=s["hidden"]), loss=LossSection(force=0.0),
                          scf=SCFSection(), train=TrainSection(mode="fixed",
                                                               batch_size=s["batch"],
                                                               out="/tmp/device_run"))
        tr = loop.Trainer(cfg, records, "pbe", sys.stderr)
        fixed = tr.stages[0]
        scf = dataclasses.replace(fixed, mode="scf")
        params = tr.state["params"]
        row = {"n": n, "nao": records[0].frame.ints.nao, "frames": len(records),
               "batch": s["batch"]}
        _, row["refresh_first_s"] = _timed(lambda: tr.build_caches(fixed, params, scf=True))
        pos = np.resize(np.arange(len(records)), s["batch"]).astype(np.int32)
        weights = np.ones(s["batch"])
        state0 = dict(tr.state)
        for mode, stage in (("fixed", fixed), ("e2e", scf)):
            if time.perf_counter() > deadline:
                row[f"{mode}_note"] = "skipped: time budget spent"
                continue
            opt, _ = loop.make_optimizer(cfg, params, stage)

            def step():
                tr.state.update(state0)
                tr.run_step(stage, 0, opt, 0, pos, weights)
                return tr.state["params"]

            _, first = _timed(step)
            _, steady = _timed(step)
            row[f"{mode}_step_s"], row[f"{mode}_compile_s"] = steady, first - steady
            if mode == "fixed":
                # a refresh after two steps moved the model (what a periodic refresh costs)
                _, row["refresh_s"] = _timed(
                    lambda: tr.build_caches(fixed, tr.state["params"], scf=True))
                row["refresh_cycles_mean"] = tr.refresh_stats.mean_cycles
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
        del records, tr
        jax.clear_caches()
    return rows


def run(args) -> int:
    data = Path(args.data)
    stand_in = install_pyscf_stand_in(data / "meta.npz")
    import jax

    import jaxks  # noqa: F401  (float64)
    from common import machine, markdown_table

    t0 = time.perf_counter()
    deadline = t0 + args.budget
    tag = "cpu" if jax.default_backend() == "cpu" else "gpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = (f"\n## {time.strftime('%Y-%m-%d %H:%M')} — {machine()}"
            f"{' (PySCF stand-in)' if stand_in else ''}, benchmarks/device_run.py"
            f"{' --cpu' if args.cpu else ''}\n\n")
    scf_rows = run_scf_timings(data, deadline)
    with open(out / f"scf_timing_{tag}.md", "a") as f:
        f.write(head + "PBE SCF from the MINAO guess, steady state = best of 2 after the "
                "compiled first run; seconds.\n\n" + markdown_table(scf_rows) + "\n")
    train_rows = run_training(data, args.cpu, deadline)
    with open(out / f"train_timing_{tag}.md", "a") as f:
        f.write(head + "Fixed-mode refresh (first: from the base densities, compile "
                "included; then after two fixed-mode steps), fixed-mode and end-to-end steps "
                "(steady = second call; compile = first − second); force weight 0; "
                "seconds.\n\n"
                + markdown_table(train_rows) + "\n")
    print(f"device_run: {time.perf_counter() - t0:.0f} s, wrote {out}/*_{tag}.md",
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare", help="compute inputs here (needs PySCF)")
    pp.add_argument("--data", default="data/device_run")
    pp.add_argument("--cpu", action="store_true", help="dry-run sizes (seconds)")
    pp.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="(H2O)n of the SCF timings (default 8 16 32; --cpu: 1)")
    pr = sub.add_parser("run", help="time everything (no PySCF needed)")
    pr.add_argument("--data", default="data/device_run")
    pr.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    pr.add_argument("--cpu", action="store_true", help="dry-run settings (pair with prepare "
                    "--cpu)")
    pr.add_argument("--budget", type=float, default=420.0,
                    help="seconds after which no new part starts")
    args = p.parse_args(argv)
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    raise SystemExit(main())

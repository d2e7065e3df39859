"""SCF convergence on a stress set: PBE, HSE06 and DeePKS-ES (the shipped water model), with
the defaults a user gets, and plain DIIS (no fallback) beside them.

    python benchmarks/convergence.py [--sizes 1 2 3 4 6 8 12 16 20] [--hse-max 8]
        [--model water] [--out benchmarks/results/convergence_cpu.md] [--state data/convergence]

The stress set (geometries in Angstrom, made here, deterministic):

* ``cluster-n-s``: (H2O)_n, random orientations on a jittered lattice
  (``common.water_cluster(n, seed=s)``, the benchmark generator), n = ``--sizes``, two seeds;
* ``mono-stretch-r-a``: monomers with both O–H at r Å and HOH at a degrees (0.80–1.40 Å,
  85–130°): compressed and dissociating bonds shrink the gap;
* ``dimer-compressed`` / ``dimer-far``: a dimer with O–O 2.3 and 5.0 Å.

Each structure runs with the model's settings (def2-SVP, def2-universal-jkfit, grid level 2)
from the MINAO guess, SCFOptions() defaults (max 100 cycles, |ΔE| < 1e-10 Eh, commutator
< 1e-6, fallback on) and again with ``fallback=False``; per run: converged, cycles, fallback
rung reached (0 = plain DIIS sufficed). Resumable: one JSON line per run in
``--state``/runs.jsonl; an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, water_cluster  # noqa: E402

GRID_LEVEL = 2
BASIS = "def2-svp"


def monomer(r: float, angle_deg: float):
    half = np.deg2rad(angle_deg) / 2
    return ["O", "H", "H"], np.array([[0, 0, 0], [r * np.sin(half), 0, r * np.cos(half)],
                                      [-r * np.sin(half), 0, r * np.cos(half)]])


def dimer(roo: float):
    s, x = monomer(0.97, 104.2)
    q = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    return s + s, np.concatenate([x, x @ q.T + [roo, 0.0, 0.0]])


def stress_set(sizes, seeds=(0, 1)) -> dict:
    """name -> (symbols, coords in Angstrom); two seeds per cluster size below 12, one above."""
    out = {}
    for r, a in ((0.80, 104.2), (0.97, 85.0), (0.97, 130.0), (1.15, 104.2), (1.25, 110.0),
                 (1.40, 104.2)):
        out[f"mono-stretch-{r:.2f}-{a:.0f}"] = monomer(r, a)
    out["dimer-compressed"] = dimer(2.3)
    out["dimer-far"] = dimer(5.0)
    for n in sizes:
        for s in (seeds if n < 12 else seeds[:1]):
            out[f"cluster-{n}-{s}"] = water_cluster(n, seed=s)
    return out


_INTS: dict = {}


def integrals(name, symbols, coords, hybrid: bool):
    """Integrals of structure ``name`` (with the short-range tensor when ``hybrid``), kept for
    the next method on the same structure."""
    from jaxks.exchange import sr_omega
    from jaxks.integrals import compute_integrals
    from jaxks.system import System
    from jaxks.xc import get_xc

    key = (name, hybrid)
    if key not in _INTS:
        _INTS.clear()
        system = System.from_symbols(symbols, coords, basis=BASIS, grid_level=GRID_LEVEL)
        omega = sr_omega(get_xc("hse06")) if hybrid else 0.0
        _INTS[key] = (system, compute_integrals(system, omega=omega))
    return _INTS[key]


def run_one(name, symbols, coords, method: str, fallback: bool, model) -> dict:
    from jaxks.scf import SCFOptions, run_scf
    from jaxks.xc import get_xc

    system, ints = integrals(name, symbols, coords, method == "hse06")
    xc = get_xc("hse06" if method == "hse06" else "pbe")
    term = params = None
    if method == "deepks":
        term, params = model.prepare(system.to_pyscf())
    opts = SCFOptions(fallback=fallback)
    t0 = time.perf_counter()
    r, t = run_scf(ints, xc, term=term, params=params, options=opts, warn=False,
                   return_timings=True)
    return dict(converged=bool(r.converged), cycles=int(r.cycles), fallback=int(r.fallback),
                comm=float(r.comm_norm), energy=float(r.energy), scf_s=t["scf"],
                wall_s=time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16, 20])
    p.add_argument("--hse-max", type=int, default=8,
                   help="largest cluster run with HSE06 (default: 8)")
    p.add_argument("--model", default="water", help="DeePKS model (file or built-in name)")
    p.add_argument("--state", default="data/convergence", help="resumable run records")
    p.add_argument("--out", default=None, help="markdown table to write")
    p.add_argument("--methods", nargs="+", default=["pbe", "hse06", "deepks"],
                   choices=["pbe", "hse06", "deepks"], help="methods to run (default: all)")
    p.add_argument("--no-plain", action="store_true",
                   help="skip the fallback=False comparison runs")
    args = p.parse_args(argv)
    from jaxks.models import load_model

    model = load_model(args.model)
    # DeePKS records belong to one model file: keyed on its parameters' checksum
    from jaxks.deepks.io import _flatten
    from jaxks.fileio import array_checksum

    model_id = array_checksum(_flatten(model.params))[:12]
    os.makedirs(args.state, exist_ok=True)
    state = os.path.join(args.state, "runs.jsonl")
    done = {}
    if os.path.exists(state):
        for line in open(state):
            rec = json.loads(line)
            if rec["method"] == "deepks" and rec.get("model_id") != model_id:
                continue
            done[(rec["name"], rec["method"], rec["fallback_on"])] = rec
    structures = stress_set(args.sizes)
    todo = []
    for name, (sym, xyz) in structures.items():
        n_water = len(sym) // 3
        for method in sorted(args.methods, key=("pbe", "deepks", "hse06").index):
            if method == "hse06" and n_water > args.hse_max:
                continue
            for on in ((True,) if args.no_plain else (True, False)):
                todo.append((name, method, on))
    for k, (name, method, on) in enumerate(todo):
        if (name, method, on) in done:
            continue
        with_fallback = done.get((name, method, True))
        if not on and with_fallback is not None and with_fallback["fallback"] == 0:
            # the fallback never engaged: plain DIIS took the identical path (tests/test_scf.py)
            done[(name, method, on)] = dict(with_fallback, fallback_on=False, same_path=True)
            continue
        sym, xyz = structures[name]
        rec = dict(name=name, natoms=len(sym), method=method, fallback_on=on,
                   model_id=model_id if method == "deepks" else None,
                   **run_one(name, sym, xyz, method, on, model))
        done[(name, method, on)] = rec
        with open(state, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"convergence: [{k + 1}/{len(todo)}] {name} {method} fallback={on}: "
              f"converged={rec['converged']} cycles={rec['cycles']} rung={rec['fallback']} "
              f"({rec['wall_s']:.1f} s)", file=sys.stderr, flush=True)
        if args.out:  # the table so far: an interrupted run still leaves its results
            with open(args.out, "w") as f:
                f.write(table(done, structures, args.model, model))
    text = table(done, structures, args.model, model)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


def table(done: dict, structures: dict, model_name: str, model) -> str:
    import jax

    methods = ("pbe", "hse06", "deepks")
    lines = [f"# SCF convergence on the stress set ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. Settings: {BASIS}, def2-universal-jkfit, PySCF grid level "
             f"{GRID_LEVEL}, MINAO guess, `SCFOptions()` defaults (max 100 cycles, |ΔE| < 1e-10 "
             "Eh, commutator < 1e-6). DeePKS-ES: PBE + model "
             f"`{model_name}` (descriptor `{model.config.descriptor}`). Made by "
             "`python benchmarks/convergence.py`.", "",
             "Cells: cycles, `+fN` when the fallback ended on rung N (N = 1: level shift 0.3 "
             "Eh; 2: 0.5 Eh and damping 0.5), `FAIL` when not converged; `plain`: the same "
             "run with the fallback off (`=` where the fallback never engaged, so plain DIIS "
             "took the identical path and was not rerun).", "",
             "| structure | atoms | " + " | ".join(f"{m} | {m} plain" for m in methods) + " |",
             "|" + "---|" * (2 + 2 * len(methods))]

    def cell(rec):
        if rec is None:
            return "–"
        if rec.get("same_path"):
            return "="
        if not rec["converged"]:
            return f"FAIL ({rec['cycles']})"
        return f"{rec['cycles']}" + (f" +f{rec['fallback']}" if rec["fallback"] else "")

    for name, (sym, _) in structures.items():
        cells = []
        for m in methods:
            cells += [cell(done.get((name, m, True))), cell(done.get((name, m, False)))]
        lines.append(f"| {name} | {len(sym)} | " + " | ".join(cells) + " |")
    lines += ["", "Summary (defaults, fallback on):", ""]
    for m in methods:
        recs = [r for (n, mm, on), r in done.items() if mm == m and on and n in structures]
        plain = [r for (n, mm, on), r in done.items() if mm == m and not on and n in structures]
        if not recs:
            continue
        conv = [r for r in recs if r["converged"]]
        lines.append(
            f"* {m}: {len(conv)}/{len(recs)} converged, mean cycles "
            f"{np.mean([r['cycles'] for r in conv]):.1f}, fallback used on "
            f"{sum(r['fallback'] > 0 for r in recs)}; plain DIIS: "
            f"{sum(r['converged'] for r in plain)}/{len(plain)} converged")
    both = [(done[(n, "deepks", True)], done[(n, "pbe", True)]) for n in structures
            if (n, "deepks", True) in done and (n, "pbe", True) in done]
    if both:
        ratio = np.mean([d["cycles"] for d, _ in both]) / np.mean([b["cycles"] for _, b in both])
        lines.append(f"* DeePKS-ES / PBE mean cycles on the same {len(both)} structures: "
                     f"{ratio:.2f}")
    lines.append(f"* jax {jax.__version__}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""PBE, HSE06 and DeePKS-ES: SCF and SCF + forces for (H2O)_n, jaxks and PySCF side by side.

Identical settings for both engines and all methods: basis, auxiliary basis, the same PySCF grid
object (no density pruning), SCF stopping at |ΔE| < 1e-9 Eh (jaxks also commutator < 1e-5;
PySCF conv_tol 1e-9), forces without grid response.

* jaxks: integrals (PySCF, host), compile, steady-state SCF (the compiled loop run a second time
  from the same guess), derivative integrals, force evaluation (second call, compiled).
* PySCF: one ``mf.kernel()`` of DF-RKS (its DF tensors included) and one ``nuc_grad_method()``.
* HSE06 is the registry's ``hse06`` where this tree has it; otherwise a stand-in with the same
  exact-exchange work — 0.25·SR-HF(ω = 0.11) + PBE (``hse06-standin``: the ωPBE semilocal part is
  replaced by PBE, same grid work) — and the table says which ran.
* DeePKS-ES: PBE + the shipped water model (``jaxks.load_model("water")``) when the basis,
  auxiliary basis and grid level are the ones it was trained with (def2-SVP,
  def2-universal-jkfit, grid level 2); otherwise a *random, untrained* small model (default
  projector basis, hidden (32, 32), seed 0), timing only; the table's method column says which.
  PySCF runs it the DeePKS-kit way (the correction's energy and potential added in ``get_veff``,
  evaluated by the same JAX code); no PySCF forces for it.

Ratios: HSE06/PBE and DeePKS/PBE of the steady-state SCF time per engine (and of SCF + forces).

    python benchmarks/methods_timing.py --sizes 1 2 4 8 16 --grid-level 2 \
        --out benchmarks/results/methods_timing_cpu.md

``--fock-only`` times one Fock build per method instead (each method of ``--methods`` against
PBE, alternating, best of 5: the per-cycle cost ratio, free of cycle-count differences):

    python benchmarks/methods_timing.py --fock-only --methods pbe deepks --sizes 8 16 32
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the jaxks of this checkout, not an installed copy
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, peak_rss_gb, report, water_cluster  # noqa: E402
from jaxks.exchange import sr_omega  # noqa: E402
from jaxks.forces import force_integrals, forces  # noqa: E402
from jaxks.integrals import integrals_from_pyscf, make_grids  # noqa: E402
from jaxks.scf import SCFOptions, run_scf  # noqa: E402
from jaxks.system import System  # noqa: E402
from jaxks.xc import XCFunctional, get_xc  # noqa: E402
from jaxks.xc.registry import GGA_C_PBE, GGA_X_PBE  # noqa: E402

OPTS = SCFOptions(e_tol=1e-9, comm_tol=1e-5)


def hse06():
    """The registry's HSE06, or the stand-in described in the module docstring."""
    try:
        return get_xc("hse06")
    except ValueError:
        return XCFunctional("hse06-standin", "gga", "0.25*SR_HF(0.11)+PBE,PBE",
                            (GGA_X_PBE, GGA_C_PBE), sr_exchange=0.25, omega=0.11)


def deepks_model(args):
    """(model, label): the shipped water model if ``args`` match its training settings, else a
    random small one (timing only)."""
    from jaxks.deepks.io import ModelFileError
    from jaxks.models import check_settings

    model = jaxks.load_model("water")
    try:
        check_settings(model, "water", basis=args.basis, auxbasis=args.auxbasis,
                       grid_level=args.grid_level, base="pbe")
        return model, "water-model"
    except ModelFileError:
        return random_deepks(), "random-deepks"


def random_deepks(seed=0):
    """A random, untrained small DeePKS model (timing only)."""
    from jaxks.deepks import ModelConfig, init_model
    from jaxks.integrals.projectors import default_basis
    from jaxks.deepks.io import DeePKSModel

    basis = default_basis()
    config = ModelConfig(basis.shell_sections, hidden=(32, 32))
    params = init_model(config, jax.random.PRNGKey(seed))
    params = dataclasses.replace(params, shift=jnp.full(config.ndesc, 0.2))
    return DeePKSModel(config=config, params=params, basis=basis, base_xc="pbe")


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t


def bench_jaxks(mol, grids, aux, level, method, with_forces, model=None):
    xc = hse06() if method == "hse06" else get_xc("pbe")
    omega = sr_omega(xc)
    ints, t_int = _timed(lambda: integrals_from_pyscf(mol, aux, level, grids=grids, omega=omega))
    term, params = model.prepare(mol) if model else (None, None)
    res, t = run_scf(ints, xc, term=term, params=params, options=OPTS, return_timings=True)
    res, t_scf = _timed(lambda: run_scf(ints, xc, term=term, params=params, options=OPTS))
    row = dict(jaxks_int_s=t_int, jaxks_compile_s=t["compile"], jaxks_scf_s=t_scf,
               jaxks_cycles=int(res.cycles), jaxks_conv=bool(res.converged),
               E_jaxks=float(res.energy), name=xc.name)
    if with_forces:
        fints, t_dint = _timed(lambda: force_integrals(mol, aux, omega=omega))

        def f():
            out = forces(res, ints, fints, xc)
            if model is not None:
                out = out + model.forces(mol, res.gamma)
            return out

        _, t_first = _timed(f)
        f_ours, t_force = _timed(f)
        row.update(jaxks_dint_s=t_dint, jaxks_force_first_s=t_first, jaxks_force_s=t_force,
                   F_jaxks=np.asarray(f_ours))
        del fints
    del ints
    return row


def bench_pyscf(mol, grids, aux, method, with_forces, model=None):
    from pyscf import dft, lib

    xc = {"pbe": "pbe", "deepks": "pbe"}.get(method) or hse06().pyscf_xc
    mf = dft.RKS(mol, xc=xc).density_fit(auxbasis=aux)
    mf.grids = grids
    mf.small_rho_cutoff = 0
    mf.conv_tol = 1e-9
    mf.verbose = 0
    if method == "deepks":
        from jaxks.deepks import correction_potential

        term, theta = model.prepare(mol)
        energy = jax.jit(term)
        potential = jax.jit(lambda g, t: correction_potential(term, g, t))
        base_veff = mf.get_veff

        def get_veff(mol=None, dm=None, *args, **kwargs):
            v = base_veff(mol, dm, *args, **kwargs)
            g = jnp.asarray(dm)
            return lib.tag_array(np.asarray(v) + np.asarray(potential(g, theta)), ecoul=v.ecoul,
                                 exc=v.exc + float(energy(g, theta)), vj=v.vj, vk=v.vk)

        mf.get_veff = get_veff
    t0 = time.perf_counter()
    e = mf.kernel()
    row = dict(pyscf_scf_s=time.perf_counter() - t0, pyscf_cycles=mf.cycles, E_pyscf=e)
    if with_forces and method != "deepks":
        g = mf.nuc_grad_method()
        g.verbose = 0
        t0 = time.perf_counter()
        de = g.kernel()
        row.update(pyscf_force_s=time.perf_counter() - t0, F_pyscf=-np.asarray(de))
    return row


def bench(n, method, args):
    system = System.from_symbols(*water_cluster(n), basis=args.basis, auxbasis=args.auxbasis,
                                 grid_level=args.grid_level)
    mol = system.to_pyscf()
    mol.max_memory = 16000
    grids = make_grids(mol, args.grid_level)
    with_forces = n <= args.forces_max
    model, label = deepks_model(args) if method == "deepks" else (None, "")
    r = bench_jaxks(mol, grids, args.auxbasis, args.grid_level, method, with_forces, model)
    row = dict(n=n, kind=method, method=r["name"] + (f"+{label}" if label else ""),
               nao=mol.nao, **{k: v for k, v in r.items()
                               if k not in ("E_jaxks", "F_jaxks", "name")})
    row["peak_rss_gb"] = peak_rss_gb()
    if n <= args.pyscf_max:
        p = bench_pyscf(mol, grids, args.auxbasis, method, with_forces, model)
        row.update(pyscf_scf_s=p["pyscf_scf_s"], pyscf_cycles=p["pyscf_cycles"],
                   pyscf_force_s=p.get("pyscf_force_s", float("nan")),
                   dE_Eh=abs(p["E_pyscf"] - r["E_jaxks"]),
                   maxdF=(float(np.max(np.abs(p["F_pyscf"] - r["F_jaxks"])))
                          if "F_pyscf" in p and "F_jaxks" in r else float("nan")))
    return row


def fock_build_times(n, args, repeat=5):
    """Seconds of one jitted Fock build (energy + F at the converged PBE density) for each of
    ``args.methods`` — PBE, HSE06, PBE + the DeePKS term (F + V_δ, E + E_δ) — timed alternately
    ``repeat`` times each, best taken: the per-iteration cost ratio to PBE, which a shared, noisy
    machine distorts less than whole SCF runs started minutes apart (and which does not depend
    on how many cycles each method needs)."""
    from jaxks.scf import fock_matrix

    system = System.from_symbols(*water_cluster(n), basis=args.basis, auxbasis=args.auxbasis,
                                 grid_level=args.grid_level)
    mol = system.to_pyscf()
    mol.max_memory = 16000
    grids = make_grids(mol, args.grid_level)
    methods = ["pbe"] + [m for m in args.methods if m != "pbe"]
    omega = dict(omega=sr_omega(hse06())) if "hse06" in methods else {}
    ints = integrals_from_pyscf(mol, args.auxbasis, args.grid_level, grids=grids, **omega)
    gamma = run_scf(ints, "pbe", options=OPTS).gamma
    build = jax.jit(lambda g, i, p, xc, term: fock_matrix(g, i, xc, term, p)[0],
                    static_argnames=("xc", "term"))
    label = ""
    calls = {}
    for m in methods:
        if m == "deepks":
            model, label = deepks_model(args)
            term, theta = model.prepare(mol)
            calls[m] = dict(xc=get_xc("pbe"), term=term, p=theta)
        else:
            calls[m] = dict(xc=hse06() if m == "hse06" else get_xc("pbe"), term=None, p=None)
    best = {m: float("inf") for m in methods}
    for m in methods:
        jax.block_until_ready(build(gamma, ints, **calls[m]))  # compile
    for _ in range(repeat):
        for m in methods:
            _, t = _timed(lambda: build(gamma, ints, **calls[m]))
            best[m] = min(best[m], t)
    row = dict(n=n, nao=ints.nao, naux=ints.naux, ngrid=ints.n_grid)
    for m in methods:
        row[f"fock_{m}_s"] = best[m]
    for m in methods[1:]:
        row[f"{m}/pbe"] = best[m] / best["pbe"]
    if "hse06" in methods:
        row["hse06"] = calls["hse06"]["xc"].name
    if label:
        row["deepks_model"] = label
    return row


def ratios(rows):
    """Per n and engine: HSE06/PBE and DeePKS/PBE of the SCF time and of SCF + forces."""
    by = {(r["n"], r["kind"]): r for r in rows}
    out = []
    for n in sorted({r["n"] for r in rows}):
        pbe = by.get((n, "pbe"))
        if pbe is None:
            continue
        row = dict(n=n)
        for key in sorted({m for (nn, m) in by if nn == n} - {"pbe"}):
            other = by[(n, key)]
            tag = key
            row[f"jaxks_{tag}/pbe_scf"] = other["jaxks_scf_s"] / pbe["jaxks_scf_s"]
            # per SCF cycle: the cost of one iteration, apart from how many each method needs
            row[f"jaxks_{tag}/pbe_per_cycle"] = ((other["jaxks_scf_s"] / other["jaxks_cycles"])
                                                 / (pbe["jaxks_scf_s"] / pbe["jaxks_cycles"]))
            if "jaxks_force_s" in other and "jaxks_force_s" in pbe:
                row[f"jaxks_{tag}/pbe_scf+forces"] = (
                    (other["jaxks_scf_s"] + other["jaxks_force_s"])
                    / (pbe["jaxks_scf_s"] + pbe["jaxks_force_s"]))
            if "pyscf_scf_s" in other and "pyscf_scf_s" in pbe:
                row[f"pyscf_{tag}/pbe_scf"] = other["pyscf_scf_s"] / pbe["pyscf_scf_s"]
                if tag != "deepks" and np.isfinite(other["pyscf_force_s"]):
                    row[f"pyscf_{tag}/pbe_scf+forces"] = (
                        (other["pyscf_scf_s"] + other["pyscf_force_s"])
                        / (pbe["pyscf_scf_s"] + pbe["pyscf_force_s"]))
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--methods", nargs="+", default=["pbe", "hse06", "deepks"],
                    choices=["pbe", "hse06", "deepks"])
    ap.add_argument("--basis", default="def2-svp")
    ap.add_argument("--auxbasis", default="def2-universal-jkfit")
    ap.add_argument("--grid-level", type=int, default=2,
                    help="PySCF grid level (default 2: the water model's)")
    ap.add_argument("--pyscf-max", type=int, default=16, help="largest n also run with PySCF")
    ap.add_argument("--forces-max", type=int, default=16, help="largest n with forces")
    ap.add_argument("--fock-only", action="store_true",
                    help="only time single Fock builds, each method of --methods against "
                    "PBE (see fock_build_times)")
    ap.add_argument("--out", help="append the markdown tables to this file")
    args = ap.parse_args(argv)
    if args.fock_only:
        rows = []
        for n in args.sizes:
            rows.append(fock_build_times(n, args))
            print(rows[-1], flush=True)
        report(f"\n## One Fock build, {' / '.join(args.methods)} (best of 5, alternating), "
               f"{args.basis}, aux "
               f"{args.auxbasis}, grid level {args.grid_level}\nMachine: {machine()}. Seconds."
               "\n\n", rows, args.out)
        return
    rows = []
    for n in args.sizes:
        for method in args.methods:
            rows.append(bench(n, method, args))
            print(rows[-1], flush=True)
    rat = ratios(rows)   # before the rows are padded with "-" for the table
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, "-") for k in keys} for r in rows]
    header = (f"\n## PBE / HSE06 / DeePKS-ES, {args.basis}, aux {args.auxbasis}, grid level "
              f"{args.grid_level}\nMachine: {machine()}. Times in seconds; `dE_Eh` = "
              "|E_jaxks − E_PySCF|, `maxdF` = max |F_jaxks − F_PySCF| (Eh/Bohr).\n\n")
    report(header, rows, args.out)
    if rat:
        report("\n### Time ratios to PBE (same engine, same run)\n\n", rat, args.out)


if __name__ == "__main__":
    main()

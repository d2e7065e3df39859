"""``jaxks scf``: one Kohn-Sham calculation from an xyz file, printed as a table or JSON."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from jaxks.exchange import sr_omega
from jaxks.units import ANGSTROM_PER_BOHR, EV_PER_HARTREE


def register(sub) -> None:
    p = sub.add_parser("scf", help="run a Kohn-Sham SCF on an xyz file (Angstrom)",
                       description="Restricted Kohn-Sham SCF with density-fitted Coulomb. "
                       "Energies are printed in Hartree (Eh) and eV. An extended xyz with "
                       "Lattice=\"...\" (and pbc=\"T T T\") is a periodic cell, computed "
                       "at the Gamma point (PBE, LDA, DeePKS models; no forces or hybrid yet).")
    p.add_argument("xyz", help="geometry file (xyz or extended xyz, Angstrom; the first frame "
                   "is used)")
    add_system_arguments(p)
    add_scf_arguments(p)
    p.add_argument("--forces", action="store_true",
                   help="also compute nuclear forces (printed in Eh/Bohr and eV/Angstrom)")
    p.add_argument("--grid-response", action="store_true",
                   help="include the integration grid's response in the forces")
    p.add_argument("--model", metavar="FILE|NAME",
                   help="DeePKS model file, or a built-in model name (water): run DeePKS-SCF "
                   "with the model's base functional, basis, auxiliary basis and grid level")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the results as JSON to PATH (or stdout when no PATH is given)")
    p.set_defaults(func=run)


#: Defaults of --basis, --auxbasis, --grid-level (``jaxks scf`` without a model, ``jaxks label``).
BASIS_DEFAULTS = dict(basis="def2-svp", auxbasis="def2-universal-jkfit", grid_level=3)


def add_basis_arguments(p, model_defaults: bool = False) -> None:
    """--basis, --auxbasis, --grid-level with jaxks's defaults (shared by scf and data label).

    ``model_defaults``: leave them None when not given, so that a DeePKS model's own settings
    can fill them in (:func:`resolve_model_settings`)."""
    d = {k: (None if model_defaults else v) for k, v in BASIS_DEFAULTS.items()}
    note = ", or the model's" if model_defaults else ""
    p.add_argument("--basis", default=d["basis"],
                   help=f"orbital basis (default: def2-svp{note})")
    p.add_argument("--auxbasis", default=d["auxbasis"],
                   help=f"density-fitting basis (default: def2-universal-jkfit{note})")
    p.add_argument("--grid-level", type=int, default=d["grid_level"],
                   help=f"PySCF grid level 0-9 (default: 3{note})")


def resolve_model_settings(args, model) -> None:
    """Fill --basis, --auxbasis, --grid-level left out by the user: the model's training
    settings when there is a model, else :data:`BASIS_DEFAULTS`. A setting given explicitly
    that differs from the model's is a ModelFileError (exit status 2)."""
    from jaxks.models import check_settings, model_settings

    trained = {}
    if model is not None:
        check_settings(model, args.model, basis=args.basis, auxbasis=args.auxbasis,
                       grid_level=args.grid_level, base=args.xc)
        trained = model_settings(model)
    for key, default in BASIS_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, trained.get(key, default))


def add_system_arguments(p) -> None:
    p.add_argument("--xc", default=None, help="functional (default: pbe, or the model's base)")
    add_basis_arguments(p, model_defaults=True)
    p.add_argument("--charge", type=int, default=0, help="total charge (default: 0)")


def add_scf_arguments(p) -> None:
    p.add_argument("--max-cycles", type=int, default=100)
    p.add_argument("--conv-tol", type=float, default=1e-10, help="energy change tolerance (Eh)")
    p.add_argument("--level-shift", type=float, default=0.0, help="virtual level shift (Eh)")
    p.add_argument("--damping", type=float, default=0.0, help="density damping factor 0-1")
    p.add_argument("--no-fallback", action="store_true",
                   help="plain DIIS only: no automatic level shift / damping when the SCF "
                   "stalls (the rung used is reported as 'fallback')")


def scf_options(args):
    from jaxks.scf import SCFOptions

    return SCFOptions(max_cycles=args.max_cycles, e_tol=args.conv_tol,
                      level_shift=args.level_shift, damping=args.damping,
                      fallback=not getattr(args, "no_fallback", False))


def summarize(system, result, timings: dict, window: int = 4) -> dict:
    """A JSON-ready summary of an SCF result (energies in Eh and eV)."""
    eps = np.asarray(result.mo_energy)
    n_occ = result.n_occ
    # HOMO/LUMO from the host copy: result.homo etc. would each compile a small XLA program
    # (index clamped as JAX clamps it: a basis without virtual orbitals reports a zero gap)
    homo, lumo = float(eps[n_occ - 1]), float(eps[min(n_occ, eps.size - 1)])
    lo, hi = max(n_occ - window, 0), min(n_occ + window, eps.size)
    orbitals = [dict(index=i, label=_label(i, n_occ), occupation=2.0 if i < n_occ else 0.0,
                     energy_eh=float(eps[i]), energy_ev=float(eps[i] * EV_PER_HARTREE))
                for i in range(lo, hi)]
    p = result.parts
    cell = dict(periodic=False)
    if system.lattice is not None:
        # a periodic cell: energies per cell, orbitals at the Gamma point
        cell = dict(periodic=True, kpoint="gamma", energy_per="cell",
                    cell_angstrom=(np.asarray(system.lattice) * ANGSTROM_PER_BOHR).tolist())
    return dict(
        units=dict(energy="Hartree (eV where the key says so)", length="Angstrom (input)"),
        formula=system.formula, n_atoms=system.n_atoms, n_electrons=system.n_electrons,
        **cell,
        basis=system.basis, auxbasis=system.auxbasis, grid_level=system.grid_level,
        energy_eh=float(result.energy),
        energy_parts_eh=dict(one_electron=float(p.one_electron), coulomb=float(p.coulomb),
                             xc=float(p.xc), exact_exchange=float(p.exact_exchange),
                             correction=float(p.term), nuclear=float(p.nuclear)),
        homo_eh=homo, lumo_eh=lumo, gap_ev=(lumo - homo) * EV_PER_HARTREE, orbitals=orbitals,
        # every orbital, so scripts can take any window or a density of states
        mo_energy_eh=[float(e) for e in eps],
        mo_occ=[2.0 if i < n_occ else 0.0 for i in range(eps.size)],
        converged=bool(result.converged), cycles=int(result.cycles),
        # rung of the automatic convergence fallback the SCF ended on (jaxks.scf.FALLBACK_LADDER)
        fallback=dict(rung=int(result.fallback), **_fallback_settings(int(result.fallback))),
        timings_s={k: float(v) for k, v in timings.items()})


def _fallback_settings(rung: int) -> dict:
    from jaxks.scf import FALLBACK_LADDER

    if rung == 0:
        return dict(level_shift_eh=None, damping=None)
    shift, damp = FALLBACK_LADDER[rung - 1]
    return dict(level_shift_eh=shift, damping=damp)


def _label(i, n_occ):
    if i < n_occ:
        return "HOMO" if i == n_occ - 1 else f"HOMO-{n_occ - 1 - i}"
    return "LUMO" if i == n_occ else f"LUMO+{i - n_occ}"


def print_summary(s: dict, out=None) -> None:
    w = (out or sys.stdout).write
    w(f"{s['formula']}: {s['n_atoms']} atoms, {s['n_electrons']} electrons, basis {s['basis']}, "
      f"auxbasis {s['auxbasis']}, grid level {s['grid_level']}\n")
    if s.get("periodic"):
        w("Periodic cell, Gamma point; energies per cell. Lattice vectors (Angstrom):\n")
        for k, v in enumerate(s["cell_angstrom"]):
            w(f"  a{k + 1} {v[0]:14.8f} {v[1]:14.8f} {v[2]:14.8f}\n")
    w(f"Total energy      {s['energy_eh']:20.10f} Eh\n")
    for k, v in s["energy_parts_eh"].items():
        w(f"  {k:<15s} {v:20.10f} Eh\n")
    w("Orbital energies around the gap:\n")
    for o in reversed(s["orbitals"]):
        w(f"  {o['label']:<8s} occ {o['occupation']:.0f}  {o['energy_eh']:14.8f} Eh "
          f"{o['energy_ev']:12.4f} eV\n")
    w(f"HOMO-LUMO gap     {s['gap_ev']:.4f} eV\n")
    status = "yes" if s["converged"] else "NO  <-- NOT CONVERGED"
    fb = s.get("fallback", {}).get("rung", 0)
    note = "" if not fb else (f", convergence fallback rung {fb}: level shift "
                              f"{s['fallback']['level_shift_eh']} Eh, damping "
                              f"{s['fallback']['damping']}")
    w(f"Converged         {status} ({s['cycles']} cycles{note})\n")
    t = s["timings_s"]
    w("Timings           " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()) + "\n")


def run(args) -> int:
    from jaxks.integrals import compute_integrals, pyscf_system
    from jaxks.scf import run_scf
    from jaxks.system import System, require_cluster

    model = None
    if args.model:
        from jaxks.models import load_model

        model = load_model(args.model, base_xc=args.xc)
    resolve_model_settings(args, model)
    xc = args.xc or (model.base_xc if model else "pbe")
    functional = resolve_functional(xc)
    system = System.from_xyz(args.xyz, basis=args.basis, auxbasis=args.auxbasis,
                             grid_level=args.grid_level, charge=args.charge)
    if args.forces:  # before the SCF, not after it
        require_cluster(system, "forces")
    t0 = time.perf_counter()
    ints = compute_integrals(system, omega=sr_omega(functional))
    # a cell's projector overlaps are lattice sums at Γ (jaxks.integrals.cell)
    term, params = model.prepare(pyscf_system(system)) if model else (None, None)
    t_int = time.perf_counter() - t0
    result, timings = run_scf(ints, functional, term=term, params=params, options=scf_options(args),
                              warn=False, return_timings=True)
    times = dict(integrals=t_int, compile=timings["compile"], scf=timings["scf"])
    forces = None
    if args.forces:
        t0 = time.perf_counter()
        forces = compute_forces(system, ints, result, functional, model, args.grid_response)
        times["forces"] = time.perf_counter() - t0
    s = summarize(system, result, times)
    s["xc"] = xc
    s["model"] = args.model
    if forces is not None:
        from jaxks.forces import forces_json

        s.update(forces_json(forces), grid_response=args.grid_response)
    emit(s, args.json, forces=forces, symbols=system.symbols)
    if not s["converged"]:
        print(f"jaxks: warning: SCF did not converge in {s['cycles']} cycles", file=sys.stderr)
        return 3
    return 0


def resolve_functional(name: str):
    """The registered functional ``name``; an unknown name is an InputError (exit status 2)."""
    from jaxks.system import InputError
    from jaxks.xc import get_xc

    try:
        return get_xc(name)
    except ValueError as err:
        raise InputError(str(err)) from None


def compute_forces(system, ints, result, xc, model=None, grid_response=False):
    """Nuclear forces F = −dE/dR [natm, 3] (Hartree/Bohr) of a converged SCF.

    Args:
        system: the :class:`jaxks.system.System` the SCF ran on.
        ints, result: its integrals and :class:`jaxks.scf.SCFResult`.
        xc: the functional the SCF used.
        model: the :class:`jaxks.deepks.io.DeePKSModel` of a DeePKS-SCF; its correction's
            explicit geometry dependence −∂E_δ/∂R is added.
        grid_response: include the motion of the integration grid with the atoms (then F is
            the exact derivative of the energy on the grid; PySCF's ``grid_response=True``).
    Returns:
        numpy array [natm, 3], Hartree/Bohr.
    """
    from jaxks.forces import force_integrals, forces
    from jaxks.system import require_cluster

    require_cluster(system, "forces")
    xc = resolve_functional(xc)
    fints = force_integrals(system, grid_level=system.grid_level if grid_response else None,
                            omega=sr_omega(xc))
    f = forces(result, ints, fints, xc, grid_response=grid_response)
    if model is not None:
        f = f + model.forces(system.to_pyscf(), result.gamma)
    return np.asarray(f)


def emit(summary: dict, json_target, forces=None, symbols=None) -> None:
    """Print the table (and forces), or JSON to stdout ('-'), or the table and a JSON file."""
    if json_target == "-":
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print_summary(summary)
    if forces is not None:
        from jaxks.forces import format_forces

        print(format_forces(symbols, forces))
    if json_target is not None:
        with open(json_target, "w") as f:
            json.dump(summary, f, indent=2)

"""``jaxks sample``, ``jaxks label`` and ``jaxks export``: water datasets (see jaxks/data/)."""

from __future__ import annotations

import sys

from jaxks.commands.scf import add_basis_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "sample", help="generate water geometries (monomers, clusters) from liquid-water MD",
        description="Classical Langevin dynamics of liquid water (flexible SPC/Fw, periodic box) "
        "at T; clusters of n whole molecules are carved around random centres, a fraction "
        "stretched/compressed; --relax minimises each in vacuum (compact H-bonded minima). "
        "Output: multi-frame extended xyz in Angstrom. The same arguments give identical "
        "output.")
    p.add_argument("kind", choices=["water"], help="what to sample (only 'water' for now)")
    p.add_argument("--n", type=int, default=None,
                   help="molecules per cluster, 1-64 (default: 1)")
    p.add_argument("--box", type=int, default=None, metavar="N",
                   help="instead of clusters: periodic cubic boxes of N molecules (1-64) at liquid "
                   "density (8: a 6.21 Angstrom box), written with Lattice=\"...\" "
                   "pbc=\"T T T\"")
    p.add_argument("--frames", type=int, default=10, help="number of geometries (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default: 300)")
    p.add_argument("--distort", type=float, default=None,
                   help="fraction of stretched/compressed frames, 0-1 (default: 0.2, or 0 with "
                   "--relax; clusters only; with --relax the relaxed cluster is distorted)")
    p.add_argument("--relax", action="store_true",
                   help="minimise each carved cluster in vacuum with SPC/Fw (all pairs, plain "
                   "Coulomb; FIRE after a short annealing): compact H-bonded local minima "
                   "(rings, prisms, cages) instead of liquid fragments; clusters only")
    p.add_argument("--anneal-temperature", type=float, default=None, metavar="K",
                   help="with --relax: vacuum Langevin temperature before the minimisation "
                   "(default: 100)")
    p.add_argument("--anneal-time", type=float, default=None, metavar="FS",
                   help="with --relax: annealing time, fs; 0 minimises the carved cluster "
                   "directly (default: 2000)")
    p.add_argument("--anneal-only", action="store_true",
                   help="with --relax: keep the annealed cluster (a low-temperature vacuum MD "
                   "snapshot next to a compact minimum) instead of minimising it: thermal "
                   "variety where few minima exist (every carved trimer relaxes to the same "
                   "cyclic trimer)")
    p.add_argument("--interval", type=float, default=100.0,
                   help="simulated time between snapshots, fs (default: 100)")
    p.add_argument("--equilibration", type=float, default=3000.0,
                   help="simulated time before the first snapshot, fs (default: 3000)")
    p.add_argument("--intramolecular", choices=["spcfw", "dft"], default="spcfw",
                   help="molecular geometry: the force field's own (O-H 1.03 +- 0.03 A at 300 "
                   "K) or mapped onto DFT-like O-H and HOH (O-H ~0.99 A, the geometries of "
                   "optimised and DFT-MD water; after --relax) (default: spcfw)")
    p.add_argument("-o", "--out", default=None,
                   help="output xyz file (default: water-n<N>-seed<SEED>.xyz; '-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run_sample)

    p = sub.add_parser(
        "label", help="compute base/target DFT labels (energies, forces, Fock, orbitals)",
        description="For every frame: PySCF density-fitted RKS with the base and the target "
        "functional (same basis, auxiliary basis and grid): total energy, forces, Fock matrix, "
        "overlap, orbital energies and coefficients, density matrix, converged flag, cycles. "
        "Resumable: repeat the same command after an interruption and finished frames are "
        "skipped. Atomic units on disk (Bohr, Hartree). A periodic frame (extxyz with "
        "Lattice=) is labelled at the Gamma point with PySCF's cell code (energies per cell, "
        "the lattice stored; no forces: stored as NaN, PySCF has no Gamma-point GDF "
        "gradients).")
    p.add_argument("input", help="xyz/extxyz file (Angstrom), DeePKS-kit system folder, "
                   "builtin:NAME, or any file ASE reads")
    p.add_argument("--base", default="pbe", help="base functional (default: pbe)")
    p.add_argument("--target", default="hse06", help="target functional (default: hse06)")
    add_basis_arguments(p)
    p.add_argument("--engine", choices=["pyscf", "jaxks"], default="pyscf",
                   help="SCF engine: PySCF (default) or jaxks (PySCF integrals only; both "
                   "functionals must be in the jaxks registry)")
    p.add_argument("--conv-tol", type=float, default=1e-10, help="SCF energy tolerance, Eh "
                   "(default: 1e-10)")
    p.add_argument("--max-cycles", type=int, default=100, help="SCF iteration limit (default: 100)")
    p.add_argument("--grid-response", action="store_true",
                   help="include the grid-weight response in the forces")
    p.add_argument("--charge", type=int, default=0,
                   help="total charge when the input does not give one (default: 0)")
    p.add_argument("--exxdiv", default="ewald", choices=["ewald", "none"],
                   help="periodic frames: PySCF's treatment of the G = 0 exchange divergence "
                   "(default: ewald, PySCF's; its GDF supports ewald or none)")
    p.add_argument("--frames", default=None, metavar="SLICE",
                   help="label only these frames, Python slice syntax, e.g. 0:10 or ::2")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="OpenMP threads per process (default: all cores / workers)")
    p.add_argument("--out", required=True, help="dataset folder (created or resumed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_label)

    p = sub.add_parser(
        "export", help="export a labelled dataset to another layout (DeePKS-kit)",
        description="Write every composition group as a DeePKS-kit system folder: atom.npy "
        "(or coord.npy + type.raw), unit.raw, energy.npy and force.npy (target labels, "
        "Hartree and Hartree/Bohr), dm.npy, plus e_base.npy/f_base.npy (base labels).")
    p.add_argument("dataset", help="dataset folder written by `jaxks label`")
    p.add_argument("--to", choices=["deepkskit"], default="deepkskit", help="layout")
    p.add_argument("out", help="output folder")
    p.add_argument("--unit", choices=["angstrom", "bohr"], default="angstrom",
                   help="coordinate unit on disk, recorded in unit.raw (default: angstrom)")
    p.add_argument("--layout", choices=["atom", "coord"], default="atom",
                   help="atom.npy (Z, x, y, z) or coord.npy + type.raw (default: atom)")
    p.add_argument("--include-unconverged", action="store_true",
                   help="also export frames whose SCF did not converge")
    p.add_argument("--descriptors", action="store_true",
                   help="also write DeePKS-kit training inputs: dm_eig.npy (descriptors of the "
                   "base density, default projector basis), l_e_delta.npy, l_f_delta.npy, conv.npy")
    p.set_defaults(func=run_export)


def run_sample(args) -> int:
    from jaxks.data import sampling
    from jaxks.data.sampling import sample_water, sample_water_box, write_frames_xyz
    from jaxks.system import InputError

    progress = None if args.quiet else sys.stderr
    anneal = (args.anneal_temperature, args.anneal_time)
    if not args.relax and (anneal != (None, None) or args.anneal_only):
        raise InputError("--anneal-temperature, --anneal-time and --anneal-only belong to "
                         "--relax")
    if args.box is not None:
        if args.relax:
            raise InputError("--relax minimises isolated clusters in vacuum; periodic boxes "
                             "are liquid MD snapshots (use --n with --relax)")
        if args.n is not None:
            raise InputError("give --n (clusters) or --box (periodic boxes), not both")
        if args.distort:
            raise InputError("--distort makes stretched/compressed clusters; periodic boxes "
                             "are MD snapshots only")
        frames = sample_water_box(args.box, args.frames, seed=args.seed,
                                  temperature=args.temperature, interval_fs=args.interval,
                                  equilibration_fs=args.equilibration, progress=progress,
                                  intramolecular=args.intramolecular)
        what, out = f"periodic (H2O){args.box} boxes", args.out or (
            f"water-box{args.box}-seed{args.seed}.extxyz")
    else:
        n = 1 if args.n is None else args.n
        frames = sample_water(
            n, args.frames, seed=args.seed, temperature=args.temperature, distort=args.distort,
            interval_fs=args.interval, equilibration_fs=args.equilibration, progress=progress,
            intramolecular=args.intramolecular, relax=args.relax,
            anneal_temperature=(sampling.ANNEAL_TEMPERATURE if anneal[0] is None
                                else anneal[0]),
            anneal_fs=sampling.ANNEAL_FS if anneal[1] is None else anneal[1],
            minimise=not args.anneal_only)
        what = f"{'relaxed ' if args.relax else ''}(H2O){n}"
        out = args.out or f"water-n{n}-seed{args.seed}.xyz"
    write_frames_xyz(frames, sys.stdout if out == "-" else out)
    if out != "-" and not args.quiet:
        print(f"wrote {len(frames)} frames of {what} to {out}", file=sys.stderr)
    return 0


def _parse_slice(text: str) -> slice:
    from jaxks.system import InputError

    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise InputError(f"--frames: {text!r} is not a slice like 0:10 or ::2") from None
    if len(parts) == 1:
        return slice(parts[0], parts[0] + 1 if parts[0] != -1 else None)
    if len(parts) > 3:
        raise InputError(f"--frames: {text!r} is not a slice like 0:10 or ::2")
    return slice(*parts)


def run_label(args) -> int:
    from jaxks.data.labels import LabelSettings
    from jaxks.data.pipeline import label_frames
    from jaxks.data.readers import read_frames
    from jaxks.system import require_cluster

    settings = LabelSettings(base=args.base, target=args.target, basis=args.basis,
                             auxbasis=args.auxbasis, grid_level=args.grid_level,
                             conv_tol=args.conv_tol, max_cycle=args.max_cycles,
                             grid_response=args.grid_response, labeller=args.engine,
                             exxdiv=args.exxdiv)
    systems = read_frames(args.input, charge=args.charge)
    if settings.labeller != "pyscf":  # periodic frames: PySCF's cell code at Γ only
        for s in systems:
            require_cluster(s, f"jaxks label --engine {settings.labeller}")
    indices = list(range(len(systems)))
    if args.frames:
        indices = indices[_parse_slice(args.frames)]
        systems = [systems[i] for i in indices]
    progress = None if args.quiet else sys.stderr
    report = label_frames(systems, args.out, settings, workers=args.workers, progress=progress,
                          source=args.input, indices=indices, threads=args.threads)
    msg = (f"label: {len(report.computed)} frames computed, {len(report.skipped)} already done, "
           f"{len(report.unconverged)} unconverged (kept, flagged), {len(report.failed)} failed; "
           f"{report.seconds:.1f} s; dataset {args.out}")
    print(msg, file=sys.stderr)
    for i, err in sorted(report.failed.items()):
        print(f"label: frame {i} failed: {err}", file=sys.stderr)
    if report.unconverged:
        print(f"label: warning: unconverged frames {report.unconverged} (flagged in the data; "
              "export leaves them out)", file=sys.stderr)
    return 1 if report.failed else 0


def run_export(args) -> int:
    from jaxks.data.deepkskit import export_deepkskit, export_descriptors

    written = export_deepkskit(args.dataset, args.out, unit=args.unit, layout=args.layout,
                               include_unconverged=args.include_unconverged)
    if args.descriptors:
        export_descriptors(args.dataset, args.out, include_unconverged=args.include_unconverged)
    for group, n in written.items():
        print(f"export: {group}: {n} frames -> {args.out}/{group}", file=sys.stderr)
    if not written:
        print("export: nothing to export (no converged frames)", file=sys.stderr)
        return 1
    return 0

"""Fast trials of the water-model training recipe: one small fixed data set, many short runs,
one line of a results table each.

    python benchmarks/recipe_trials.py [trial ...] [--root data/study] [--out data/trials]
        [--table benchmarks/results/accuracy.md] [--list]

Data: the labelled folders of ``benchmarks/water_study.py`` under ``--root`` (labels/train_*
for training, labels/test_* held out; run its ``sample label`` stages first). Each trial writes
a complete ``jaxks train`` config, trains (``jaxks train``), evaluates the model by a full
DeePKS-SCF of every held-out frame (``jaxks eval``) and appends one row to the trial table in
``--table`` (between the ``recipe-trials`` markers): the recipe, its steps and wall time, and
per held-out set the eigenvalue RMSE, gap MAE, energy MAE, force RMSE and the converged
fraction. Everything is resumable: a finished training or evaluation is skipped, an interrupted
one resumes (``jaxks train --resume``).

Normalised weights: a trial may give its loss weights as ``w_k`` relative to the base
functional: λ_k = w_k / L_k(PBE), with L_k(PBE) the value of term k for PBE against HSE06 on the
training frames (energy per atom after the per-element constants, forces, valence+LUMO
eigenvalues, gap, Hamiltonian), computed here from the labels. So w = 1 for every term weighs
every term by how far PBE is from its target.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

#: The trials: name -> dict(stages=[(mode, steps, overrides)], norm=relative weights or None,
#: weights=absolute λ (used when norm is None), and settings of [train]/[optim]/[model]/[loss]).
BASE = dict(batch=8, refresh=500, lr=1e-3, decay_steps=500, decay_rate=0.8, n_virtual=1,
            output_scale=100.0, hidden=(100, 100, 100), descriptor="schatten")
NORM_EF = dict(energy=1.0, force=1.0, eigenvalue=1.0, gap=0.3)
TRIALS = {
    # every term normalised by PBE's error: energy, forces and orbitals weighed alike
    "T1-norm-EF": dict(stages=[("fixed", 2000, {})], norm=NORM_EF),
    # the demo's absolute weights (method.md §12 row 1), smooth descriptor
    "T2-demo": dict(stages=[("fixed", 2000, {})],
                    weights=dict(energy=30.0, eigenvector=0.1, eigenvalue=0.1)),
    # staged: orbitals first, then energy and forces added with the orbital terms kept
    "T3-staged": dict(stages=[("fixed", 1000, dict(energy=0.0, force=0.0)),
                              ("fixed", 1000, dict(learning_rate=5e-4))], norm=NORM_EF),
    # the sorted-eigenvalue descriptor with T1's recipe: does the smooth descriptor cost accuracy?
    "T4-eig": dict(stages=[("fixed", 2000, {})], descriptor="eig", norm=NORM_EF),
    # fixed-density, then an end-to-end (through-SCF) stage on the same weights, batch 2
    "T5-fixed+e2e": dict(stages=[("fixed", 1900, {}),
                                 ("scf", 100, dict(learning_rate=2e-4, batch_size=2))],
                         norm=NORM_EF),
    # energy and forces weighed 3x
    "T6-norm-EF3": dict(stages=[("fixed", 2000, {})],
                        norm=dict(energy=3.0, force=3.0, eigenvalue=1.0, gap=0.3)),
    # network output divided by 10 instead of 100 (larger corrections within reach)
    "T7-os10": dict(stages=[("fixed", 2000, {})], output_scale=10.0, norm=NORM_EF),
    # two virtual orbitals in the eigenvalue window
    "T8-2virt": dict(stages=[("fixed", 2000, {})], n_virtual=2, norm=NORM_EF),
    # refresh every 100 steps instead of 500
    "T9-r100": dict(stages=[("fixed", 2000, {})], refresh=100, norm=NORM_EF),
    # after T1 (energy/forces learnt, eigenvalues 2x) and T2 (eigenvalues 12-15x, energy and
    # forces poor): the orbital terms weighed 10-30x more than PBE's relative error
    "T10-eps10": dict(stages=[("fixed", 2000, {})],
                      norm=dict(energy=1.0, force=1.0, eigenvalue=10.0, gap=1.0)),
    "T11-eps10-psi": dict(stages=[("fixed", 2000, {})],
                          norm=dict(energy=1.0, force=1.0, eigenvalue=10.0, gap=1.0,
                                    eigenvector=1.0)),
    "T12-eps30": dict(stages=[("fixed", 2000, {})],
                      norm=dict(energy=1.0, force=1.0, eigenvalue=30.0, gap=3.0)),
}
#: Series B: the same levers on (H2O)1–4 training data (all six train_* sets of the study),
#: held out (H2O)1–4 of other seeds and (H2O)8: transfer in size, and the valence-block
#: Hamiltonian term H_v (the Hamiltonian in the target's orbital window, no core blocks).
TRIALS_B = {
    # T12's weights, the best orbital/energy balance of series A, on the larger data
    "B1-eps30": dict(stages=[("fixed", 2000, {})],
                     norm=dict(energy=1.0, force=1.0, eigenvalue=30.0, gap=3.0)),
    # the window Hamiltonian in place of the eigenvalue term
    "B2-Hv30": dict(stages=[("fixed", 2000, {})],
                    norm=dict(energy=1.0, force=1.0, valence_hamiltonian=30.0, gap=3.0)),
    # both orbital terms
    "B3-eps10-Hv10": dict(stages=[("fixed", 2000, {})],
                          norm=dict(energy=1.0, force=1.0, eigenvalue=10.0,
                                    valence_hamiltonian=10.0, gap=3.0)),
    # B2, its last 100 steps end-to-end (through the SCF, batch 2)
    "B4-Hv30+e2e": dict(stages=[("fixed", 1900, {}),
                                ("scf", 100, dict(learning_rate=2e-4, batch_size=2))],
                        norm=dict(energy=1.0, force=1.0, valence_hamiltonian=30.0, gap=3.0)),
    # B2 with energy and forces weighed 3x
    "B5-EF3-Hv30": dict(stages=[("fixed", 2000, {})],
                        norm=dict(energy=3.0, force=3.0, valence_hamiltonian=30.0, gap=3.0)),
    # B2 with a wider network
    "B6-Hv30-w200": dict(stages=[("fixed", 2000, {})], hidden=(200, 200, 200),
                         norm=dict(energy=1.0, force=1.0, valence_hamiltonian=30.0, gap=3.0)),
}
#: Series C: does a two-centre (pair) term carry what on-site descriptors cannot — the energy
#: of hydrogen bonds (series B: every model's energy error grows on compact clusters larger than
#: it trained on, and orbital weights make it 3x worse than PBE + element constants)? Trained on
#: (H2O)1-4 MD fragments plus 100 K compact (H2O)3-4 snapshots; held out compact minima of 3, 6
#: and 10 waters and MD-carved (H2O)4, 8. Each recipe with and without the pair term.
PAIR = dict(pair_radial=(6, 7, 8, 9, 10, 11))
NORM_EF_ONLY = dict(energy=1.0, force=1.0)
NORM_HV = dict(energy=1.0, force=1.0, valence_hamiltonian=30.0, gap=3.0)
TRIALS_C = {
    # energy and forces only: the cleanest test of energy transfer
    "C1-EF": dict(stages=[("fixed", 1000, {})], norm=NORM_EF_ONLY),
    "C2-EF-pair": dict(stages=[("fixed", 1000, {})], norm=NORM_EF_ONLY, **PAIR),
    # B2's recipe (window Hamiltonian 30x): energy against orbitals, with and without pairs
    "C3-Hv30": dict(stages=[("fixed", 1000, {})], norm=NORM_HV),
    "C4-Hv30-pair": dict(stages=[("fixed", 1000, {})], norm=NORM_HV, **PAIR),
    # C1 on a per-element linear prefit (benchmarks/pair_probe.py: at the PBE density that
    # form alone gives 0.01-0.3 meV/atom held out), moderately regularised
    "C5-EF-prefitZ": dict(stages=[("fixed", 1000, {})], norm=NORM_EF_ONLY,
                          prefit_per_element=True, ridge_alpha=1e-3),
    # C3 (window Hamiltonian 30x) on C5's per-element prefit, and at 10x
    "C6-Hv30-prefitZ": dict(stages=[("fixed", 1000, {})], norm=NORM_HV,
                            prefit_per_element=True, ridge_alpha=1e-3),
    "C7-Hv10-prefitZ": dict(stages=[("fixed", 1000, {})],
                            norm=dict(energy=1.0, force=1.0, valence_hamiltonian=10.0, gap=1.0),
                            prefit_per_element=True, ridge_alpha=1e-3),
}
SERIES = {"A": TRIALS, "B": TRIALS_B, "C": TRIALS_C}
TERMS = ("energy", "force", "hamiltonian", "valence_hamiltonian", "eigenvector", "eigenvalue",
         "gap")
SHORT = dict(energy="E", force="F", hamiltonian="H", valence_hamiltonian="H_v", eigenvector="ψ",
             eigenvalue="ε", gap="gap",
             learning_rate="lr", batch_size="batch")
def markers(series: str) -> tuple[str, str]:
    """The accuracy.md markers around a series' table (series A keeps its original ones)."""
    tag = "recipe-trials" if series == "A" else f"recipe-trials-{series}"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def _run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def base_losses(folders) -> dict:
    """Value of each loss term for the base functional against the target on ``folders``
    (the normalisers of the trials' relative weights), in the trainer's units (Hartree, Bohr).

    Energy per atom after least-squares per-element constants (what the model's element
    constants remove at step 0); eigenvalues over valence occupied + LUMO; forces per
    component; Hamiltonian ‖ΔH‖²/N_basis; valence Hamiltonian ‖C_wᵀ ΔH C_w‖²/N_window over the
    same window as the eigenvalues; eigenvector term taken as 1 (dimensionless, O(1)).
    """
    from jaxks.data.store import Dataset
    from jaxks.train.losses import n_core_orbitals

    de, counts, natoms, df, deps, dgap, dh, dhv = [], [], [], [], [], [], [], []
    for folder in folders:
        ds = Dataset(folder)
        for k in ds.indices:
            fr, _ = ds.frame(k)
            z = np.asarray(fr["atomic_numbers"])
            n_o, n_h = int(np.sum(z == 8)), int(np.sum(z == 1))
            de.append(float(fr["target/energy"]) - float(fr["base/energy"]))
            counts.append([n_h, n_o])
            natoms.append(n_h + n_o)
            df.append(np.mean((np.asarray(fr["target/forces"]) -
                               np.asarray(fr["base/forces"])) ** 2))
            occ = np.asarray(fr["base/mo_occ"]) > 0
            n_occ = int(occ.sum())
            core = n_core_orbitals(z)
            et, eb = np.asarray(fr["target/mo_energy"]), np.asarray(fr["base/mo_energy"])
            deps.append(np.mean((et[core:n_occ + 1] - eb[core:n_occ + 1]) ** 2))
            dgap.append(((et[n_occ] - et[n_occ - 1]) - (eb[n_occ] - eb[n_occ - 1])) ** 2)
            dfock = np.asarray(fr["target/fock"]) - np.asarray(fr["base/fock"])
            dh.append(np.sum(dfock ** 2) / et.size)
            c_w = np.asarray(fr["target/mo_coeff"])[:, core:n_occ + 1]
            dhv.append(np.sum((c_w.T @ dfock @ c_w) ** 2) / c_w.shape[1])
    c, *_ = np.linalg.lstsq(np.asarray(counts, float), np.asarray(de), rcond=None)
    resid = (np.asarray(de) - np.asarray(counts, float) @ c) / np.asarray(natoms)
    return dict(energy=float(np.mean(resid ** 2)), force=float(np.mean(df)),
                eigenvalue=float(np.mean(deps)), gap=float(np.mean(dgap)),
                hamiltonian=float(np.mean(dh)), valence_hamiltonian=float(np.mean(dhv)),
                eigenvector=1.0)


def trial_config(name: str, spec: dict, train: list[str], norms: dict | None) -> str:
    s = dict(BASE, **spec)
    if spec.get("norm"):
        weights = {k: s["norm"].get(k, 0.0) / norms[k] for k in TERMS}
    else:
        weights = {k: s["weights"].get(k, 0.0) for k in TERMS}
    weights["density"] = 0.0
    lines = [f"# recipe trial {name}", "[data]", f"train = {json.dumps(train)}", "",
             "[model]", f"hidden = {list(s['hidden'])}", f"output_scale = {s['output_scale']}",
             f'descriptor = "{s["descriptor"]}"']
    if s.get("pair_radial"):
        lines.append(f"pair_radial = {list(s['pair_radial'])}")
    if s.get("prefit_per_element"):
        lines.append("prefit_per_element = true")
    if "ridge_alpha" in s:
        lines.append(f"ridge_alpha = {s['ridge_alpha']!r}")
    lines += ["", "[loss]"]
    lines += [f"{k} = {v!r}" for k, v in weights.items()]
    lines += [f"n_virtual = {s['n_virtual']}", "", "[optim]",
              f"learning_rate = {s['lr']}", f"decay_steps = {s['decay_steps']}",
              f"decay_rate = {s['decay_rate']}", "end_learning_rate = 1e-05", "",
              "[train]", f"batch_size = {s['batch']}", f"refresh_every = {s['refresh']}",
              "checkpoint_every = 250", "log_every = 100", ""]
    for mode, steps, over in s["stages"]:
        lines += ["[[stages]]", f'mode = "{mode}"', f"steps = {steps}"]
        for k, v in over.items():
            if k in TERMS:  # stage weights are relative too when the trial is normalised
                v = v / norms[k] if spec.get("norm") else v
            lines.append(f"{k} = {v!r}")
        lines.append("")
    return "\n".join(lines)


def describe(spec: dict) -> str:
    s = dict(BASE, **spec)
    if spec.get("norm"):
        w = "w " + ", ".join(f"{SHORT[k]} {v:g}" for k, v in s["norm"].items() if v)
    else:
        w = "λ " + ", ".join(f"{SHORT[k]} {v:g}" for k, v in s["weights"].items() if v)
    stages = " → ".join(f"{m} {n}" + (f" ({', '.join(f'{SHORT.get(k, k)} {v:g}' for k, v in o.items())})"
                                      if o else "") for m, n, o in s["stages"])
    extra = []
    for key in ("n_virtual", "output_scale", "refresh", "descriptor", "hidden", "pair_radial",
                "prefit_per_element", "ridge_alpha"):
        if key in spec:
            extra.append(f"{key} {spec[key]}")
    return f"{w}; {stages}" + (f"; {', '.join(extra)}" if extra else "")


def label_folders(root: str, kind: str, names) -> list[str]:
    """``root``/labels/``kind``_* folders, or only those named (without the prefix)."""
    if names:
        return [os.path.join(root, "labels", f"{kind}_{n}") for n in names]
    return sorted(glob.glob(os.path.join(root, "labels", f"{kind}_*")))


class Records:
    """Training and held-out frames loaded once for every trial of the process (integrals,
    projector overlaps and derivative integrals of each frame: minutes per data set), keyed
    by the orbital window they were prepared with."""

    def __init__(self, train: list[str], tests: list[str]):
        self.train, self.tests, self._cache = train, tests, {}

    def get(self, kind: str, n_virtual: int):
        key = (kind, n_virtual)
        if key not in self._cache:
            from jaxks.integrals.projectors import default_basis
            from jaxks.train.frames import load_records

            if kind == "train":
                self._cache[key] = load_records(self.train, default_basis(), ("H", "O"),
                                                with_forces=True, n_virtual=n_virtual,
                                                progress=sys.stderr)
            else:
                self._cache[key] = {os.path.basename(t): load_records(
                    [t], default_basis(), ("H", "O"), n_virtual=n_virtual) for t in self.tests}
        return self._cache[key]


def run_trial(name: str, spec: dict, root: str, out_root: str, norms: dict | None,
              train: list[str], tests: list[str], records: Records | None = None) -> dict:
    """Train and evaluate one trial (in this process when ``records`` is given, else through
    the ``jaxks train`` / ``jaxks eval`` commands); returns its table row."""
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    if records is not None:
        return _run_in_process(name, spec, out, norms, train, tests, records)
    cfg = os.path.join(out, "input.toml")
    with open(cfg, "w") as f:
        f.write(trial_config(name, spec, train, norms))
    model = os.path.join(out, "model.npz")
    if not os.path.exists(model):
        resume = ["--resume"] if os.path.exists(os.path.join(out, "checkpoint.npz")) else []
        t0 = time.perf_counter()
        _run(["jaxks", "train", cfg, "--out", out] + resume)
        with open(os.path.join(out, "wall_s.txt"), "a") as f:
            f.write(f"{time.perf_counter() - t0:.1f}\n")
    for test in tests:
        label = os.path.basename(test)
        done = os.path.join(out, "eval", f"eval-{label}.json")
        if not os.path.exists(done):
            _run(["jaxks", "eval", model, test, "--out", os.path.join(out, "eval"), "--label",
                  label, "--no-timing"])
    return _row(name, spec, out, train, tests)


def _run_in_process(name, spec, out, norms, train, tests, records: Records) -> dict:
    import dataclasses

    from jaxks.deepks.io import load_model
    from jaxks.train.config import load_config
    from jaxks.train.evaluate import evaluate
    from jaxks.train.loop import train as train_model

    cfg_path = os.path.join(out, "input.toml")
    with open(cfg_path, "w") as f:
        f.write(trial_config(name, spec, train, norms))
    cfg = load_config(cfg_path)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out=out))
    n_virtual = dict(BASE, **spec)["n_virtual"]
    model_path = os.path.join(out, "model.npz")
    if not os.path.exists(model_path):
        resume = os.path.exists(os.path.join(out, "checkpoint.npz"))
        t0 = time.perf_counter()
        print(f"recipe_trials: training {name}", file=sys.stderr, flush=True)
        train_model(cfg, records.get("train", n_virtual), resume=resume)
        with open(os.path.join(out, "wall_s.txt"), "a") as f:
            f.write(f"{time.perf_counter() - t0:.1f}\n")
    model = load_model(model_path)
    for label, recs in records.get("test", n_virtual).items():
        done = os.path.join(out, "eval", f"eval-{label}.json")
        if not os.path.exists(done):
            print(f"recipe_trials: evaluating {name} on {label}", file=sys.stderr, flush=True)
            evaluate(model, recs, out=os.path.join(out, "eval"), label=label)
    return _row(name, spec, out, train, tests)


def _row(name, spec, out, train, tests) -> dict:
    row = dict(name=name, recipe=describe(spec), frames=sum(_count(t) for t in train),
               wall_s=sum(float(x) for x in open(os.path.join(out, "wall_s.txt")).read().split()),
               sets={})
    for test in tests:
        label = os.path.basename(test)
        with open(os.path.join(out, "eval", f"eval-{label}.json")) as f:
            row["sets"][label] = json.load(f)["metrics"]
    with open(os.path.join(out, "row.json"), "w") as f:
        json.dump(row, f, indent=1)
    return row


def _count(folder):
    from jaxks.data.store import Dataset

    return len(Dataset(folder).indices)


def format_rows(rows: list[dict]) -> str:
    """The trial table: one line per trial, per held-out set 'eig / gap / E / F / conv'."""
    if not rows:
        return ""
    sets = list(rows[0]["sets"])
    head = ["trial", "recipe", "train frames", "train wall (s)"] + sets
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = rows[0]["sets"]
    lines.append("| PBE | — | — | — | " + " | ".join(_cell(base[s]["base"]) for s in sets) + " |")
    for r in rows:
        lines.append(f"| {r['name']} | {r['recipe']} | {r['frames']} | {r['wall_s']:.0f} | "
                     + " | ".join(_cell(r["sets"][s]["model"]) if s in r["sets"] else "–"
                                  for s in sets) + " |")
    return "\n".join(lines)


def _cell(m) -> str:
    return (f"{m['eig_rmse_mev']:.0f} / {m['gap_mae_mev']:.0f} / "
            f"{m['energy_mae_mev_per_atom']:.1f} / {m['force_rmse_mev_per_a']:.0f} / "
            f"{m['scf_converged']:.2f}")


def geometry_table(folders) -> str:
    """O–H lengths (Å) and HOH angles (degrees) of the water molecules in labelled ``folders``:
    mean ± std and range per set (molecules as stored: O, H, H)."""
    from jaxks.data.store import Dataset
    from jaxks.units import ANGSTROM_PER_BOHR

    lines = ["| set | frames | O–H mean ± std (Å) | O–H range (Å) | HOH mean ± std (°) | HOH range (°) |",
             "|---|---|---|---|---|---|"]
    for folder in folders:
        ds = Dataset(folder)
        r, a = [], []
        for k in ds.indices:
            fr, _ = ds.frame(k, verify=False)
            x = np.asarray(fr["coords"]).reshape(-1, 3, 3) * ANGSTROM_PER_BOHR
            u = x[:, 1:] - x[:, :1]
            d = np.linalg.norm(u, axis=-1)
            r.extend(d.ravel())
            a.extend(np.degrees(np.arccos(np.sum(u[:, 0] * u[:, 1], -1) / d.prod(-1))))
        r, a = np.asarray(r), np.asarray(a)
        lines.append(f"| {os.path.basename(folder)} | {len(ds.indices)} | {r.mean():.3f} ± "
                     f"{r.std():.3f} | {r.min():.3f}–{r.max():.3f} | {a.mean():.1f} ± {a.std():.1f}"
                     f" | {a.min():.1f}–{a.max():.1f} |")
    return "\n".join(lines)


def update_table(path: str, rows: list[dict], norms: dict | None, header: str,
                 series: str = "A") -> None:
    begin, end = markers(series)
    text = open(path).read() if os.path.exists(path) else "# DeePKS-ES accuracy\n"
    block = "\n".join([begin, header, "", format_rows(rows), end])
    if begin in text:
        pre, rest = text.split(begin, 1)
        post = rest.split(end, 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trials", nargs="*", help="trials to run (default: all, in order)")
    p.add_argument("--root", default="data/study")
    p.add_argument("--series", choices=sorted(SERIES), default="A",
                   help="A: (H2O)1-2 training data (table 'recipe-trials'); B: (H2O)1-4 "
                   "(table 'recipe-trials-B'); C: the pair term, (H2O)1-4 + compact 3-4 "
                   "(table 'recipe-trials-C')")
    p.add_argument("--out", default=None, help="default data/trials (A), data/trials/B (B)")
    p.add_argument("--table", default="benchmarks/results/accuracy.md")
    p.add_argument("--list", action="store_true", help="list the trials and exit")
    p.add_argument("--table-only", action="store_true",
                   help="rewrite the table from the finished trials under --out and exit")
    p.add_argument("--subprocess", action="store_true",
                   help="train and evaluate through the jaxks commands, one process per trial "
                   "(default: all trials in this process, frames loaded once)")
    p.add_argument("--train", nargs="+", default=None,
                   help="training sets by name without 'train_' (default: every labels/train_*)")
    p.add_argument("--test", nargs="+", default=None,
                   help="held-out sets by name without 'test_' (default: every labels/test_*)")
    args = p.parse_args(argv)
    trials = SERIES[args.series]
    if args.out is None:
        args.out = "data/trials" if args.series == "A" else f"data/trials/{args.series}"
    if args.list:
        for name, spec in trials.items():
            print(f"{name}: {describe(spec)}")
        return 0
    unknown = [t for t in args.trials if t not in trials]
    if unknown:
        print(f"recipe_trials: unknown trial(s) {unknown}; see --list", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import machine

    train = label_folders(args.root, "train", args.train)
    tests = label_folders(args.root, "test", args.test)
    if not train:
        print(f"recipe_trials: no labelled training folders under {args.root}/labels: run "
              "benchmarks/water_study.py sample label first", file=sys.stderr)
        return 2
    norms = base_losses(train)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "norms.json"), "w") as f:
        json.dump(norms, f, indent=1)
    records = None if (args.subprocess or args.table_only) else Records(train, tests)
    for name in ([] if args.table_only else (args.trials or list(trials))) + [None]:
        if name is not None:
            run_trial(name, trials[name], args.root, args.out, norms, train, tests, records)
        done = [json.load(open(r)) for r in glob.glob(os.path.join(args.out, "*", "row.json"))]
        done.sort(key=lambda r: (int("".join(c for c in r["name"].split("-")[0] if c.isdigit())
                                     or 0), r["name"]))
        cmd = "python benchmarks/recipe_trials.py" + ("" if args.series == "A"
                                                      else f" --series {args.series}")
        header = (f"## Recipe trials{'' if args.series == 'A' else ', series ' + args.series} "
                  f"(`{cmd}`, "
                  f"{time.strftime('%Y-%m-%d')})\n\nMachine: {machine()}, shared with other "
                  "jobs (wall times inflated). Cells: eigenvalue RMSE (meV, valence + LUMO) / gap"
                  " MAE (meV) / energy MAE (meV/atom) / force RMSE (meV/Å) / DeePKS-SCF "
                  "converged fraction, by full DeePKS-SCF of every held-out frame against HSE06."
                  " Train wall: seconds inside training (density refreshes included; loading "
                  "the frames' integrals, once per process, not)."
                  f" Normalisers L(PBE) on the training frames (Hartree, Bohr units): "
                  + ", ".join(f"{k} {v:.3g}" for k, v in norms.items()) + ".\n\n"
                  "Geometries of the training and held-out sets (the trials' data; "
                  "`jaxks sample water --intramolecular dft|spcfw`; optimised water: O–H "
                  "0.96–0.97 Å, HOH 104–105°):\n\n" + geometry_table(train + tests))
        update_table(args.table, done, norms, header, args.series)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

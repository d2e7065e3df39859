"""Accuracy of the base functional and of a DeePKS model against the target, frame by frame.

For each frame the model prediction is a full DeePKS-SCF (jaxks), warm-started from the base
density; the base and target values are the labels. Metrics (units in the names):

    energy_mae_mev_per_atom   mean_f |E_f − E_t,f| / N_atoms,f
    force_rmse_mev_per_a      sqrt(mean over atoms and components of (F − F_t)²)
    eig_rmse_mev              sqrt(mean over frames and window orbitals of (ε − ε_t)²)
    gap_mae_mev               mean_f |gap_f − gap_t,f|,   gap = ε_LUMO − ε_HOMO
    ham_rmse_mev              sqrt(mean over frames and AO pairs of (H − H_t)²)
    scf_converged, mean_cycles  (the model's SCF; the labels' for the base)
"""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.scf import SCFOptions
from jaxks.train.frames import FrameRecord
from jaxks.train.predict import PredictSetup, predict_scf
from jaxks.xc import get_xc
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR, EV_PER_HARTREE

MEV = 1000.0 * EV_PER_HARTREE
MEV_PER_A = 1000.0 * EV_ANGSTROM_PER_HARTREE_BOHR
METRICS = ("energy_mae_mev_per_atom", "force_rmse_mev_per_a", "eig_rmse_mev", "gap_mae_mev",
           "ham_rmse_mev", "scf_converged", "mean_cycles")


def model_predictions(model, records: Sequence[FrameRecord], options: SCFOptions,
                      with_forces: bool = True) -> list[dict]:
    """DeePKS-SCF of every frame by :func:`jaxks.train.predict.predict_scf` (the function
    training uses): energy, forces, fock, mo_energy, converged, cycles, wall_s (NumPy)."""
    out = []
    for r in records:
        f = r.frame
        setup = PredictSetup(term=model.term, xc=get_xc(model.base_xc),
                             with_forces=with_forces and f.fints is not None, options=options)
        # warm start from the base density; a model can pull that start towards another
        # stationary point, so an unconverged run is retried once from the MINAO guess
        t0 = time.perf_counter()
        pred = jax.device_get(_predict(model.params, f, jnp.asarray(r.base["dm"]), setup))
        if not bool(pred["converged"]) and f.ints.guess is not None:
            pred = jax.device_get(_predict(model.params, f, f.ints.guess, setup))
        wall = time.perf_counter() - t0
        item = dict(energy=float(pred["energy"]), fock=np.asarray(pred["fock"]),
                    mo_energy=np.asarray(pred["mo_energy"]), converged=bool(pred["converged"]),
                    cycles=int(pred["cycles"]), wall_s=wall)
        if "forces" in pred:
            item["forces"] = np.asarray(pred["forces"])
        out.append(item)
    return out


_predict = jax.jit(predict_scf, static_argnames=("setup",))


def metrics(preds: Sequence[dict], records: Sequence[FrameRecord]) -> dict:
    """The metrics of the module docstring for predictions ``preds`` against the targets."""
    e_err, f_err, eig_err, gap_err, h_err = [], [], [], [], []
    for p, r in zip(preds, records):
        t, w, n_occ = r.frame.target, r.frame.window, r.frame.ints.n_occ
        e_err.append(abs(p["energy"] - float(t["energy"])) / r.frame.n_atoms)
        if "forces" in p:
            f_err.append((np.asarray(p["forces"]) - np.asarray(t["forces"])).ravel())
        eps, eps_t = np.asarray(p["mo_energy"]), np.asarray(t["mo_energy"])
        eig_err.append(eps[w.start:w.stop] - eps_t[w.start:w.stop])
        gap_err.append(abs((eps[n_occ] - eps[n_occ - 1]) - (eps_t[n_occ] - eps_t[n_occ - 1])))
        h_err.append((np.asarray(p["fock"]) - np.asarray(t["fock"])).ravel())
    rms = lambda xs: float(np.sqrt(np.mean(np.concatenate(xs) ** 2))) if xs else float("nan")  # noqa: E731
    conv = [bool(p.get("converged", True)) for p in preds]
    cycles = [p["cycles"] for p in preds if p.get("cycles") is not None]
    return dict(energy_mae_mev_per_atom=float(np.mean(e_err)) * MEV,
                force_rmse_mev_per_a=rms(f_err) * MEV_PER_A, eig_rmse_mev=rms(eig_err) * MEV,
                gap_mae_mev=float(np.mean(gap_err)) * MEV, ham_rmse_mev=rms(h_err) * MEV,
                scf_converged=float(np.mean(conv)),
                mean_cycles=float(np.mean(cycles)) if cycles else float("nan"),
                frames=len(preds))


def scf_time_ratio(model, records: Sequence[FrameRecord], options: SCFOptions) -> dict:
    """Steady-state wall time of the DeePKS-SCF over the base SCF (jaxks, same run).

    For the first frame of every composition, both SCFs start from the same guess (the
    frame's MINAO density), are compiled first and then timed (best of two runs, forces not
    included). Returns ``{formula: {"base_s", "model_s", "ratio", "base_cycles",
    "model_cycles"}}``.
    """
    from jaxks.deepks.correction import DeePKSParams
    from jaxks.scf import run_scf

    out = {}
    xc = get_xc(model.base_xc)
    for r in records:
        key = r.system.formula
        if key in out:
            continue
        f = r.frame
        theta = DeePKSParams(model=model.params, overlaps=f.overlaps,
                             element_onehot=f.onehot)
        times = {}
        for name, kw in (("base", {}), ("model", dict(term=model.term, params=theta))):
            runs = [run_scf(f.ints, xc, options=options, guess=f.ints.guess, warn=False,
                            return_timings=True, **kw) for _ in range(3)]
            # the first call compiles; its run is not counted
            times[name] = (min(t["scf"] for _, t in runs[1:]), int(runs[-1][0].cycles))
        out[key] = dict(base_s=times["base"][0], model_s=times["model"][0],
                        ratio=times["model"][0] / times["base"][0],
                        base_cycles=times["base"][1], model_cycles=times["model"][1])
    return out


def base_predictions(records: Sequence[FrameRecord]) -> list[dict]:
    """The base functional's labels in the shape of :func:`model_predictions`."""
    return [dict(energy=float(r.base["energy"]), forces=r.base["forces"], fock=r.base["fock"],
                 mo_energy=r.base["mo_energy"], converged=bool(r.base.get("converged", True)),
                 cycles=int(r.base["cycles"]) if "cycles" in r.base else None)
            for r in records]


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table: one row per method (e.g. base, model), one column per metric; then the
    DeePKS-SCF/base SCF time ratio per composition when ``rows`` has ``"timing"``."""
    cols = ["method", *METRICS, "frames"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    timing = rows.get("timing")
    rows = {k: v for k, v in rows.items() if k != "timing"}
    for name, m in rows.items():
        cells = [name] + [f"{m[c]:.4g}" if isinstance(m[c], float) else str(m[c])
                          for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    for formula, t in (timing or {}).items():
        lines.append(f"\nSCF wall time {formula} (steady state, same start): base "
                     f"{t['base_s']:.3g} s ({t['base_cycles']} cycles), DeePKS "
                     f"{t['model_s']:.3g} s ({t['model_cycles']} cycles), ratio "
                     f"{t['ratio']:.2f}")
    return "\n".join(lines)


def evaluate(model, records: Sequence[FrameRecord], options: SCFOptions | None = None,
             out: str | None = None, plot: bool = False, label: str = "",
             timing: bool = False) -> dict:
    """Metrics of the base functional and of ``model`` against the target; optionally write
    ``eval.json`` / ``eval.md`` (and PNG plots) into ``out``. Returns {"base": ..., "model": ...}
    and, with ``timing``, ``"timing"``: :func:`scf_time_ratio` (also in eval.json)."""
    options = options or SCFOptions(e_tol=1e-9, comm_tol=1e-6, max_cycles=100)
    base = base_predictions(records)
    preds = model_predictions(model, records, options)
    table = {"base": metrics(base, records), "model": metrics(preds, records)}
    timings = scf_time_ratio(model, records, options) if timing else None
    if out:
        os.makedirs(out, exist_ok=True)
        stem = f"eval{('-' + label) if label else ''}"
        with open(os.path.join(out, stem + ".json"), "w") as f:
            json.dump(dict(units="meV, meV/atom, meV/Angstrom; seconds", metrics=table,
                           scf_time=timings), f, indent=2)
        with open(os.path.join(out, stem + ".md"), "w") as f:
            f.write(format_table(table) + "\n")
        if plot:
            from jaxks.train.plots import parity_plots

            parity_plots(base, preds, records, os.path.join(out, stem))
    if timings is not None:
        table = dict(table, timing=timings)
    return table

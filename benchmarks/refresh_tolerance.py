"""What the looser refresh tolerances change in the fixed-density loss terms, on real frames.

A fixed-mode step evaluates every loss term at the refreshed density Γ itself
(:func:`jaxks.train.predict.predict_fixed`), so a refresh stopped at looser tolerances changes
the predictions by the density error δΓ: the energy at second order (E is stationary at the
self-consistent Γ), the Hamiltonian, orbital energies, gap and forces at first order. This
script measures those changes for a trained model (default: the built-in ``water`` model) on
labelled frames: each folder's frames are refreshed twice from their base (PBE) densities, with
the tight tolerances ([scf] defaults: e_tol 1e-10, comm_tol 1e-6) and with the refresh
defaults ([train] refresh_e_tol, refresh_comm_tol), and the fixed-mode predictions at the two
densities compared: max over frames of |ΔE|/atom (meV/atom), max |Δε| over the loss window
(meV), max |Δgap| (meV), max |ΔF| (meV/Å), max |ΔH| (meV) and max |ΔΓ| (electrons), with the
SCF cycles of each refresh. Run::

    python benchmarks/refresh_tolerance.py data/train_timing/w2-g1 data/train_timing/w4-g1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine  # noqa: E402
from jaxks.models import load_model  # noqa: E402
from jaxks.train.buckets import stack  # noqa: E402
from jaxks.train.config import TrainConfig  # noqa: E402
from jaxks.train.evaluate import MEV, MEV_PER_A  # noqa: E402
from jaxks.train.frames import load_records  # noqa: E402
from jaxks.train.predict import PredictSetup, predict_fixed  # noqa: E402
from jaxks.train.refresh import cache_fn, refresh_densities  # noqa: E402
from jaxks.train.schedule import refresh_options, scf_options  # noqa: E402
from jaxks.xc import get_xc  # noqa: E402


def compare(model, folder: str, max_frames: int, cfg: TrainConfig) -> dict:
    """The row of one folder (one composition): see the module docstring."""
    records = load_records([folder], model.basis, model.config.elements, with_forces=True,
                           max_frames=max_frames)
    tight, loose = scf_options(cfg), refresh_options(cfg)
    setup = PredictSetup(term=model.term, xc=get_xc(model.base_xc), with_forces=True,
                         options=tight)
    frames = stack([r.frame for r in records])
    light = stack([dataclasses.replace(r.frame, target={}, fints=None, proj_derivs=None)
                   for r in records])
    starts = jnp.stack([jnp.asarray(r.base["dm"]) for r in records])
    out = {}
    for name, options in (("tight", tight), ("loose", loose)):
        gamma, base, stats = refresh_densities(model.params, light, starts, model.term,
                                               setup.xc, options, sequential=True)
        assert base is not None and stats.fallbacks == 0, (name, stats)
        cache = cache_fn(setup, True)(frames, gamma, *base)
        pred = jax.jit(jax.vmap(lambda c: predict_fixed(model.params, c, setup)))(cache)
        out[name] = dict(jax.device_get(pred), cycles=stats.mean_cycles)
    a, b = out["tight"], out["loose"]
    n_atoms, n_occ, w = records[0].frame.n_atoms, records[0].frame.ints.n_occ, \
        records[0].frame.window
    gap = lambda p: p["mo_energy"][:, n_occ] - p["mo_energy"][:, n_occ - 1]  # noqa: E731
    win = lambda p: p["mo_energy"][:, w.start:w.stop]  # noqa: E731
    return {"folder": Path(folder).name, "comm_tol": loose.comm_tol, "e_tol": loose.e_tol,
            "frames": len(records), "n_atoms": n_atoms,
            "cycles_tight": a["cycles"], "cycles_loose": b["cycles"],
            "dE_mev_per_atom": float(np.max(np.abs(a["energy"] - b["energy"]))) * MEV / n_atoms,
            "deps_mev": float(np.max(np.abs(win(a) - win(b)))) * MEV,
            "dgap_mev": float(np.max(np.abs(gap(a) - gap(b)))) * MEV,
            "dF_mev_per_a": float(np.max(np.abs(a["forces"] - b["forces"]))) * MEV_PER_A,
            "dH_mev": float(np.max(np.abs(a["fock"] - b["fock"]))) * MEV,
            "dgamma": float(np.max(np.abs(a["gamma"] - b["gamma"])))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="labelled dataset folders (one composition each)")
    p.add_argument("--model", default="water")
    p.add_argument("--max-frames", type=int, default=8)
    p.add_argument("--comm-tols", type=float, nargs="+", default=None,
                   help="refresh_comm_tol values to compare (default: the [train] default)")
    args = p.parse_args(argv)
    model = load_model(args.model)
    default = TrainConfig()
    print(f"{machine()}; model {args.model}; tight e_tol {default.scf.e_tol:g} comm_tol "
          f"{default.scf.comm_tol:g}; loose e_tol {default.train.refresh_e_tol:g}\n")
    rows = [compare(model, f, args.max_frames,
                    dataclasses.replace(default, train=dataclasses.replace(
                        default.train, refresh_comm_tol=c)))
            for f in args.folders for c in args.comm_tols or [default.train.refresh_comm_tol]]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

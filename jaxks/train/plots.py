"""Parity plots and density-of-states comparison (PNG) for ``jaxks eval --plot``.

Needs matplotlib (``pip install "jaxks[plot]"``); everything else in jaxks works without it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxks.system import InputError
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR, EV_PER_HARTREE


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise InputError('plots need matplotlib: pip install "jaxks[plot]"') from err
    return plt


def density_of_states(eps_ev: np.ndarray, grid_ev: np.ndarray, sigma_ev: float = 0.2):
    """DOS(E) = Σ_i exp(−(E − ε_i)²/2σ²) / (σ√(2π)), states/eV (per spin-degenerate level)."""
    d = grid_ev[:, None] - np.asarray(eps_ev)[None, :]
    return np.exp(-0.5 * (d / sigma_ev) ** 2).sum(1) / (sigma_ev * np.sqrt(2 * np.pi))


def parity_plots(base: Sequence[dict], model: Sequence[dict], records, stem: str) -> list[str]:
    """Write ``{stem}-parity.png`` (energies per atom, forces, window eigenvalues: base and model
    against the target) and ``{stem}-dos.png`` (summed DOS of base, model, target). Returns paths."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    specs = [("energy", "E / N_atoms (eV)", lambda p, r: [p["energy"] * EV_PER_HARTREE
                                                         / r.frame.n_atoms]),
             ("forces", "force (eV/Å)", lambda p, r: np.ravel(p["forces"])
              * EV_ANGSTROM_PER_HARTREE_BOHR),
             ("eigenvalues", "ε in window (eV)", lambda p, r: np.asarray(p["mo_energy"])[
                 r.frame.window.start:r.frame.window.stop] * EV_PER_HARTREE)]
    target = [dict(energy=float(r.frame.target["energy"]), forces=np.asarray(r.frame.target["forces"]),
                   mo_energy=np.asarray(r.frame.target["mo_energy"])) for r in records]
    for ax, (name, label, get) in zip(axes, specs):
        t = np.concatenate([get(p, r) for p, r in zip(target, records)])
        for preds, tag, marker in ((base, "base", "o"), (model, "model", "x")):
            if name == "forces" and any("forces" not in p for p in preds):
                continue
            y = np.concatenate([get(p, r) for p, r in zip(preds, records)])
            ax.plot(t, y - (t if name == "energy" else 0), marker, ms=3, label=tag, alpha=0.7)
        if name != "energy":
            lo, hi = float(np.min(t)), float(np.max(t))
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.set_ylabel(f"prediction: {label}")
        else:
            ax.set_ylabel("prediction − target: E / N_atoms (eV)")
        ax.set_xlabel(f"target: {label}")
        ax.legend()
    fig.tight_layout()
    paths = [f"{stem}-parity.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    all_eps = np.concatenate([np.asarray(p["mo_energy"]) for p in target]) * EV_PER_HARTREE
    grid = np.linspace(max(all_eps.min(), -45.0) - 2, min(all_eps.max(), 15.0) + 2, 1200)
    fig, ax = plt.subplots(figsize=(8, 4))
    for preds, tag in ((base, "base"), (model, "model"), (target, "target")):
        eps = np.concatenate([np.asarray(p["mo_energy"]) for p in preds]) * EV_PER_HARTREE
        ax.plot(grid, density_of_states(eps, grid) / len(records), label=tag)
    ax.set_xlabel("orbital energy (eV)")
    ax.set_ylabel("DOS per frame (states/eV, σ = 0.2 eV)")
    ax.legend()
    fig.tight_layout()
    paths.append(f"{stem}-dos.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths

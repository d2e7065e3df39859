"""Can one E_δ built from on-site descriptors carry both the energy and the valence Hamiltonian
of HSE06? A linear probe at the PBE density: no network, no SCF.

Model: E_δ(Γ) = Σ_Z [w_Z · s_Z(Γ) + c_Z n_Z], s_Z = Σ_{I∈Z} d^I(Γ) the frame sums of the on-site
(Schatten) descriptors per element, 216 weights for water. Both what the fixed-density trainer
compares are *linear* in w at the frozen density Γ = Γ_PBE:

* the energy: E_δ(Γ_PBE) against y = E_HSE06 − E_PBE (per atom);
* the window Hamiltonian: C_wᵀ V_δ C_w with V_δ = ∂E_δ/∂Γ = Σ_Z,k w_Z,k ∂s_Z,k/∂Γ, against
  C_wᵀ (F_HSE06 − F_PBE) C_w, C_w the target's valence + LUMO orbitals (the trainer's H_v term).

So the best compromise of the two is a weighted linear least-squares problem, solved here for
relative weights λ_H (each term divided by PBE's value of it, as benchmarks/recipe_trials.py
normalises): λ_H = 0 is the energy-only fit (benchmarks/pair_probe.py's ``+onsite``), large λ_H
the window-Hamiltonian fit. Reported on training and held-out folders: energy MAE (meV/atom) and
window-Hamiltonian RMSE (meV, ‖C_wᵀ(ΔH)C_w‖_F/√N_w per frame, averaged in quadrature), PBE's
values alongside. If one w gives both small, the on-site linear form can carry both at the PBE
density; if not, the conflict of series B is already in the descriptors' span.

    python benchmarks/energy_orbital_probe.py --train data/study/labels/train_w1d ... \
        --test data/study/labels/test_c3d ... [--out benchmarks/results/accuracy.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine  # noqa: E402
from jaxks.deepks.descriptors import descriptors_from_overlaps  # noqa: E402
from jaxks.integrals.projectors import default_basis  # noqa: E402
from pair_probe import labelled_frames  # noqa: E402
from jaxks.train.losses import n_core_orbitals  # noqa: E402

HARTREE_MEV = 27211.386245988
LAMBDAS_H = (0.0, 0.1, 1.0, 10.0, 100.0)
RIDGE = 1e-6


def frame_data(folder: str, basis_name: str = "def2-svp") -> list[dict]:
    """Per frame: y, natm, counts, s [216], G [216, N_w, N_w], T [N_w, N_w] (Hartree)."""
    basis = default_basis()
    shells = basis.shell_structure

    def sums(g, p, oh):
        d = descriptors_from_overlaps(0.5 * (g + g.T), p, shells, "schatten")   # [natm, 108]
        return (oh.T @ d).reshape(-1)                                            # [2·108]

    value_and_jac = jax.jit(lambda g, p, oh: (sums(g, p, oh), jax.jacrev(sums)(g, p, oh)))
    out = []
    for fr, z, p in labelled_frames(folder, basis, basis_name):
        oh = np.stack([z == 8, z != 8], axis=1).astype(float)
        s, jac = value_and_jac(jnp.asarray(fr["base/dm"]), p, jnp.asarray(oh))
        jac = np.asarray(jac)
        jac = 0.5 * (jac + np.swapaxes(jac, -1, -2))
        n_occ = int(np.sum(np.asarray(fr["base/mo_occ"]) > 0))
        core = n_core_orbitals(z)
        cw = np.asarray(fr["target/mo_coeff"])[:, core:n_occ + 1]
        g = np.einsum("ui,kuv,vj->kij", cw, jac, cw)
        t = cw.T @ (np.asarray(fr["target/fock"]) - np.asarray(fr["base/fock"])) @ cw
        out.append(dict(y=float(fr["target/energy"]) - float(fr["base/energy"]), natm=len(z),
                        counts=oh.sum(0), s=np.asarray(s), g=g, t=t))
    return out


def fit(frames, lam_h: float, norm_e: float, norm_h: float):
    """Weighted linear least squares over (c [2], w [216]); returns (c, w)."""
    rows, rhs = [], []
    ne, nh = 1.0 / np.sqrt(norm_e * len(frames)), np.sqrt(lam_h / (norm_h * len(frames)))
    for f in frames:
        rows.append(ne * np.concatenate([f["counts"], f["s"]]) / f["natm"])
        rhs.append(ne * f["y"] / f["natm"])
        if lam_h > 0:
            nw = f["t"].shape[0]
            gm = f["g"].reshape(f["g"].shape[0], -1).T / np.sqrt(nw)      # [N_w², 216]
            rows.extend(nh * np.concatenate([np.zeros((gm.shape[0], 2)), gm], axis=1))
            rhs.extend(nh * f["t"].reshape(-1) / np.sqrt(nw))
    a, b = np.array(rows), np.array(rhs)
    sd = a[:, 2:].std(0)
    sd[sd < 1e-14] = 1.0
    a = np.concatenate([a[:, :2], a[:, 2:] / sd], axis=1)
    pen = RIDGE * np.eye(a.shape[1])
    pen[:2, :2] = 0.0
    coef = np.linalg.lstsq(a.T @ a + pen, a.T @ b, rcond=None)[0]
    return coef[:2], coef[2:] / sd


def errors(frames, c, w):
    """(energy MAE meV/atom, window-Hamiltonian RMSE meV) of the model (c, w)."""
    e = np.mean([abs(f["counts"] @ c + f["s"] @ w - f["y"]) / f["natm"] for f in frames])
    h = np.mean([np.sum((np.einsum("k,kij->ij", w, f["g"]) - f["t"]) ** 2) / f["t"].shape[0]
                 for f in frames])
    return e * HARTREE_MEV, np.sqrt(h) * HARTREE_MEV


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--test", nargs="+", required=True)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    train = [f for folder in args.train for f in frame_data(folder)]
    test = {os.path.basename(t): frame_data(t) for t in args.test}
    t_feat = time.perf_counter() - t0
    # PBE's values of the two terms on the training frames (after element constants): the
    # normalisers of the relative weight λ_H
    c0 = np.linalg.lstsq(np.stack([f["counts"] for f in train]),
                         np.array([f["y"] for f in train]), rcond=None)[0]
    norm_e = np.mean([((f["counts"] @ c0 - f["y"]) / f["natm"]) ** 2 for f in train])
    norm_h = np.mean([np.sum(f["t"] ** 2) / f["t"].shape[0] for f in train])
    rows = []
    pbe = dict(fit="PBE + element constants")
    for name, fs in [("train", train)] + list(test.items()):
        e, h = errors(fs, c0, np.zeros(train[0]["s"].size))
        pbe[f"{name} ({len(fs)})"] = f"{e:.2f} / {h:.0f}"
    rows.append(pbe)
    for lam in LAMBDAS_H:
        c, w = fit(train, lam, norm_e, norm_h)
        row = dict(fit=f"λ_H {lam:g}")
        for name, fs in [("train", train)] + list(test.items()):
            e, h = errors(fs, c, w)
            row[f"{name} ({len(fs)})"] = f"{e:.2f} / {h:.0f}"
        rows.append(row)
        print(row, flush=True)
    keys = list(rows[0])
    table = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    table += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    text = (f"\n### Linear probe: energy and window Hamiltonian from one on-site E_δ "
            f"(`benchmarks/energy_orbital_probe.py`, {time.strftime('%Y-%m-%d')})\n\n"
            f"Machine: {machine()}. Training: {', '.join(os.path.basename(t) for t in args.train)}"
            f" ({len(train)} frames). Cells: energy MAE (meV/atom) / window-Hamiltonian RMSE "
            f"(meV, valence + LUMO of the target) of E_δ = Σ_Z w_Z·Σ_{{I∈Z}} d^I + c_Z n_Z at the "
            f"PBE density, w fitted by weighted least squares (ridge {RIDGE:g} on std-scaled "
            f"columns) with relative weight λ_H on the window Hamiltonian (each term divided by "
            f"PBE's value on the training frames). Features in {t_feat:.0f} s.\n\n"
            + "\n".join(table) + "\n")
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()

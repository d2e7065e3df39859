"""Do two-centre (pair) descriptors carry the HSE06 − PBE energy that on-site ones miss? A linear
probe on labelled frames, no network, no SCF.

For every frame of the labelled folders (``jaxks label`` output, e.g. benchmarks/water_study.py's
data) the label y = E_HSE06 − E_PBE (Hartree, at each functional's own density) is regressed on
features computed at the PBE density Γ_PBE of the frame:

* ``elements``: the atom counts n_O, n_H (what per-element energy constants give: the trivial
  baseline of the model card);
* ``+onsite-shared``: plus Σ_I d^I over all atoms, the frame sum of the model's on-site
  descriptors (Schatten norms of P_Iᵀ Γ P_I, 108 per atom; jaxks.deepks.descriptors): the form
  of the model's linear prefit (one weight vector for every element);
* ``+onsite``: plus Σ_{I∈Z} d^I for Z = O, H separately (element-resolved weights);
* ``+pair``: plus Σ_{I≠J, (Z_I, Z_J) = (Z, Z')} q^{IJ} for the four ordered element pairs, q the
  pair features of the pair term (sqrt(‖P_{I,a}ᵀ Γ P_{J,b}‖²_F + τ²) − τ on the diffuse s and p
  shells, 12 × 12 per pair; jaxks.deepks.descriptors.pair_features).

Sums over atoms and pairs keep the fit size-extensive, so it can be trained on small clusters and
tested on larger ones. Ridge regression on standardised features (the element counts unpenalised),
α from a grid by leave-one-folder-out cross-validation on the training folders; reported: MAE of
y per atom (meV/atom) on every held-out folder, and on the training folders.

    python benchmarks/pair_probe.py --train data/study/labels/train_w1d ... \
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
from jaxks.deepks.descriptors import (DIFFUSE_PAIR_RADIAL, descriptors_from_overlaps,  # noqa: E402
                                      pair_features)
from jaxks.integrals.projectors import default_basis, projector_overlaps  # noqa: E402

HARTREE_MEV = 27211.386245988
KINDS = ("elements", "+onsite-shared", "+onsite", "+pair")
ALPHAS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def labelled_frames(folder: str, basis, basis_name: str = "def2-svp"):
    """Yield (labels, atomic numbers [natm], projector overlaps P [nao, natm, nproj]) of every
    frame of a labelled folder whose base and target SCFs converged (coordinates in Bohr)."""
    from pyscf import gto

    from jaxks.data.store import Dataset

    ds = Dataset(folder)
    for k in ds.indices:
        fr, _ = ds.frame(k)
        if not (bool(fr["base/converged"]) and bool(fr["target/converged"])):
            continue
        z = np.asarray(fr["atomic_numbers"]).astype(int)
        mol = gto.M(atom=[(int(a), tuple(r)) for a, r in zip(z, np.asarray(fr["coords"]))],
                    unit="Bohr", basis=basis_name, charge=int(fr["charge"]), verbose=0)
        yield fr, z, jnp.asarray(projector_overlaps(mol, basis).overlaps)


def frame_features(folder: str, basis_name: str = "def2-svp") -> list[dict]:
    """Per frame: y (Hartree), atom count, and the feature groups."""
    basis = default_basis()
    shells = basis.shell_structure
    onsite = jax.jit(lambda g, p: descriptors_from_overlaps(g, p, shells, "schatten"))
    pair = jax.jit(lambda g, p: pair_features(g, p, shells, DIFFUSE_PAIR_RADIAL, (0, 1)))
    out = []
    for fr, z, p in labelled_frames(folder, basis, basis_name):
        g = jnp.asarray(fr["base/dm"])
        d = np.asarray(onsite(g, p))                       # [natm, 108]
        q = np.asarray(pair(g, p))                         # [natm, natm, S, S]
        q = q.reshape(q.shape[0], q.shape[1], -1)
        is_o = z == 8
        groups = [is_o, ~is_o]
        f_on = np.concatenate([d[m].sum(0) for m in groups])
        off = ~np.eye(len(z), dtype=bool)
        f_pair = np.concatenate([q[np.ix_(a, b)][off[np.ix_(a, b)]].sum(0)
                                 for a in groups for b in groups])
        out.append(dict(y=float(fr["target/energy"]) - float(fr["base/energy"]),
                        natm=len(z), counts=np.array([is_o.sum(), (~is_o).sum()], float),
                        onsite=f_on, shared=d.sum(0), pair=f_pair))
    return out


def design(frames: list[dict], kind: str) -> np.ndarray:
    parts = [np.stack([f["counts"] for f in frames])]
    if kind == "+onsite-shared":
        parts.append(np.stack([f["shared"] for f in frames]))
    if kind in ("+onsite", "+pair"):
        parts.append(np.stack([f["onsite"] for f in frames]))
    if kind == "+pair":
        parts.append(np.stack([f["pair"] for f in frames]))
    return np.concatenate(parts, axis=1)


def fit(x: np.ndarray, y: np.ndarray, alpha: float):
    """Ridge on columns 2: divided by their standard deviation (counts unpenalised), not
    centred: a centred column would add a per-frame constant, not size-extensive; returns a
    predictor (its weights as ``.weights``: counts first, then per raw feature)."""
    sd = x[:, 2:].std(0)
    sd[sd < 1e-12] = 1.0

    def prep(a):
        return np.concatenate([a[:, :2], a[:, 2:] / sd], axis=1)

    xs = prep(x)
    pen = alpha * np.eye(xs.shape[1])
    pen[:2, :2] = 0.0
    # lstsq: water's counts are collinear (n_H = 2 n_O), the unpenalised block is singular
    w = np.linalg.lstsq(xs.T @ xs + pen, xs.T @ y, rcond=None)[0]

    def predict(a):
        return prep(a) @ w

    predict.weights = np.concatenate([w[:2], w[2:] / sd])
    return predict


def mae_per_atom(frames, pred) -> float:
    natm = np.array([f["natm"] for f in frames], float)
    y = np.array([f["y"] for f in frames])
    return float(np.mean(np.abs(pred - y) / natm) * HARTREE_MEV)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--test", nargs="+", required=True)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    train = {os.path.basename(f): frame_features(f) for f in args.train}
    test = {os.path.basename(f): frame_features(f) for f in args.test}
    t_feat = time.perf_counter() - t0
    all_train = [f for fs in train.values() for f in fs]
    rows = []
    for kind in args.kinds:
        # α by leave-one-folder-out cross-validation (transfer across sizes and kinds)
        best = (np.inf, None)
        for alpha in ALPHAS:
            errs = []
            for name, held in train.items():
                rest = [f for n, fs in train.items() if n != name for f in fs]
                model = fit(design(rest, kind), np.array([f["y"] for f in rest]), alpha)
                errs.append(mae_per_atom(held, model(design(held, kind))))
            best = min(best, (float(np.mean(errs)), alpha))
        alpha = best[1]
        model = fit(design(all_train, kind), np.array([f["y"] for f in all_train]), alpha)
        row = dict(features=kind, n_features=design(all_train[:1], kind).shape[1], alpha=alpha,
                   cv_mae=best[0], train_mae=mae_per_atom(all_train, model(design(all_train,
                                                                                  kind))))
        for name, fs in test.items():
            row[f"{name} ({len(fs)})"] = mae_per_atom(fs, model(design(fs, kind)))
        rows.append(row)
        print(row, flush=True)
    keys = list(rows[0])
    table = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        table.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                       for k in keys) + " |")
    text = (f"\n### Linear probe: which descriptors carry the HSE06 − PBE energy "
            f"(`benchmarks/pair_probe.py`, {time.strftime('%Y-%m-%d')})\n\nMachine: {machine()}. "
            f"Training folders: {', '.join(f'{n} ({len(fs)})' for n, fs in train.items())}. "
            f"Energy MAE per atom (meV/atom) of E_HSE06 − E_PBE fitted linearly (ridge, α by "
            f"leave-one-folder-out CV: `cv_mae`) on frame sums of features at the PBE density; "
            f"features computed in {t_feat:.0f} s.\n\n" + "\n".join(table) + "\n")
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()

"""The water-model acceptance study: sample, label, train, evaluate — each stage resumable.

    python benchmarks/water_study.py [stage ...] [--root data/study] [--workers 1]

Stages (default: all, in order): ``sample``, ``label``, ``train``, ``eval``. Every stage skips
what is already on disk, so after an interruption the same command continues. Settings: PBE base,
HSE06 target, def2-SVP, def2-universal-jkfit, PySCF grid level 2 (same grid for labels, training
and evaluation). Data (atomic units on disk) goes under ``--root``.

Training data: MD-carved (H2O)1-4 (SPC/Fw liquid at 300 K, a fifth stretched or compressed).
Held out: (H2O)1-4 from other seeds, and sizes never trained on, (H2O)8 and (H2O)12.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

GRID_LEVEL = 2
BASIS = "def2-svp"
# (name, n molecules, frames sampled, frames labelled, seed); held-out seeds differ from the
# training seeds. Labelling order: what training needs first, the large held-out sizes last.
TRAIN_SETS = [("train_w1", 1, 80, 80, 0), ("train_w2", 2, 80, 80, 1), ("train_w3", 3, 60, 40, 2),
              ("train_w4", 4, 60, 30, 3)]
TEST_SETS = [("test_w1", 1, 10, 10, 1001), ("test_w2", 2, 10, 10, 1002),
             ("test_w3", 3, 10, 10, 1003), ("test_w4", 4, 10, 10, 1004),
             ("test_w8", 8, 10, 10, 1008), ("test_w12", 12, 4, 4, 1012)]
ALL_SETS = TRAIN_SETS[:2] + TEST_SETS[:4] + TRAIN_SETS[2:] + TEST_SETS[4:]


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def stage_sample(root: str, args) -> None:
    os.makedirs(os.path.join(root, "xyz"), exist_ok=True)
    for name, n, frames, _, seed in ALL_SETS:
        out = os.path.join(root, "xyz", f"{name}.xyz")
        if os.path.exists(out):
            continue
        tmp = out + ".part"
        _run(["jaxks", "sample", "water", "--n", str(n), "--frames", str(frames),
              "--seed", str(seed), "-o", tmp, "--quiet"])
        os.replace(tmp, out)


def stage_label(root: str, args) -> None:
    for name, _, _, labelled, _ in ALL_SETS:
        _run(["jaxks", "label", os.path.join(root, "xyz", f"{name}.xyz"), "--frames",
              f"0:{labelled}", "--base", "pbe",
              "--target", "hse06", "--basis", BASIS, "--grid-level", str(GRID_LEVEL),
              "--out", os.path.join(root, "labels", name), "--workers", str(args.workers)]
             + (["--threads", str(args.threads)] if args.threads else []))


STAGES = {"sample": stage_sample, "label": stage_label}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stages", nargs="*", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--root", default="data/study")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    for s in args.stages:
        t0 = time.perf_counter()
        STAGES[s](args.root, args)
        print(f"study: stage {s} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

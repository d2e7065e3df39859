"""``jaxks demo``: the whole DeePKS-ES workflow on built-in water structures, on a laptop CPU.

1. label built-in water monomers and dimers with PySCF: PBE (base) and HSE06 (target),
   def2-SVP, grid level 1 (resumable: a second run reuses the labels);
2. train a DeePKS model end-to-end through the jaxks SCF on 6 monomers and 4 dimers;
3. evaluate base and model against HSE06 on held-out monomers and dimers, and on trimers
   (a size never trained on), and print the tables.

No downloads; everything is written to ``--out`` (default ``jaxks-demo/``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the built-in DeePKS-ES demonstration (~5 min, CPU)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="jaxks-demo", help="output folder (default: jaxks-demo)")
    p.add_argument("--steps", type=int, default=30, help="training steps (default: 30)")
    p.add_argument("--workers", type=int, default=1, help="labelling processes")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxks.data.datasets import builtin_frames
    from jaxks.data.labels import LabelSettings
    from jaxks.data.pipeline import label_frames
    from jaxks.deepks.projectors import default_basis
    from jaxks.train.config import LossSection, OptimSection, TrainConfig, TrainSection
    from jaxks.train.evaluate import evaluate, format_table
    from jaxks.train.frames import load_records
    from jaxks.train.loop import train

    t0 = time.perf_counter()
    settings = LabelSettings(basis="def2-svp", grid_level=1)
    kw = dict(basis=settings.basis, grid_level=settings.grid_level)
    monomers = builtin_frames("water_monomers", **kw)
    dimers = builtin_frames("water_dimers", **kw)
    trimers = builtin_frames("water_trimers", **kw)
    sets = {"train": monomers[:6] + dimers[:4], "test-monomers": monomers[6:8],
            "test-dimers": dimers[4:6], "test-trimers": trimers[:2]}
    print(f"[1/3] labelling {sum(map(len, sets.values()))} built-in water structures "
          "(PBE and HSE06, def2-SVP) ...", file=sys.stderr)
    for name, systems in sets.items():
        label_frames(systems, os.path.join(args.out, "data", name), settings,
                     workers=args.workers, source=f"builtin:{name}")
    print(f"[2/3] training {args.steps} steps end-to-end through the SCF ...", file=sys.stderr)
    cfg = TrainConfig(loss=LossSection(), optim=OptimSection(learning_rate=3e-3, decay_steps=10),
                      train=TrainSection(mode="scf", steps=args.steps, batch_size=4,
                                         checkpoint_every=10, out=os.path.join(args.out, "run")))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, train=(os.path.join(args.out, "data", "train"),)))
    basis = default_basis()
    records = load_records(cfg.data.train, basis, ("H", "O"))
    result = train(cfg, records)
    print("[3/3] evaluating base (PBE) and model (PBE + DeePKS) against HSE06 ...",
          file=sys.stderr)
    for name in ("test-monomers", "test-dimers", "test-trimers"):
        test = load_records([os.path.join(args.out, "data", name)], basis,
                            result.model.config.elements)
        table = evaluate(result.model, test, out=os.path.join(args.out, "run"), label=name)
        print(f"\n{name} (held out; errors against HSE06)\n{format_table(table)}")
    print(f"\nmodel: {os.path.join(result.out, 'model.npz')}; total {time.perf_counter() - t0:.0f} s")
    return 0

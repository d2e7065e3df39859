"""``jaxks train`` and ``jaxks eval``: DeePKS-ES training from a TOML config, and evaluation."""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train a DeePKS-ES model (config file in TOML)",
                       description="Train a DeePKS model on labelled datasets, end-to-end "
                       "through the SCF (train.mode = 'scf') or at frozen densities ('fixed'). "
                       "Writes config.toml, log.jsonl, checkpoint.npz and model.npz to "
                       "train.out; evaluates on data.test when given.")
    p.add_argument("config", help="TOML config (missing settings take their defaults)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in train.out")
    p.add_argument("--out", help="override train.out")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="evaluate a model against the target labels",
                       description="Energy, force, eigenvalue, gap and Hamiltonian errors of the "
                       "base functional and of the model (DeePKS-SCF) against the target.")
    e.add_argument("model", help="model file written by jaxks train, or a built-in model name "
                   "(water)")
    e.add_argument("data", nargs="+", help="labelled dataset folder(s)")
    e.add_argument("--out", help="write eval.json / eval.md (and plots) here")
    e.add_argument("--plot", action="store_true", help="parity and DOS plots (PNG)")
    e.add_argument("--max-frames", type=int, default=0)
    e.add_argument("--no-timing", dest="timing", action="store_false",
                   help="skip the DeePKS-SCF / base SCF wall-time ratio (one frame per "
                   "composition, timed after compilation)")
    e.add_argument("--label", default="",
                   help="name the result files eval-LABEL.json / eval-LABEL.md")
    e.set_defaults(func=run_eval)


def run_train(args) -> int:
    import dataclasses

    from jaxks.integrals.projectors import default_basis
    from jaxks.train.config import load_config
    from jaxks.train.evaluate import evaluate, format_table
    from jaxks.train.frames import load_records
    from jaxks.train.loop import train

    cfg = load_config(args.config)
    if args.out:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out=args.out))
    if not cfg.data.train:
        from jaxks.system import InputError

        raise InputError("the config names no training data: set data.train = [folders]")
    with_forces = any(st.weights.force > 0 for st in cfg.resolved_stages())
    basis = default_basis()
    print(f"reading {len(cfg.data.train)} training set(s) ...", file=sys.stderr)
    records = load_records(cfg.data.train, basis, _elements(cfg.data.train), with_forces=with_forces,
                           n_virtual=cfg.loss.n_virtual, include_core=cfg.loss.include_core,
                           max_frames=cfg.data.max_frames,
                           skip_unconverged=cfg.data.skip_unconverged_labels, progress=sys.stderr)
    result = train(cfg, records, resume=args.resume)
    print(f"trained {result.steps} steps in {result.wall_s:.1f} s; model: "
          f"{os.path.join(result.out, 'model.npz')}")
    if cfg.data.test:
        test = load_records(cfg.data.test, basis, result.model.config.elements,
                            n_virtual=cfg.loss.n_virtual, include_core=cfg.loss.include_core)
        table = evaluate(result.model, test, out=result.out)
        print(format_table(table))
    return 0


def _elements(folders) -> tuple[str, ...]:
    from jaxks.data.store import Dataset

    found = set()
    for folder in folders:
        ds = Dataset(folder)
        for g in ds.groups:
            found.update(ds.group_info(g)["symbols"])
    return tuple(sorted(found))


def run_eval(args) -> int:
    from jaxks.data.store import Dataset
    from jaxks.models import check_settings, load_model
    from jaxks.train.evaluate import evaluate, format_table
    from jaxks.train.frames import load_records

    model = load_model(args.model)
    for folder in args.data:
        st = Dataset(folder).settings
        check_settings(model, args.model, basis=st.basis, auxbasis=st.auxbasis,
                       grid_level=st.grid_level, base=st.base, target=st.target)
    records = load_records(args.data, model.basis, model.config.elements,
                           max_frames=args.max_frames)
    table = evaluate(model, records, out=args.out, plot=args.plot, label=args.label,
                     timing=args.timing)
    print(format_table(table))
    stem = "eval" + (f"-{args.label}" if args.label else "")
    if args.out:
        print(f"written: {os.path.join(args.out, stem + '.json')}, {stem}.md"
              + (", eval-parity.png, eval-dos.png" if args.plot else ""))
    return 0

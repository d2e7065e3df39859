"""Training throughput: seconds per step and frames per second of each mode, for (H2O)_n buckets.

For each n, ``--frames`` MD-carved clusters are labelled once (PySCF, PBE base and PBE target:
the label values do not change the cost; def2-SVP, grid ``--grid-level``) into ``--data`` and
one bucket of the trainer is built from them. Timed separately, in the same process:

* forward SCF of one frame (``run_scf`` with the DeePKS term, warm-started from the PBE density;
  compiled, second run) — the unit the issue's bars are written in;
* the refresh row (``--parts refresh``): a fixed-mode density refresh of all ``--frames``
  frames (one vmapped DeePKS-SCF of the bucket + the cache), timed after ``--refresh-steps``
  fixed-mode steps, against the summed cold single-frame PBE SCFs (``run_scf`` from MINAO,
  compiled) of the same frames in the same process (``refresh/cold_pbe``, target ≤ 0.5);
* one fixed-mode step (cached: network, V_δ, eigensolve, losses, Adam) on a batch of ``--batch``;
* one end-to-end step (vmapped SCF + implicit gradient + update), and its forward half alone
  (vmapped SCF of the same batch), so the backward/adjoint part is their difference.

Compile times are reported apart (first call minus steady state). Steady-state times are the
best of ``--repeat`` calls. Each size runs in its own process with a time limit
(``--timeout``): with jax/jaxlib 0.10.1 on the CPU a wide vmapped end-to-end step (8 dimers)
used to deadlock in jaxlib's batched LAPACK kernels (README, Known problems; the trainer now
guards against it), and a hung size gives a row that says so instead of blocking the table.
``--e2e-batch`` sets the end-to-end batch apart. Run::

    python benchmarks/train_timing.py --sizes 1 2 4 8 --e2e-batch 2 \
        --out benchmarks/results/train_timing_cpu.md
    python benchmarks/train_timing.py --sizes 1 2 3 4 --frames 32 --parts refresh \
        --out benchmarks/results/train_timing_cpu.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxks  # noqa: E402, F401
from common import machine, peak_rss_gb, report  # noqa: E402
from jaxks.deepks.correction import DeePKSParams  # noqa: E402
from jaxks.implicit import scf_density  # noqa: E402
from jaxks.scf import run_scf  # noqa: E402
from jaxks.train import loop  # noqa: E402
from jaxks.train.buckets import stack  # noqa: E402
from jaxks.train.config import (LossSection, ModelSection, SCFSection, TrainConfig,  # noqa: E402
                                TrainSection)


def labelled(n: int, frames: int, grid_level: int, root: str) -> str:
    from jaxks.data.labels import LabelSettings
    from jaxks.data.pipeline import label_frames
    from jaxks.data.sampling import sample_water
    from jaxks.system import System

    out = os.path.join(root, f"w{n}-g{grid_level}")
    geoms = sample_water(n, frames, seed=100 + n)
    systems = [System.from_symbols(g.symbols, g.coords, basis="def2-svp", grid_level=grid_level)
               for g in geoms]
    # resumable: frames already labelled are skipped
    label_frames(systems, out, LabelSettings(base="pbe", target="pbe", basis="def2-svp",
                                             grid_level=grid_level), workers=1, progress=None)
    return out


def timed(fn, repeat, what=""):
    """(first call, best of ``repeat`` further calls) in seconds; progress on stderr."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    print(f"  {what}: first {first:.3g} s, steady {best:.3g} s", file=sys.stderr, flush=True)
    return first, best


def bench_refresh(tr, records, fixed, params, args) -> dict:
    """The refresh row: a fixed-mode density refresh of every frame of the bucket against the
    cold single-frame PBE SCFs of the same frames, in this process.

    * ``cold_pbe_sum_s``: Σ over frames of ``run_scf(ints, "pbe")`` from the MINAO guess with
      the training's SCF settings (compiled once before, so no compile time is included);
    * ``refresh_first_s``: the step-0 refresh from the PBE densities (compile included);
    * ``refresh_s``: a refresh after ``--refresh-steps`` fixed-mode steps (the model moved as it
      does between two refreshes of a run) — what each periodic refresh costs; to the refresh
      tolerances ([train] refresh_e_tol, refresh_comm_tol), each frame's loop started from the
      F_base the previous refresh cached;
    * ``refresh_nostart_s``: the same without that start (the loop builds F[Γ] first);
      ``refresh_tight_s``: without it and at the [scf] tolerances (the refresh before it had
      tolerances of its own).

    They are timed alternately ``--repeat`` times (each refresh from the same densities) and
    the best of each kept, so that a load change on a shared machine biases none.
    """
    from jaxks.train.buckets import batch_at

    def cold_sum():
        total, cycles = 0.0, []
        for r in records:
            t0 = time.perf_counter()
            res = jax.block_until_ready(run_scf(r.frame.ints, "pbe", options=tr.options,
                                                warn=False))
            total += time.perf_counter() - t0
            cycles.append(int(res.cycles))
        return total, cycles

    jax.block_until_ready(run_scf(records[0].frame.ints, "pbe", options=tr.options,
                                  warn=False).gamma)  # compile
    t0 = time.perf_counter()
    tr.build_caches(fixed, params, scf=True)
    first = time.perf_counter() - t0
    optimizer, _ = loop.make_optimizer(tr.cfg, params, fixed)
    for k in range(args.refresh_steps):
        b = batch_at(k, tr.buckets, fixed.batch_size, 0)
        tr.run_step(fixed, 0, optimizer, b.bucket, b.positions, b.weights)
    start = dict(tr.state["gammas"])
    start_bases = dict(tr.state["bases"])
    tight = loop.scf_options(tr.cfg)

    def refresh(options, with_bases):
        """One refresh from the densities (and, ``with_bases``, the cached F_base, E_base) the
        steps left; (seconds, stats)."""
        tr.state["gammas"] = dict(start)
        tr.state["bases"] = {k: dict(fock=v["fock"], energy=v["energy"] if with_bases
                                     else jnp.zeros_like(v["energy"]))
                             for k, v in start_bases.items()}
        saved, tr.refresh_options = tr.refresh_options, options
        t0 = time.perf_counter()
        tr.build_caches(fixed, tr.state["params"], scf=True)
        tr.refresh_options = saved
        return time.perf_counter() - t0, tr.refresh_stats

    # the refresh as trained (refresh tolerances, loop started from the cached F_base), without
    # the cached start, and at the [scf] tolerances without it (as before the refresh had its
    # own tolerances)
    variants = {"refresh": (tr.refresh_options, True), "refresh_nostart": (tr.refresh_options,
                                                                            False),
                "refresh_tight": (tight, False)}
    colds, times, stats = [], {k: [] for k in variants}, {}
    for _ in range(max(args.repeat, 1)):
        cold, cycles_pbe = cold_sum()
        colds.append(cold)
        for name, (options, with_bases) in variants.items():
            t, stats[name] = refresh(options, with_bases)
            times[name].append(t)
    cold, steady = min(colds), min(times["refresh"])
    print(f"  refresh: first {first:.3g} s, after {args.refresh_steps} steps {steady:.3g} s "
          f"(cold PBE sum {cold:.3g} s)", file=sys.stderr, flush=True)
    row = {"refresh_frames": len(records), "cold_pbe_sum_s": cold,
           "cold_pbe_cycles": float(np.mean(cycles_pbe)), "refresh_first_s": first}
    for name in variants:
        st = stats[name]
        row.update({f"{name}_s": min(times[name]), f"{name}/cold_pbe": min(times[name]) / cold,
                    f"{name}_cycles_mean": st.mean_cycles, f"{name}_fallbacks": st.fallbacks})
    return row


def bench(n: int, args) -> dict:
    from jaxks.integrals.projectors import default_basis
    from jaxks.train.frames import load_records

    folder = labelled(n, args.frames, args.grid_level, args.data)
    records = load_records([folder], default_basis(), ("H", "O"),
                           with_forces=args.force_weight > 0)
    cfg = TrainConfig(model=ModelSection(), loss=LossSection(force=args.force_weight),
                      scf=SCFSection(adjoint_tol=args.adjoint_tol),
                      train=TrainSection(mode="fixed", batch_size=args.batch, out="/tmp/tt"))
    tr = loop.Trainer(cfg, records, "pbe", None)
    fixed = tr.stages[0]
    scf = dataclasses.replace(fixed, mode="scf")
    width = args.batch
    pos = np.resize(np.arange(len(records)), width).astype(np.int32)
    weights = np.ones(width)
    params = tr.state["params"]
    e2e_width = args.e2e_batch or width
    e2e_pos, e2e_weights = pos[:e2e_width], weights[:e2e_width]
    row = {"n": n, "nao": records[0].frame.ints.nao, "batch": width}
    parts = set(args.parts)
    if "compile" in parts:
        row.update(bench_compile(tr, scf, e2e_pos, e2e_weights))
    if "refresh" in parts:
        row.update(bench_refresh(tr, records, fixed, params, args))
        tr.state["params"] = params
    if not parts & {"scf1", "fixed", "e2e"}:
        row["peak_rss_gb"] = peak_rss_gb()
        return row

    # one forward SCF of one frame (DeePKS term on), warm start from its PBE density
    r0 = records[0]
    theta = DeePKSParams(model=params, overlaps=r0.frame.overlaps, element_onehot=r0.frame.onehot)
    fwd1 = lambda: run_scf(r0.frame.ints, "pbe", term=tr.term, params=theta,  # noqa: E731
                           options=tr.options, guess=jnp.asarray(r0.base["dm"]), warn=False).gamma
    c_fwd1, t_fwd1 = timed(fwd1, args.repeat, "scf_1frame")
    row.update({"scf_1frame_s": t_fwd1})
    if "refresh" not in parts:
        tr.build_caches(fixed, params, scf=True)
    optimizer, _ = loop.make_optimizer(cfg, params, fixed)
    state0 = dict(tr.state)

    def fixed_step():
        tr.state.update(state0)
        tr.run_step(fixed, 0, optimizer, 0, pos, weights)
        return tr.state["params"]

    if "fixed" in parts:
        c_fix, t_fix = timed(fixed_step, args.repeat, "fixed_step")
        row.update({"fixed_step_s": t_fix, "fixed_frames_per_s": width / t_fix,
                    "fixed_step/scf_1frame": t_fix / t_fwd1, "compile_fixed_s": c_fix - t_fix})
    if "e2e" in parts:
        row.update(bench_e2e(tr, cfg, scf, params, state0, e2e_pos, e2e_weights, t_fwd1, args))
    row["peak_rss_gb"] = peak_rss_gb()
    return row


def bench_compile(tr, scf, e2e_pos, e2e_weights) -> dict:
    """Compile time of the end-to-end step program alone (trace + lower, XLA compile), ahead of
    time and without running it; run with ``JAXKS_COMPILE_CACHE=0`` for a cold compile."""
    import jax.numpy as jnp

    params = tr.state["params"]
    opt, _ = loop.make_optimizer(tr.cfg, params, scf)
    fn = tr.step_fn(scf, 0, opt)
    args = (params, opt.init(params), tr.inputs(scf, 0), tr.data[0].targets,
            tr.state["gammas"][tr.buckets[0].key], jnp.asarray(e2e_pos), jnp.asarray(e2e_weights))
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {"e2e_frames_per_vmap": tr.loss_setup(scf, tr.buckets[0]).frames_per_vmap,
            "e2e_lower_s": t1 - t0, "e2e_xla_compile_s": t2 - t1, "e2e_compile_s": t2 - t0}


def bench_e2e(tr, cfg, scf, params, state0, e2e_pos, e2e_weights, t_fwd1, args) -> dict:
    """The end-to-end step: its forward half (vmapped SCF of the batch from the same warm
    starts) and the whole step (forward + implicit gradient + update)."""
    e2e_width = len(e2e_pos)
    setup = tr.predict_setup(scf)
    frames = tr.data[0].frame_stack()
    guesses = jnp.take(tr.state["gammas"][tr.buckets[0].key], jnp.asarray(e2e_pos), axis=0)
    batch = jax.tree_util.tree_map(lambda x: jnp.take(x, jnp.asarray(e2e_pos), axis=0), frames)

    @jax.jit
    def forward(params, batch, guesses):
        def one(frame, guess):
            th = DeePKSParams(model=params, overlaps=frame.overlaps,
                              element_onehot=frame.onehot)
            g, info = scf_density(setup.xc, setup.term, setup.options, setup.adjoint, False,
                                  frame.ints, th, guess, jnp.zeros_like(guess),
                                  jnp.zeros((), guess.dtype))
            return g, info["cycle"]
        return jax.vmap(one)(batch, guesses)

    c_fw, t_fw = timed(lambda: forward(params, batch, guesses), args.repeat,
                       "e2e_forward")
    cycles = float(np.mean(np.asarray(forward(params, batch, guesses)[1])))
    opt_scf, _ = loop.make_optimizer(cfg, params, scf)

    def scf_step():
        tr.state.update(state0)
        diag = tr.run_step(scf, 0, opt_scf, 0, e2e_pos, e2e_weights)
        scf_step.diag = diag
        return tr.state["params"]

    c_e2e, t_e2e = timed(scf_step, args.repeat, "e2e_step")
    matvecs = float(np.mean(np.asarray(scf_step.diag["matvecs"])))
    return {"e2e_batch": e2e_width,
            "e2e_forward_s": t_fw, "e2e_step_s": t_e2e,
            "e2e_backward_s": t_e2e - t_fw,
            "e2e_frames_per_s": e2e_width / t_e2e,
            "e2e_step/frame/scf_1frame": t_e2e / e2e_width / t_fwd1,
            "mean_cycles": cycles, "adjoint_matvecs": matvecs,
            "compile_e2e_s": c_e2e - t_e2e}


def bench_in_subprocess(n: int, argv: list[str], timeout: float) -> dict:
    """``bench(n)`` in a fresh process (its own memory and compile cache), killed after
    ``timeout`` seconds: a run that hangs (see the module docstring) gives a row saying so."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--one", str(n)] + argv
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"n": n, "note": f"did not finish in {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"n": n, "note": f"failed (exit {done.returncode}): {done.stderr[-300:]}"}


def main(argv=None) -> int:
    import json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--e2e-batch", type=int, default=0,
                   help="frames per end-to-end step (default: --batch)")
    p.add_argument("--grid-level", type=int, default=1)
    p.add_argument("--force-weight", type=float, default=0.0,
                   help="force loss weight (forces hold 3·naux·nao² integrals per frame)")
    p.add_argument("--adjoint-tol", type=float, default=1e-7,
                   help="relative adjoint tolerance (default: the training default)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--parts", nargs="+", default=["refresh", "scf1", "fixed", "e2e"],
                   choices=["refresh", "scf1", "fixed", "e2e", "compile"],
                   help="what to time (scf1 is implied by fixed and e2e; compile: the "
                   "end-to-end step's compilation alone)")
    p.add_argument("--refresh-steps", type=int, default=10,
                   help="fixed-mode steps between the two timed refreshes (refresh row)")
    p.add_argument("--data", default="data/train_timing")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds allowed per size (each size runs in its own process)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from pyscf import lib

    lib.num_threads(1)  # labelling only; JAX uses every core
    if args.one is not None:  # worker: one size, the row as JSON on stdout
        print(json.dumps(bench(args.one, args)), flush=True)
        return 0
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    passed = [a for i, a in enumerate(passed)
              if a != "--out" and (i == 0 or passed[i - 1] != "--out")
              and a != "--sizes" and not _after(passed, i, "--sizes")]
    rows = []
    for n in args.sizes:
        rows.append(bench_in_subprocess(n, passed, args.timeout))
        print(rows[-1], file=sys.stderr, flush=True)
    header = (f"\n## Training step timing ({machine()})\n\nPBE base, def2-SVP, "
              f"def2-universal-jkfit, grid level {args.grid_level}, 108→100→100→100→1 network, "
              f"batch {args.batch} (end-to-end: {args.e2e_batch or args.batch}), force weight "
              f"{args.force_weight}, adjoint tol {args.adjoint_tol}; seconds are steady state "
              f"(best of {args.repeat}); e2e_backward = e2e_step − e2e_forward (implicit "
              "gradient + update); adjoint_matvecs per frame.\n\n")
    report(header, rows, args.out)
    return 0


def _after(argv, i, flag):
    """argv[i] is a value of ``flag`` (between it and the next option)."""
    j = i
    while j > 0 and not argv[j - 1].startswith("--"):
        j -= 1
    return j > 0 and argv[j - 1] == flag and not argv[i].startswith("--")


if __name__ == "__main__":
    raise SystemExit(main())

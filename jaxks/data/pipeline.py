"""Labelling runs (parallel, resumable, atomic).

:func:`label_frames` is what ``jaxks label`` runs:

1. open the output folder (:func:`jaxks.data.store.open_for_writing`): a new dataset records
   the settings; an existing one must have exactly the same settings, otherwise it refuses;
2. assign every frame to its composition group and look at its file: a frame whose file
   exists, verifies and holds the same geometry is skipped (resume); a damaged one is
   recomputed; one with a *different* geometry means another input went into this folder,
   which is refused;
3. label the remaining frames, in ``workers`` processes (spawned, each with
   ``max(1, cpus // workers)`` OpenMP threads), each frame written atomically by the process
   that computed it; a text progress bar goes to stderr.

A run killed at any moment loses at most the frames in flight; repeating the same command
completes the dataset with each frame present once.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import time
from typing import Sequence, TextIO

import numpy as np

from jaxks.data.labels import LabelSettings, get_labeller
from jaxks.data.store import (GROUP_FILE, DataFileError, Dataset, clean_stale_temporaries,
                              frame_filename, group_base_name, open_for_writing, read_frame,
                              write_frame, write_json)
from jaxks.system import System


@dataclasses.dataclass
class LabelReport:
    """Outcome of :func:`label_frames`: frame indices by what happened to them."""

    computed: list[int] = dataclasses.field(default_factory=list)
    skipped: list[int] = dataclasses.field(default_factory=list)
    unconverged: list[int] = dataclasses.field(default_factory=list)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)
    recomputed_damaged: list[int] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


class ProgressBar:
    """A text progress bar on a stream: redrawn in place on a terminal, one line per update
    otherwise (log files)."""

    def __init__(self, total: int, stream: TextIO | None = sys.stderr, label: str = "label",
                 width: int = 30):
        self.total, self.stream, self.label, self.width = total, stream, label, width
        self.done = 0
        self.notes = ""
        self.t0 = time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, n: int = 1, notes: str = "") -> None:
        self.done += n
        self.notes = notes
        if self.stream is None:
            return
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        line = (f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total}"
                f" frames, {_clock(elapsed)} elapsed, eta {_clock(eta)}"
                + (f", {notes}" if notes else ""))
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# --------------------------------------------------------------------------- groups
def _group_names(folder: str, systems: Sequence[System]) -> list[str]:
    """Group folder name of every frame; creates the group folders and their group.json."""
    taken: dict[str, tuple] = {}
    for name in sorted(os.listdir(folder)):
        gfile = os.path.join(folder, name, GROUP_FILE)
        if os.path.isfile(gfile):
            with open(gfile) as f:
                g = json.load(f)
            taken[name] = (tuple(g["symbols"]), int(g["charge"]), bool(g.get("periodic", False)))
    by_key = {k: n for n, k in taken.items()}
    names = []
    for s in systems:
        # a periodic cell and a cluster of the same atoms are different systems (own group)
        key = (s.symbols, s.charge, s.lattice is not None)
        if key not in by_key:
            name = group_base_name(s.symbols, s.charge) + ("_pbc" if key[2] else "")
            if name in taken:
                name += "_" + hashlib.sha1(" ".join(s.symbols).encode()).hexdigest()[:8]
            os.makedirs(os.path.join(folder, name), exist_ok=True)
            write_json(os.path.join(folder, name, GROUP_FILE),
                       dict(symbols=list(s.symbols), atomic_numbers=s.atomic_numbers.tolist(),
                            charge=s.charge, n_atoms=s.n_atoms, periodic=key[2]))
            taken[name] = key
            by_key[key] = name
        names.append(by_key[key])
    return names


def _same_geometry(arrays: dict, header: dict, system: System) -> bool:
    return (tuple(header.get("symbols", ())) == system.symbols
            and int(arrays["charge"]) == system.charge
            and arrays["coords"].shape == system.coords.shape
            and np.allclose(arrays["coords"], system.coords, rtol=0, atol=1e-9)
            and ("lattice" in arrays) == (system.lattice is not None)
            and (system.lattice is None
                 or np.allclose(arrays["lattice"], system.lattice, rtol=0, atol=1e-9)))


# --------------------------------------------------------------------------- workers
def _init_worker(threads: int) -> None:
    from pyscf import lib

    lib.num_threads(threads)


def _label_one(index: int, system: System, settings: LabelSettings, path: str,
               header: dict) -> tuple[int, bool, float]:
    """Label one frame and write it; returns (index, converged (both), seconds)."""
    t0 = time.perf_counter()
    arrays = get_labeller(settings.labeller)(system, settings)
    conv = bool(arrays["base/converged"]) and bool(arrays["target/converged"])
    header = dict(header, seconds=round(time.perf_counter() - t0, 3),
                  converged=dict(base=bool(arrays["base/converged"]),
                                 target=bool(arrays["target/converged"])))
    write_frame(path, arrays, header)
    return index, conv, time.perf_counter() - t0


def label_frames(systems: Sequence[System], out, settings: LabelSettings, workers: int = 1,
                 progress: TextIO | None = sys.stderr, source: str | None = None,
                 indices: Sequence[int] | None = None, threads: int | None = None
                 ) -> LabelReport:
    """Label ``systems`` into the dataset folder ``out`` (resumable; see the module docstring).

    Args:
        systems: geometries (their basis/grid fields are ignored: ``settings`` decides).
        out: dataset folder.
        settings: what to compute; must equal the settings already in ``out``, if any.
        workers: processes labelling in parallel (1: in this process).
        progress: stream for the progress bar and messages, or None.
        source: description of the input (recorded in every frame header).
        indices: frame index of each system (default 0, 1, ...); names the frame files.
        threads: OpenMP threads per labelling process (default: all cores with one worker,
            ``cpus // workers`` with several).
    Returns:
        :class:`LabelReport`.
    Raises:
        DataFileError: settings differ from those in ``out``, or ``out`` holds a different
            geometry under one of the frame indices.
    """
    t0 = time.perf_counter()
    out = os.fspath(out)
    indices = list(range(len(systems))) if indices is None else [int(i) for i in indices]
    if len(indices) != len(systems) or len(set(indices)) != len(indices):
        raise DataFileError("frame indices must be unique, one per system")
    get_labeller(settings.labeller)
    if systems:  # fail early and clearly on a basis that does not cover the elements
        systems[0].replace(lattice=None).to_pyscf(basis=settings.basis)  # (elements only)
    open_for_writing(out, settings, extra=dict(source=source))
    clean_stale_temporaries(out)
    groups = _group_names(out, systems)
    say = (lambda m: print(m, file=progress, flush=True)) if progress else (lambda m: None)
    report = LabelReport()
    todo = []
    for i, system, group in zip(indices, systems, groups):
        path = os.path.join(out, group, frame_filename(i))
        if os.path.exists(path):
            try:
                arrays, header = read_frame(path)
            except DataFileError as err:
                say(f"label: {err}; recomputing frame {i}")
                os.remove(path)
                report.recomputed_damaged.append(i)
            else:
                if not _same_geometry(arrays, header, system):
                    raise DataFileError(
                        f"{path} holds a different geometry than frame {i} of the input "
                        f"({source or 'given systems'}): this folder was labelled from another "
                        "input. Use a new --out folder.")
                if LabelSettings.from_dict(header["settings"]) != settings:
                    raise DataFileError(f"{path} was labelled with different settings; refusing "
                                        "to mix. Use a new --out folder.")
                report.skipped.append(i)
                if not all(header.get("converged", {}).values()):
                    report.unconverged.append(i)
                continue
        header = dict(index=i, group=group, source=source, symbols=list(system.symbols),
                      settings=settings.to_dict())
        todo.append((i, system, settings, path, header))
    if report.skipped:
        say(f"label: {len(report.skipped)} of {len(systems)} frames already done in {out}")
    bar = ProgressBar(len(todo), progress)

    def finished(index, conv):
        report.computed.append(index)
        if not conv:
            report.unconverged.append(index)
        notes = f"{len(report.unconverged)} unconverged" if report.unconverged else ""
        if report.failed:
            notes += (", " if notes else "") + f"{len(report.failed)} failed"
        bar.update(1, notes)

    try:
        if workers <= 1 or len(todo) <= 1:
            if threads is not None and todo:
                _init_worker(threads)
            for task in todo:
                try:
                    index, conv, _ = _label_one(*task)
                except (KeyboardInterrupt, DataFileError):
                    raise
                except Exception as err:  # keep going; report at the end
                    report.failed[task[0]] = f"{type(err).__name__}: {err}"
                    bar.update(1, f"frame {task[0]} failed")
                    continue
                finished(index, conv)
        else:
            if threads is None:
                threads = max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_init_worker, initargs=(threads,)) as pool:
                futures = {pool.submit(_label_one, *task): task[0] for task in todo}
                try:
                    for fut in cf.as_completed(futures):
                        try:
                            index, conv, _ = fut.result()
                        except Exception as err:
                            report.failed[futures[fut]] = f"{type(err).__name__}: {err}"
                            bar.update(1, f"frame {futures[fut]} failed")
                            continue
                        finished(index, conv)
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    report.computed.sort()
    report.unconverged.sort()
    report.seconds = time.perf_counter() - t0
    return report

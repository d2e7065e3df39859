"""Shared pieces of the benchmark scripts: water clusters, machine description, tables."""

from __future__ import annotations

import os
import platform
import subprocess

import numpy as np


def water_cluster(n: int, seed: int = 0, spacing: float = 2.9):
    """(H2O)_n on a jittered cubic lattice (Angstrom), random orientations, O–O ≥ ~2.6 Å.

    A deterministic stand-in for a liquid-like cluster of the right size and density,
    good for timing (the electronic structure cost depends on size, not on the H-bond details).
    """
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n ** (1 / 3)))
    sites = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)],
                     float)[:n] * spacing
    sites += rng.uniform(-0.15, 0.15, sites.shape)
    r, half = 0.9572, np.deg2rad(104.52) / 2
    local = np.array([[0, 0, 0], [r * np.sin(half), 0, r * np.cos(half)],
                      [-r * np.sin(half), 0, r * np.cos(half)]])
    symbols, coords = [], []
    for o in sites:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        symbols += ["O", "H", "H"]
        coords += list(o + local @ q.T)
    return symbols, np.array(coords)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def machine() -> str:
    """A one-line description of the machine: CPU model and cores, or the JAX GPU."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{dev.device_kind} ({dev.platform}), jax {jax.__version__}"
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(l.split(":", 1)[1].strip() for l in out.splitlines()
                     if l.startswith("Model name"))
    except Exception:  # noqa: BLE001
        pass
    return f"{model}, {os.cpu_count()} cores (CPU), jax {jax.__version__}"


def scaling_exponent(rows: list[dict], key: str, n_min: int = 2) -> float:
    """Least-squares slope k of log t = k log n + c over rows with n ≥ ``n_min`` (NaN if < 2)."""
    pts = [(r["n"], r[key]) for r in rows
           if r["n"] >= n_min and isinstance(r[key], float) and np.isfinite(r[key]) and r[key] > 0]
    if len(pts) < 2:
        return float("nan")
    n, t = np.log(np.array(pts, dtype=float)).T
    return float(np.polyfit(n, t, 1)[0])


def exponents_line(rows: list[dict], keys: list[str], n_min: int = 2) -> str:
    """'Fitted scaling t ∝ n^k (n ≥ n_min): key k, ...' for the given time columns."""
    parts = [f"`{k}` {scaling_exponent(rows, k, n_min):.2f}" for k in keys]
    return f"\nFitted scaling t ∝ n^k over n ≥ {n_min}: " + ", ".join(parts) + ".\n"


def report(header: str, rows: list[dict], out: str | None, footer: str = "") -> None:
    """Print ``header``, the rows as a markdown table and ``footer``; append them to ``out``."""
    text = header + markdown_table(rows) + footer
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table; columns: every key in order of first appearance (a row
    without a key shows an empty cell)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(
            f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, ""))
            for k in keys) + " |")
    return "\n".join(lines)

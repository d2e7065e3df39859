"""The density refresh of a training set in fixed-density mode: the DeePKS-SCF with θ frozen.

:func:`refresh_densities` reconverges Γ*(θ) of one bucket's stacked frames in one jitted call
(vmapped, or ``lax.map`` on a CPU), MINAO fallback for the frames that fail;
:func:`bucket_cache` turns a bucket's Γ (refreshed or checkpointed) into its
:class:`jaxks.train.predict.FixedCache` stack, reusing the refresh's last Fock build. Compiled
functions are kept in :data:`_COMPILED`, shared with the step loop (:mod:`jaxks.train.loop`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.deepks.correction import DeePKSParams
from jaxks.scf import SCFOptions, _scf_loop
from jaxks.train.buckets import Bucket
from jaxks.train.predict import PredictSetup, fixed_cache

#: Compiled steps and refresh functions, shared by every run of the process (a resumed run, a
#: second stage with the same settings and tests reuse them instead of compiling again).
_COMPILED: dict = {}


@dataclasses.dataclass
class RefreshStats:
    """Counts of a density refresh (added over buckets).

    Attributes:
        frames: frames refreshed.
        fallbacks: frames whose warm-started SCF did not converge, run again from MINAO.
        unconverged: frames whose MINAO run did not converge either (they keep their Γ).
        cycles: SCF cycles of all frames (a fallback's both runs counted).
        max_cycles: most cycles of one frame's warm-started run (the vmapped loop runs that
            many cycles for the whole bucket).
        seconds: wall time.
    """

    frames: int = 0
    fallbacks: int = 0
    unconverged: int = 0
    cycles: int = 0
    max_cycles: int = 0
    seconds: float = 0.0

    def __add__(self, other: "RefreshStats") -> "RefreshStats":
        return RefreshStats(self.frames + other.frames, self.fallbacks + other.fallbacks,
                            self.unconverged + other.unconverged, self.cycles + other.cycles,
                            max(self.max_cycles, other.max_cycles),
                            self.seconds + other.seconds)

    @property
    def mean_cycles(self) -> float:
        return self.cycles / max(self.frames, 1)


def _refresh_scf_fn(term, xc, options: SCFOptions, sequential: bool = False):
    """jit(vmap) of the DeePKS-SCF with θ frozen: (params, frames [n], guesses [n, nao, nao],
    F_base⁰ [n, nao, nao], E_base⁰ [n]) -> (Γ, F_base [n, nao, nao], E_base [n], converged [n],
    cycles [n]); with ``sequential``
    the frames run one after the other inside the one call (``lax.map``), each loop stopping
    at its own convergence.

    F_base[Γ] = F[Γ] − ∂E_δ/∂Γ and E_base = E − E_δ come from the loop's last Fock build (at
    the returned Γ), so the fixed-density cache needs no second Fock build and no second
    compilation of the grid code. F_base⁰, E_base⁰: those of the guess where known (E_base⁰ ≠ 0:
    the previous refresh's), which then starts the loop without a Fock build
    (:func:`jaxks.scf._scf_loop` ``start``); zeros where not. One compilation per shape and
    settings."""
    key = ("refresh_scf", term, xc, options, sequential)
    if key not in _COMPILED:
        def one(params, frame, guess, fock0, energy0):
            theta = DeePKSParams(model=params, overlaps=frame.overlaps,
                                 element_onehot=frame.onehot)
            s = _scf_loop(frame.ints, theta, guess, xc, term, options,
                          start=(fock0, energy0, energy0 != 0))
            v_delta = jax.grad(term)(s["gamma"], theta)
            fock_base = s["fock"] - 0.5 * (v_delta + v_delta.T)
            energy_base = s["parts"].total - s["parts"].term
            return s["gamma"], fock_base, energy_base, s["converged"], s["cycle"]

        if sequential:
            def run(params, frames, guesses, focks, energies):
                return jax.lax.map(lambda x: one(params, *x),
                                   (frames, guesses, focks, energies))
        else:
            run = jax.vmap(one, in_axes=(None, 0, 0, 0, 0))
        _COMPILED[key] = jax.jit(run)
    return _COMPILED[key]


def sequential_refresh_default() -> bool:
    """Whether a refresh runs the frames of a bucket one after the other (inside its one call)
    rather than ``vmap``ped: on a CPU. There a Fock build is compute-bound (grid work), so a
    vmapped cycle costs as much per frame as a single-frame one (measured, (H2O)1, 2-core Xeon)
    while the vmapped loop runs every frame for as many cycles as the slowest needs; on a GPU
    the batch fills the device."""
    return jax.default_backend() == "cpu"


def refresh_densities(params, frames, guesses, term, xc, options: SCFOptions, *,
                      warm_cycles: int = 0, sequential: bool | None = None, bases=None):
    """Self-consistent densities Γ*(θ) of the stacked frames of one composition, θ frozen.

    The DeePKS-SCF F[Γ] = F_base[Γ] + ∂E_δ(Γ, θ)/∂Γ of every frame runs in one jitted,
    vmapped call (``sequential``: the frames one after the other inside that call; default
    :func:`sequential_refresh_default`), each frame started from its ``guesses`` entry (its
    last density). A vmapped loop runs until its slowest frame stops, so this first pass is
    capped at ``warm_cycles`` cycles (0: ``options.max_cycles``): one frame that does not
    converge would otherwise hold the whole bucket for the full cap. Each frame that fails is run again alone from its
    MINAO guess (``frame.ints.guess``) with ``options.max_cycles`` (counted as a fallback); a
    frame that fails both keeps its guess (counted as unconverged).

    Args:
        params: model parameters θ (the network; frozen here).
        frames: :class:`jaxks.train.frames.Frame` stack [n] (``ints``, ``overlaps``,
            ``onehot`` are used).
        guesses: warm starts [n, nao, nao] (electrons).
        term, xc, options: the DeePKS energy term, base functional and SCF settings.
        bases: optional (F_base [n, nao, nao], E_base [n]) at ``guesses`` (Hartree; E_base 0
            where unknown), e.g. the previous refresh's: the warm-started loops then begin
            without a Fock build (one fewer per frame; the same fixed point).
    Returns:
        (Γ [n, nao, nao], base, :class:`RefreshStats`) with base = (F_base [n, nao, nao],
        E_base [n]) at Γ (Hartree), or None when a frame kept its guess (its F_base is then
        not at Γ: the caller builds it).
    """
    t0 = time.perf_counter()
    warm = options
    if warm_cycles and warm_cycles < options.max_cycles:
        warm = dataclasses.replace(options, max_cycles=warm_cycles)
    if sequential is None:
        sequential = sequential_refresh_default()
    if bases is None:
        bases = (jnp.zeros_like(guesses), jnp.zeros(guesses.shape[0], guesses.dtype))
    gamma, fock, energy, ok, cycles = _refresh_scf_fn(term, xc, warm, sequential)(
        params, frames, guesses, *bases)
    ok, cycles = np.array(ok), np.array(cycles)
    stats = RefreshStats(frames=len(ok), max_cycles=int(cycles.max(initial=0)))
    failed = np.flatnonzero(~ok)
    if len(failed):
        single = _refresh_scf_fn(term, xc, options)
        for i in failed:
            frame = jax.tree_util.tree_map(lambda x: x[i:i + 1], frames)
            guess = frame.ints.guess
            g1, f1, e1, ok1, c1 = single(params, frame, guess, jnp.zeros_like(guess),
                                         jnp.zeros(1, guess.dtype))
            cycles[i] += int(c1[0])
            if bool(ok1[0]):
                ok[i] = True
                gamma, fock, energy = (gamma.at[i].set(g1[0]), fock.at[i].set(f1[0]),
                                       energy.at[i].set(e1[0]))
    stats.fallbacks, stats.unconverged = len(failed), int(np.sum(~ok))
    stats.cycles = int(cycles.sum())
    base = (fock, energy)
    if stats.unconverged:
        gamma, base = jnp.where(jnp.asarray(ok)[:, None, None], gamma, guesses), None
    stats.seconds = time.perf_counter() - t0
    return gamma, base, stats


def chunks(bucket: Bucket, width: int):
    """Positions of a bucket in chunks of exactly ``width`` (the last padded by repetition):
    yields (real positions [≤ width], padded positions [width] int32)."""
    for start in range(0, bucket.size, width):
        pos = np.arange(start, min(start + width, bucket.size))
        yield pos, np.resize(pos, width).astype(np.int32)


def cache_fn(setup: PredictSetup, given_fock: bool):
    """jit(vmap) of :func:`fixed_cache`: (frames [n], Γ [n, nao, nao]) -> cache, or with
    ``given_fock`` (frames, Γ, F_base [n, nao, nao], E_base [n]) -> cache (no Fock build).
    One compilation per setup and shape."""
    key = ("cache", setup, given_fock)
    if key not in _COMPILED:
        if given_fock:
            fn = lambda f, g, fb, eb: fixed_cache(f, g, setup, fb, eb)  # noqa: E731
        else:
            fn = lambda f, g: fixed_cache(f, g, setup)  # noqa: E731
        _COMPILED[key] = jax.jit(jax.vmap(fn))
    return _COMPILED[key]


def bucket_cache(params, gammas, stored: dict, setup: PredictSetup, bucket: Bucket,
                 frames: Callable, *, scf: bool, warm_cycles: int, width: int,
                 options: SCFOptions | None = None):
    """The :class:`FixedCache` stack of one bucket, optionally after a density refresh.

    With ``scf``, Γ is first reconverged with θ = ``params`` frozen (:func:`refresh_densities`,
    warm-started from ``gammas``, capped at ``warm_cycles``, with the SCF settings ``options``,
    default ``setup.options``; the trainer passes the looser refresh tolerances,
    :func:`jaxks.train.schedule.refresh_options`) and the cache reuses its last Fock build.
    Without, the cache is built at ``gammas``, from the checkpointed F_base and E_base in
    ``stored`` when an earlier refresh set them (E_base all non-zero), which makes a resumed run
    bit-for-bit equal to an uninterrupted one. Force terms (3·naux·nao² integrals per frame)
    only when ``setup.with_forces``, in chunks of ``width`` frames.

    Args:
        gammas: the bucket's current densities [n, nao, nao] (electrons).
        stored: {"fock": F_base [n, nao, nao], "energy": E_base [n]} (Hartree), zeros if unset.
        frames: ``frames(forces, positions)`` -> the bucket's frames stacked and placed on the
            device(s), force integrals only with ``forces``, at ``positions`` (None: all).
    Returns:
        (cache, :class:`RefreshStats`) — zero stats without ``scf``.
    """
    base, stats = None, RefreshStats()
    if not scf and bool(jnp.all(stored["energy"] != 0)):  # set by an earlier refresh
        base = (stored["fock"], stored["energy"])
    if scf:
        # the stored F_base, E_base (where set) start each frame's loop without a Fock build
        gammas, base, stats = refresh_densities(params, frames(False, None), gammas, setup.term,
                                                setup.xc, options or setup.options,
                                                warm_cycles=warm_cycles,
                                                bases=(stored["fock"], stored["energy"]))
    extra = () if base is None else base
    fn = cache_fn(setup, base is not None)
    if not setup.with_forces:
        return fn(frames(False, None), gammas, *extra), stats
    parts = []
    for real, pos in chunks(bucket, width):
        cache = fn(frames(True, pos), gammas[pos], *(x[pos] for x in extra))
        parts.append(jax.tree_util.tree_map(lambda x: x[:len(real)], cache))
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts), stats


def refresh_line(k: int, n_buckets: int, key: str, st: RefreshStats) -> str:
    """The progress line of one bucket's refresh."""
    return (f"refresh {k + 1}/{n_buckets} {key}: {st.frames} frames in {st.seconds:.1f} s, "
            f"cycles mean {st.mean_cycles:.1f} max {st.max_cycles}, MINAO fallbacks "
            f"{st.fallbacks}, unconverged {st.unconverged}\n")


def refresh_fields(stats: RefreshStats) -> dict:
    """Log fields of the density refresh before a step (zeros when there was none)."""
    return dict(refresh_unconverged=stats.unconverged, refresh_fallbacks=stats.fallbacks,
                refresh_s=round(stats.seconds, 3))

"""Restricted Kohn-Sham SCF, the whole loop one jit-compiled ``lax.while_loop``.

Energy of a closed-shell density matrix Γ (total, tr ΓS = N_elec), atomic units:

    E[Γ] = tr(Γh) + ½ tr(Γ J[Γ]) + E_xc[Γ] + E_K[Γ] + E_term(Γ, θ) + E_nuc
    J_μν = Σ_P B_P,μν Σ_λσ B_P,λσ Γ_λσ                     (density-fitted Coulomb)
    E_K  = −¼ tr(Γ (α K[Γ] + β K_SR[Γ]))                   (exact exchange of hybrids, jaxks.exchange)
    F[Γ] = ∂E/∂Γ = h + J[Γ] + V_xc[Γ] − ½(α K + β K_SR) + ∂E_term/∂Γ
    F C = S C ε  (canonical orthogonalisation X, XᵀSX = 1),   Γ = 2 Σ_{i<N/2} c_i c_iᵀ

``E_term`` is the extension point: any hashable callable ``term(Γ, θ) -> scalar`` (a neural
correction, a scaled functional, an external potential) enters energy and Fock matrix the same
way, its potential obtained by ``jax.grad``.

Each iteration extrapolates the Fock matrix with CDIIS on the orthonormal commutator
e = Xᵀ(FΓS − SΓF)X, optionally level-shifts the virtual space and damps the density, and stops when
|ΔE| < ``e_tol`` and ‖e‖_F < ``comm_tol``. Nothing leaves the device inside the loop.

Fallback (on by default, ``SCFOptions.fallback``): when the commutator norm has not fallen below
0.9 of its best value for ``fallback_patience`` cycles, the loop moves to the next rung of
:data:`FALLBACK_LADDER`, restarting DIIS from the current density: rung 1 level-shifts the
virtual orbitals by 0.3 Eh, rung 2 by 0.5 Eh and damps the density by 0.5 (the remedies a PySCF
user applies by hand). Neither changes the fixed point, only the path to it; the rung reached
is returned (``SCFResult.fallback``: 0 = plain DIIS converged). All inside the one compiled
loop: no recompilation, no host round trip.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxks import compile_cache, exchange
from jaxks.integrals import Integrals
from jaxks.linalg import orthogonalizer
from jaxks.pairs import PairList, pack_weights, unpack
from jaxks.numint import xc_energy_potential
from jaxks.xc import XCFunctional, get_xc


class SCFNotConvergedWarning(RuntimeWarning):
    """An SCF stopped at ``max_cycles`` without meeting its convergence criteria."""


@dataclasses.dataclass(frozen=True)
class SCFOptions:
    """Settings of the SCF loop (hashable: a static argument of the jitted loop).

    Attributes:
        max_cycles: iteration cap.
        e_tol: convergence threshold on |E_k − E_{k−1}| (Hartree).
        comm_tol: threshold on the Frobenius norm of Xᵀ(FΓS − SΓF)X (Hartree).
        diis_space: number of Fock/error pairs kept for CDIIS (0 disables DIIS).
        diis_start: first cycle at which DIIS extrapolates.
        level_shift: shift (Hartree) added to virtual orbital energies while iterating.
        damping: fraction of the previous density mixed into the new one (0 = none).
        fallback: climb :data:`FALLBACK_LADDER` when the loop stalls (see module docstring).
        fallback_patience: cycles without a 10 % gain on the best commutator norm that count
            as a stall.
    """

    max_cycles: int = 100
    e_tol: float = 1e-10
    comm_tol: float = 1e-6
    diis_space: int = 8
    diis_start: int = 1
    level_shift: float = 0.0
    damping: float = 0.0
    fallback: bool = True
    fallback_patience: int = 10


#: Rungs of the convergence fallback, (level shift in Hartree, density damping); rung 0 is the
#: user's own ``level_shift``/``damping``.
FALLBACK_LADDER = ((0.3, 0.0), (0.5, 0.5))


EnergyTerm = Callable[[jax.Array, Any], jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnergyParts:
    """Components of the total energy (Hartree); ``xc`` includes the exact exchange of a hybrid,
    ``exact_exchange`` is that part alone."""

    one_electron: jax.Array
    coulomb: jax.Array
    xc: jax.Array
    term: jax.Array
    nuclear: jax.Array
    exact_exchange: jax.Array | float = 0.0

    @property
    def total(self) -> jax.Array:
        return self.one_electron + self.coulomb + self.xc + self.term + self.nuclear


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SCFResult:
    """The converged (or last) SCF state.

    Attributes:
        energy: total energy (Hartree).
        parts: :class:`EnergyParts`.
        mo_energy: orbital energies ε [n_mo] (Hartree), ascending.
        mo_coeff: orbital coefficients C [nao, n_mo], CᵀSC = 1.
        gamma: total density matrix Γ [nao, nao] the energy is evaluated at.
        fock: Fock matrix F[Γ] [nao, nao] (Hartree).
        converged: bool flag; cycles: iterations used; delta_e, comm_norm: last criteria values.
        fallback: rung of the convergence fallback the loop ended on (0: none was needed; 1, 2:
            :data:`FALLBACK_LADDER`).
    """

    energy: jax.Array
    parts: EnergyParts
    mo_energy: jax.Array
    mo_coeff: jax.Array
    gamma: jax.Array
    fock: jax.Array
    converged: jax.Array
    cycles: jax.Array
    delta_e: jax.Array
    comm_norm: jax.Array
    fallback: jax.Array | int = 0
    n_occ: int = dataclasses.field(metadata=dict(static=True), default=0)

    @property
    def homo(self) -> jax.Array:
        return self.mo_energy[self.n_occ - 1]

    @property
    def lumo(self) -> jax.Array:
        return self.mo_energy[self.n_occ]

    @property
    def gap(self) -> jax.Array:
        """HOMO–LUMO gap (Hartree)."""
        return self.lumo - self.homo


# ----------------------------------------------------------------------------- Fock build
def coulomb(gamma: jax.Array, cderi: jax.Array, pairs: PairList | None = None) -> jax.Array:
    """Density-fitted Coulomb matrix J_μν = Σ_P B_P,μν d_P,  d_P = Σ_λσ B_P,λσ Γ_λσ.

    Args:
        gamma: symmetric density matrix [nao, nao].
        cderi: packed whitened 3-centre tensor [naux, n_pair] on ``pairs``
            (:mod:`jaxks.pairs`; None: the whole triangle, n_pair = nao(nao+1)/2).
    Returns:
        J [nao, nao] (Hartree).
    """
    nao = gamma.shape[0]
    # off-diagonal pairs appear once in the packed triangle but twice in the full contraction
    d = cderi @ pack_weights(gamma, pairs)
    return unpack(d @ cderi, nao, pairs)


def fock_matrix(gamma, ints: Integrals, xc: XCFunctional, term: EnergyTerm | None, params):
    """F[Γ] = ∂E/∂Γ and the energy parts at Γ. Returns (F [nao, nao], :class:`EnergyParts`)."""
    h = ints.hcore
    j = coulomb(gamma, ints.cderi, ints.pairs)
    exc, vxc = xc_energy_potential(gamma, ints, xc)
    fock = h + j + vxc
    e_k = jnp.zeros((), gamma.dtype)
    if exchange.needs_exchange(xc):
        e_k, v_k = exchange.exchange_energy_fock(gamma, ints, xc)
        exc, fock = exc + e_k, fock + v_k
    if term is not None:
        e_term, v_term = jax.value_and_grad(term)(gamma, params)
        fock = fock + 0.5 * (v_term + v_term.T)
    else:
        e_term = jnp.zeros((), gamma.dtype)
    parts = EnergyParts(one_electron=jnp.vdot(gamma, h), coulomb=0.5 * jnp.vdot(gamma, j),
                        xc=exc, term=e_term, nuclear=ints.e_nuc, exact_exchange=e_k)
    return fock, parts


def diagonalize(fock: jax.Array, x: jax.Array):
    """Solve F C = S C ε through X: ε, U = eigh(XᵀFX), C = XU. Returns (ε [n_mo], C [nao, n_mo])."""
    eps, u = jnp.linalg.eigh(x.T @ fock @ x)
    return eps, x @ u


def aufbau_density(mo_coeff: jax.Array, n_occ: int) -> jax.Array:
    """Γ = 2 Σ_{i<n_occ} c_i c_iᵀ [nao, nao]."""
    c = mo_coeff[:, :n_occ]
    return 2.0 * c @ c.T


def commutator_error(fock, gamma, S, x):
    """Orthonormal-basis SCF error e = Xᵀ(FΓS − SΓF)X [n_mo, n_mo] (zero at self-consistency)."""
    fds = fock @ gamma @ S
    return x.T @ (fds - fds.T) @ x


# ----------------------------------------------------------------------------- DIIS
def diis_extrapolate(focks: jax.Array, errors: jax.Array, count: jax.Array) -> jax.Array:
    """CDIIS: F = Σ_i c_i F_i minimising ‖Σ_i c_i e_i‖ subject to Σ_i c_i = 1.

    Args:
        focks, errors: ring buffers [m, nao, nao] and [m, n_mo, n_mo]; slots ≥ count are unused.
        count: number of filled slots (traced int).
    Returns:
        the extrapolated Fock matrix [nao, nao].
    """
    m = focks.shape[0]
    valid = jnp.arange(m) < count
    b = jnp.einsum("iab,jab->ij", errors, errors)
    scale = jnp.max(jnp.where(valid, jnp.diag(b), 0.0))
    scale = jnp.where(scale > 0, scale, 1.0)
    vv = valid[:, None] & valid[None, :]
    # Unused slots decouple as identity rows so the bordered system stays square and regular.
    b = jnp.where(vv, b / scale, jnp.eye(m, dtype=b.dtype))
    # the bordered matrix in one concatenation (three scatter updates compiled to three kernels)
    border = jnp.where(valid, -1.0, 0.0).astype(b.dtype)
    a = jnp.concatenate([jnp.concatenate([b, border[:, None]], axis=1),
                         jnp.concatenate([border, jnp.zeros(1, b.dtype)])[None, :]], axis=0)
    rhs = jnp.zeros(m + 1, b.dtype).at[m].set(-1.0)
    c = jnp.linalg.lstsq(a, rhs)[0][:m]
    c = jnp.where(valid, c, 0.0)
    f = jnp.einsum("i,iab->ab", c, focks)
    # An ill-conditioned history can give garbage; fall back to the newest Fock matrix.
    newest = focks[(count - 1) % m]
    ok = jnp.all(jnp.isfinite(f)) & (jnp.abs(jnp.sum(c) - 1.0) < 1e-6)
    return jnp.where(ok, f, newest)


# ----------------------------------------------------------------------------- the loop
#: How many times the SCF loop has been traced (compiled); a check on recompilation.
TRACE_COUNT = {"scf_loop": 0}


def _scf_loop(ints: Integrals, params, gamma0, xc: XCFunctional, term, options: SCFOptions,
              start=None):
    """The SCF loop's final state (a dict: ``gamma``, ``fock``, ``parts``, ``converged``,
    ``cycle``, ...), from the guess Γ₀ = ``gamma0`` [nao, nao].

    ``start``: optional (F_base [nao, nao], E_base [], use [] bool), the Fock matrix and energy
    of Γ₀ without the term (Hartree), already known (a fixed-mode refresh has them from the
    previous one). Where ``use`` is true the loop's first pass takes F[Γ₀] = F_base +
    ∂E_term/∂Γ₀ from them instead of building it (``lax.cond``: one Fock build fewer when the
    frames run one by one; under ``vmap`` both branches run). E_base enters only ΔE of the
    second cycle, so the returned energy parts always come from a Fock build."""
    TRACE_COUNT["scf_loop"] += 1
    n_occ = ints.n_occ
    x = orthogonalizer(ints.S, ints.n_mo)
    S = ints.S
    m = max(options.diis_space, 1)
    nao, n_mo = ints.nao, ints.n_mo

    def build(gamma):
        f, parts = fock_matrix(gamma, ints, xc, term, params)
        return f, parts, commutator_error(f, gamma, S, x)

    # The Fock build at the guess is the loop's first pass (cycle −1 → 0), not a separate call
    # before it: the XC block code then appears once in the compiled program, not twice.
    dtype = gamma0.dtype
    zero = jnp.zeros((), dtype)
    state = dict(
        gamma=gamma0, fock=jnp.zeros((nao, nao), dtype),
        parts=EnergyParts(zero, zero, zero, zero, zero), energy=jnp.asarray(jnp.inf, dtype),
        delta_e=jnp.asarray(jnp.inf, dtype), comm=jnp.asarray(jnp.inf, dtype),
        cycle=-jnp.ones((), jnp.int32), converged=jnp.zeros((), bool),
        focks=jnp.zeros((m, nao, nao), dtype), errors=jnp.zeros((m, n_mo, n_mo), dtype),
        count=jnp.zeros((), jnp.int32), rung=jnp.zeros((), jnp.int32),
        best=jnp.asarray(jnp.inf, dtype), stall=jnp.zeros((), jnp.int32))
    ladder = ((options.level_shift, options.damping),) + (FALLBACK_LADDER if options.fallback
                                                          else ())
    shifts = jnp.asarray([r[0] for r in ladder], dtype)
    dampings = jnp.asarray([r[1] for r in ladder], dtype)
    shifted = any(r[0] for r in ladder)
    damped = any(r[1] for r in ladder)

    def carried(f, parts, err):
        # one dtype for the carry (E_nuc of a single atom is an integer 0)
        return f, jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), parts), err

    def given(gamma):
        """F[Γ₀] and its energy from ``start`` (F_base, E_base), the term added."""
        f, e = start[0], start[1]
        e_term = zero
        if term is not None:
            e_term, v_term = jax.value_and_grad(term)(gamma, params)
            f = f + 0.5 * (v_term + v_term.T)
        parts = EnergyParts(one_electron=e, coulomb=zero, xc=zero, term=e_term, nuclear=zero,
                            exact_exchange=zero)
        return carried(f, parts, commutator_error(f, gamma, S, x))

    def cond(s):
        return (~s["converged"]) & (s["cycle"] < options.max_cycles)

    def body(s):
        f = s["fock"]
        if options.diis_space > 0:
            f = jnp.where(s["cycle"] + 1 >= options.diis_start,
                          diis_extrapolate(s["focks"], s["errors"], jnp.minimum(s["count"], m)),
                          f)
        if shifted:  # virtual-space shift: F + σ(S − ½SΓS) (Γ holds 2 electrons per orbital)
            sgs = S @ s["gamma"] @ S
            f = f + shifts[s["rung"]] * (S - 0.5 * sgs)
        _, c = diagonalize(f, x)
        gamma = aufbau_density(c, n_occ)
        if damped:
            damp = dampings[s["rung"]]
            gamma = (1.0 - damp) * gamma + damp * s["gamma"]
        gamma = jnp.where(s["cycle"] < 0, gamma0, gamma)   # first pass: the guess itself
        if start is None:
            f_new, p_new, err = carried(*build(gamma))
        else:
            f_new, p_new, err = jax.lax.cond((s["cycle"] < 0) & start[2], given,
                                             lambda g: carried(*build(g)), gamma)
        e_new = p_new.total
        comm = jnp.linalg.norm(err)
        de = jnp.abs(e_new - s["energy"])
        converged = (de < options.e_tol) & (comm < options.comm_tol)
        # stall detection: cycles since the commutator last beat 0.9 × its best value
        gained = comm < 0.9 * s["best"]
        best = jnp.where(gained, comm, s["best"])
        stall = jnp.where(gained, 0, s["stall"] + 1)
        climb = ((stall >= options.fallback_patience) & ~converged
                 & (s["rung"] < len(ladder) - 1))
        # a new rung restarts DIIS: its history is this cycle's Fock matrix alone, in slot 0
        count = jnp.where(climb, 1, s["count"] + 1)
        slot = jnp.where(climb, 0, s["count"] % m)
        return dict(
            gamma=gamma, fock=f_new, parts=p_new, energy=e_new, delta_e=de, comm=comm,
            cycle=s["cycle"] + 1, converged=converged,
            focks=s["focks"].at[slot].set(f_new), errors=s["errors"].at[slot].set(err),
            count=count, rung=s["rung"] + climb.astype(jnp.int32),
            best=jnp.where(climb, jnp.inf, best), stall=jnp.where(climb, 0, stall))

    s = jax.lax.while_loop(cond, body, state)
    return s


def _scf_run(ints: Integrals, params, gamma0, xc: XCFunctional, term, options: SCFOptions):
    """The SCF loop and its result in one program: the Fock matrix and energy parts of the last
    density come from the loop state (no second Fock build, hence no second compilation of the
    XC code), only the final diagonalisation is added. Equal to :func:`finalize` at that Γ."""
    s = _scf_loop(ints, params, gamma0, xc, term, options)
    x = orthogonalizer(ints.S, ints.n_mo)
    eps, c = diagonalize(s["fock"], x)
    return SCFResult(energy=s["parts"].total, parts=s["parts"], mo_energy=eps, mo_coeff=c,
                     gamma=s["gamma"], fock=s["fock"], converged=s["converged"],
                     cycles=s["cycle"], delta_e=s["delta_e"], comm_norm=s["comm"],
                     fallback=s["rung"], n_occ=ints.n_occ)


_scf_loop_jit = jax.jit(_scf_run, static_argnames=("xc", "term", "options"))
# Least-recently-used, bounded: every compiled executable keeps its machine code mapped, and a
# process that meets many shapes (labelling clusters of many sizes) must not accumulate them.
_COMPILED: collections.OrderedDict = collections.OrderedDict()
MAX_COMPILED = 16


def _compiled_loop(ints, params, guess, xc, term, options):
    """Ahead-of-time compiled SCF loop, cached on static settings and argument shapes, so the
    compile time can be reported separately and repeated calls never recompile.

    Looked up in memory, then in jaxks's executable cache on disk (another process compiled it:
    loaded without tracing, :mod:`jaxks.compile_cache`), else traced and compiled (JAX's
    persistent cache may still supply the XLA executable) and written to the disk cache."""
    args = (ints, params, guess)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    key = (treedef, tuple((jnp.shape(v), jnp.result_type(v)) for v in leaves), xc, term, options)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = _load_or_compile(args, xc, term, options)
        _COMPILED[key] = fn
        while len(_COMPILED) > MAX_COMPILED:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return fn


def _load_or_compile(args, xc, term, options):
    if compile_cache.executable_dir() is None:
        # the executable cache is off (library use): no key (it hashes jaxks's source) and no
        # watching of JAX's persistent cache
        return _scf_loop_jit.lower(*args, xc=xc, term=term, options=options).compile()
    disk_key = compile_cache.executable_key(
        "jaxks.scf._scf_run", args, dict(xc=xc, term=term, options=options))
    fn = compile_cache.load_executable(disk_key, args)
    if fn is not None:
        fn._jaxks_disk_key = disk_key  # to discard the entry should it fail to run
        return fn
    with compile_cache.watch_persistent_cache() as seen:
        fn = _scf_loop_jit.lower(*args, xc=xc, term=term, options=options).compile()
    if disk_key is not None:
        compile_cache.store_executable(disk_key, fn, seen)
    return fn


def clear_compiled() -> None:
    """Drop every compiled SCF loop held by :func:`run_scf` (and JAX's own caches).

    Compiled XLA executables keep their code mapped in memory; a long-lived process (a notebook,
    a test session) that has compiled many shapes can release them with this.
    """
    _COMPILED.clear()
    jax.clear_caches()


def finalize(ints: Integrals, params, gamma, xc: XCFunctional, term, *, loop_state=None,
             eigh=None) -> SCFResult:
    """One Fock build and diagonalisation at Γ: the observables of the SCF solution.

    Differentiable: with ``eigh`` a degeneracy-safe eigensolver and Γ carrying implicit
    derivatives, every field of the result carries correct derivatives.
    """
    fock, parts = fock_matrix(gamma, ints, xc, term, params)
    x = orthogonalizer(ints.S, ints.n_mo)
    eigh = eigh or jnp.linalg.eigh
    eps, u = eigh(x.T @ fock @ x)
    c = x @ u
    if loop_state is None:
        loop_state = dict(converged=jnp.ones((), bool), cycle=jnp.zeros((), jnp.int32),
                          delta_e=jnp.zeros(()), comm=jnp.zeros(()))
    return SCFResult(energy=parts.total, parts=parts, mo_energy=eps, mo_coeff=c, gamma=gamma,
                     fock=fock, converged=loop_state["converged"], cycles=loop_state["cycle"],
                     delta_e=loop_state["delta_e"], comm_norm=loop_state["comm"],
                     fallback=loop_state.get("rung", 0), n_occ=ints.n_occ)




def core_guess(ints: Integrals) -> jax.Array:
    """Density of the core Hamiltonian's lowest N/2 orbitals (a guess needing no PySCF)."""
    x = orthogonalizer(ints.S, ints.n_mo)
    _, c = diagonalize(ints.hcore, x)
    return aufbau_density(c, ints.n_occ)


def resolve_xc(xc) -> XCFunctional:
    return get_xc(xc) if isinstance(xc, str) else xc


def run_scf(ints: Integrals, xc: str | XCFunctional = "pbe", *, term: EnergyTerm | None = None,
            params=None, options: SCFOptions = SCFOptions(), guess: jax.Array | None = None,
            warn: bool = True, return_timings: bool = False):
    """Run the jit-compiled restricted Kohn-Sham SCF.

    Args:
        ints: integrals of the system (:func:`jaxks.integrals.compute_integrals`).
        xc: functional name (``"pbe"``, ``"lda"`` ...) or :class:`jaxks.xc.XCFunctional`.
        term: optional hashable ``term(Γ, θ) -> E`` added to the energy; ∂E/∂Γ joins the Fock matrix.
        params: θ, any pytree passed to ``term``.
        options: :class:`SCFOptions`.
        guess: initial density matrix [nao, nao]; default the integrals' MINAO guess if present,
            else the core-Hamiltonian guess.
        warn: emit :class:`SCFNotConvergedWarning` when the loop does not converge.
    Returns:
        :class:`SCFResult` (and a dict of timings ``compile``, ``scf`` in seconds if asked).
    """
    xc = resolve_xc(xc)
    exchange.check_integrals(ints, xc)
    if guess is None:
        guess = ints.guess if ints.guess is not None else core_guess(ints)
    traced_before = TRACE_COUNT["scf_loop"]
    t0 = time.perf_counter()
    compiled = _compiled_loop(ints, params, guess, xc, term, options)
    t1 = time.perf_counter()
    try:
        result = jax.block_until_ready(compiled(ints, params, guess))
    except jax.errors.JaxRuntimeError:
        disk_key = getattr(compiled, "_jaxks_disk_key", None)
        if disk_key is None:
            raise
        # an executable from the disk cache that does not run (a damaged entry): compile anew
        compile_cache.discard_executable(disk_key)
        _COMPILED.clear()
        compiled = _compiled_loop(ints, params, guess, xc, term, options)
        t1 = time.perf_counter()
        result = jax.block_until_ready(compiled(ints, params, guess))
    t2 = time.perf_counter()
    if warn and not bool(result.converged):
        warnings.warn(
            f"SCF did not converge in {int(result.cycles)} cycles: |dE| = "
            f"{float(result.delta_e):.2e} Eh (tol {options.e_tol:.0e}), commutator norm = "
            f"{float(result.comm_norm):.2e} (tol {options.comm_tol:.0e}), fallback rung "
            f"{int(result.fallback)}. Try more max_cycles, level_shift or damping.",
            SCFNotConvergedWarning, stacklevel=2)
    if return_timings:
        return result, dict(compile=t1 - t0, scf=t2 - t1,
                            traced=TRACE_COUNT["scf_loop"] - traced_before)
    return result

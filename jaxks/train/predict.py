"""The model's prediction for one frame — the one function training and ``jaxks eval`` share.

Two ways to place the DeePKS correction E_δ(Γ, θ) on top of the base functional (θ the network
parameters, Γ the AO density matrix, atomic units throughout):

* **self-consistent** (:func:`predict_scf`): Γ* = Φ(Γ*, θ) by the jit-compiled SCF, differentiated
  implicitly (:func:`jaxks.implicit.solve`); every observable is that of the converged DeePKS-SCF.
* **fixed density** (:func:`predict_fixed`), the published DeePKS-L step: at a density Γ frozen at
  the last refresh, everything that does not depend on θ is cached once (:class:`FixedCache`:
  F_base[Γ] = h + J[Γ] + V_xc[Γ], E_base[Γ], the base forces, the orthogonaliser X = S^(-1/2)),
  and a step evaluates only

      E_δ = Σ_I NN_θ(d^I(Γ)),   V_δ = ∂E_δ/∂Γ,   H = F_base + V_δ,   H C = S C ε (through X),
      E = E_base + E_δ,         F_A = F_A^base + 2 Σ_{μ∈A,ν} ⟨∇μ|ν⟩ (½ Γ V_δ Γ)_μν − ∂E_δ/∂R_A,

  no grid, no Coulomb build. The middle force term is the part of the overlap (Pulay) force
  −tr(W ∂S/∂R) that V_δ adds to W = ½ Γ (F_base + V_δ) Γ: the cached base force used W_base.
  This is *exactly* the uncached evaluation (one Fock build and diagonalisation at Γ), which a
  test checks to 1e-10.

Both return a dict ``energy []``, ``forces [natm, 3]`` (when asked), ``fock [nao, nao]``,
``mo_energy [n_mo]``, ``mo_coeff [nao, n_mo]``, ``gamma [nao, nao]`` (Hartree, Hartree/Bohr), plus
``converged`` and ``cycles`` of the SCF that made Γ.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxks import linalg
from jaxks.deepks.correction import DeePKSParams, DeePKSTerm, deepks_forces
from jaxks.integrals.projectors import ProjectorDerivs
from jaxks.forces import energy_gradient
from jaxks.forces import forces as base_forces
from jaxks.implicit import AdjointOptions, solve
from jaxks.linalg import orthogonalizer
from jaxks.scf import SCFOptions, fock_matrix


@dataclasses.dataclass(frozen=True)
class PredictSetup:
    """Static settings of a prediction (hashable: a jit static argument).

    Attributes:
        term: the DeePKS energy term (network configuration, projector shells).
        xc: base functional (:class:`jaxks.xc.XCFunctional`).
        with_forces: compute forces.
        options: SCF settings (self-consistent mode and refreshes).
        adjoint: adjoint-solve settings (self-consistent mode).
    """

    term: DeePKSTerm
    xc: object
    with_forces: bool = True
    options: SCFOptions = SCFOptions()
    adjoint: AdjointOptions = AdjointOptions()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FixedCache:
    """What a fixed-density step needs of one frame, all independent of θ (a pytree).

    Attributes:
        gamma: frozen density Γ [nao, nao] (electrons).
        fock_base: F_base[Γ] = h + J + V_xc [nao, nao] (Hartree), without V_δ.
        energy_base: E_base[Γ] [] (Hartree), nuclear repulsion included, without E_δ.
        forces_base: −dE_base/dR at Γ with W_base = ½ Γ F_base Γ [natm, 3] (Hartree/Bohr);
            zeros when forces are off.
        x: orthogonaliser X [nao, n_mo], XᵀSX = 1.
        ipovlp: ⟨∇μ|ν⟩ [3, nao, nao] (Bohr⁻¹), or [3, 0, 0] when forces are off.
        ao_atom: one-hot atom of each AO [nao, natm].
        overlaps: projector overlaps P [nao, natm, nproj].
        onehot: element of each atom [natm, n_elements].
        proj_derivs: projector derivative integrals, or None when forces are off.
    """

    gamma: jax.Array
    fock_base: jax.Array
    energy_base: jax.Array
    forces_base: jax.Array
    x: jax.Array
    ipovlp: jax.Array
    ao_atom: jax.Array
    overlaps: jax.Array
    onehot: jax.Array
    proj_derivs: ProjectorDerivs | None


def _sym(m):
    return 0.5 * (m + m.T)


def _theta(model_params, overlaps, onehot) -> DeePKSParams:
    return DeePKSParams(model=model_params, overlaps=overlaps, element_onehot=onehot)


def fixed_cache(frame, gamma, setup: PredictSetup, fock_base=None,
                energy_base=None) -> FixedCache:
    """Build the :class:`FixedCache` of ``frame`` (a :class:`jaxks.train.frames.Frame`) at the
    frozen density ``gamma`` [nao, nao]: one base Fock build and, with forces, one base force
    evaluation (jittable; ``frame.fints`` must be present when ``setup.with_forces``).
    ``fock_base`` [nao, nao] and ``energy_base`` [] (Hartree), when given, are F_base[Γ] and
    E_base[Γ] already known (e.g. from the SCF that made Γ): no Fock build then."""
    ints = frame.ints
    gamma = _sym(gamma)
    if fock_base is None:
        fock, parts = fock_matrix(gamma, ints, setup.xc, None, None)
        energy_base = parts.total
    else:
        fock = fock_base
    nao = ints.nao
    if setup.with_forces:
        forces = -energy_gradient(gamma, fock, ints, frame.fints, setup.xc)
        ipovlp = frame.fints.ipovlp
        ao_atom = frame.proj_derivs.ao_atom
    else:
        forces = jnp.zeros((frame.n_atoms, 3), gamma.dtype)
        ipovlp = jnp.zeros((3, 0, 0), gamma.dtype)
        ao_atom = jnp.zeros((nao, frame.n_atoms), gamma.dtype)
    return FixedCache(gamma=gamma, fock_base=fock, energy_base=energy_base, forces_base=forces,
                      x=orthogonalizer(ints.S, ints.n_mo), ipovlp=ipovlp, ao_atom=ao_atom,
                      overlaps=frame.overlaps, onehot=frame.onehot,
                      proj_derivs=frame.proj_derivs if setup.with_forces else None)


def predict_fixed(model_params, cache: FixedCache, setup: PredictSetup) -> dict:
    """Prediction at the frozen density of ``cache`` (module docstring); differentiable in
    ``model_params`` to any order (degeneracy-safe eigensolver)."""
    theta = _theta(model_params, cache.overlaps, cache.onehot)
    gamma = jax.lax.stop_gradient(cache.gamma)
    e_delta, v_delta = jax.value_and_grad(setup.term)(gamma, theta)
    v_delta = _sym(v_delta)
    fock = cache.fock_base + v_delta
    eps, u = linalg.eigh(cache.x.T @ fock @ cache.x)
    pred = dict(energy=cache.energy_base + e_delta, fock=fock, mo_energy=eps,
                mo_coeff=cache.x @ u, gamma=gamma, converged=jnp.ones((), bool),
                cycles=jnp.zeros((), jnp.int32))
    if setup.with_forces:
        w_delta = _sym(0.5 * gamma @ v_delta @ gamma)
        # the V_δ part of the overlap force 2 Σ_{μ∈A,ν} ⟨∇μ|ν⟩ W_μν (jaxks.forces), F = −dE/dR
        pulay = 2.0 * cache.ao_atom.T @ jnp.einsum("xmn,mn->mx", cache.ipovlp, w_delta)
        pred["forces"] = (cache.forces_base - pulay
                          + deepks_forces(setup.term, gamma, theta, cache.proj_derivs))
    return pred


def predict_scf(model_params, frame, guess, setup: PredictSetup, probe=None) -> dict:
    """Self-consistent prediction: the DeePKS-SCF of ``frame`` started from ``guess``
    [nao, nao], differentiable in ``model_params`` through the converged solution (implicit
    function theorem). Jittable and vmappable over frames (no host synchronisation).
    ``probe``: optional float scalar whose gradient is the number of adjoint matrix-vector
    products of the backward pass (:func:`jaxks.implicit.solve`)."""
    theta = _theta(model_params, frame.overlaps, frame.onehot)
    res = solve(frame.ints, setup.xc, term=setup.term, params=theta, options=setup.options,
                adjoint=setup.adjoint, guess=guess, probe=probe)
    pred = dict(energy=res.energy, fock=res.fock, mo_energy=res.mo_energy,
                mo_coeff=res.mo_coeff, gamma=res.gamma, converged=res.converged,
                cycles=res.cycles)
    if setup.with_forces:
        pred["forces"] = (base_forces(res, frame.ints, frame.fints, setup.xc)
                          + deepks_forces(setup.term, res.gamma, theta, frame.proj_derivs))
    return pred

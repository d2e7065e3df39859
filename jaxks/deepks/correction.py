"""The DeePKS correction as an SCF energy term: E_δ(Γ, θ), its potential V_δ and its forces.

The SCF takes any hashable ``term(Γ, θ) -> E`` and adds E to the energy and ∂E/∂Γ to the Fock
matrix (see :mod:`jaxks.scf`). :class:`DeePKSTerm` holds only static settings (the network
configuration and the projector-shell structure); everything numeric travels in θ =
:class:`DeePKSParams`: the model parameters, the projector overlaps P of this geometry and the
one-hot element of each atom. Usage::

    term, theta = DeePKSTerm.for_model(config, basis), deepks_params(model_params, proj, symbols)
    result = run_scf(ints, "pbe", term=term, params=theta)

Equations (Γ the total AO density matrix, atomic units):

    E_δ(Γ) = Σ_I NN(d^I(Γ)) + E_pair(Γ),  d^I = concat_nl f(P^I_nlᵀ Γ P^I_nl)   (f: the model's
                                              descriptor kind, jaxks.deepks.descriptors)
    E_pair = Σ_{I≠J} [NN_pair(q^{IJ}(Γ)) − NN_pair(0)] / output_scale   (only with pair shells;
             q^{IJ}_{ab} = sqrt(‖P_{I,a}ᵀ Γ P_{J,b}‖_F² + τ²) − τ, jaxks.deepks.model)
    V_δ    = ∂E_δ/∂Γ = Σ_I Σ_nl P^I_nl (∂E_δ/∂D^I_nl) P^I_nlᵀ          (symmetric, Hartree)
    F_A    = −∂E_δ/∂R_A |_Γ  = −Σ_{μ I k} (∂E_δ/∂P_{μIk}) ∂P_{μIk}/∂R_A    (Hartree/Bohr)

The force needs no density response because the DeePKS-SCF energy is variational in Γ; the
remaining Γ-dependent parts (Pulay term with the energy-weighted density of the *corrected* Fock
matrix) belong to the base force code.

:meth:`DeePKSTerm.energy_from_overlaps` is the one definition of E_δ(Γ, P): V_δ, the forces, the
SCF, the trainer's fixed-density and end-to-end predictions are all JAX derivatives of it, so
the pair term reaches every one of them through it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.deepks.descriptors import descriptors_from_overlaps, pair_features
from jaxks.deepks.model import (ModelConfig, ModelParams, element_onehot, model_energy,
                                pair_energy)
from jaxks.integrals.projectors import ProjectorBasis, ProjectorData, ProjectorDerivs
from jaxks.system import InputError


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeePKSParams:
    """θ of the DeePKS term for one geometry (a pytree).

    Attributes:
        model: :class:`ModelParams`.
        overlaps: projector overlaps P [nao, natm, nproj].
        element_onehot: [natm, n_elements] element of each atom in the model's element table
            (n_elements = 0 without element constants).
    """

    model: ModelParams
    overlaps: jax.Array
    element_onehot: jax.Array


@dataclasses.dataclass(frozen=True)
class DeePKSTerm:
    """E_δ(Γ, θ) as a hashable callable for :func:`jaxks.scf.run_scf` (static settings only).

    Attributes:
        config: network configuration.
        shells: ((l, n_radial), ...) of the projector basis.
    """

    config: ModelConfig
    shells: tuple[tuple[int, int], ...]

    def __post_init__(self):
        shells = tuple((int(l), int(n)) for l, n in self.shells)
        object.__setattr__(self, "shells", shells)
        sections = tuple(2 * l + 1 for l, n in shells for _ in range(n))
        if sections != self.config.shell_sections:
            raise InputError(
                f"the model was built for descriptor blocks {_summary(self.config.shell_sections)}"
                f" but the projector basis gives {_summary(sections)}: use the model's own "
                "projector basis")

    @classmethod
    def for_model(cls, config: ModelConfig, basis: ProjectorBasis) -> "DeePKSTerm":
        return cls(config=config, shells=basis.shell_structure)

    def descriptors(self, gamma: jax.Array, params: DeePKSParams) -> jax.Array:
        """Descriptors [natm, ndesc] of ``gamma``."""
        return descriptors_from_overlaps(gamma, params.overlaps, self.shells,
                                         self.config.descriptor)

    def pair_features(self, gamma: jax.Array, overlaps: jax.Array) -> jax.Array:
        """Pair features q [natm, natm, S, S] of ``gamma`` (only for a model with pair
        shells; :func:`jaxks.deepks.descriptors.pair_features`)."""
        c = self.config
        return pair_features(gamma, overlaps, self.shells, c.pair_radial, c.pair_l,
                             c.pair_floor)

    def energy_from_overlaps(self, gamma, model: ModelParams, overlaps, onehot) -> jax.Array:
        """E_δ = Σ_I NN(d^I) (+ E_pair with pair shells) as an explicit function of Γ and of
        the overlaps P [nao, natm, nproj] (Hartree): everything else derives from it."""
        d = descriptors_from_overlaps(gamma, overlaps, self.shells, self.config.descriptor)
        energy = model_energy(self.config, model, d, onehot)
        if self.config.pair_radial:
            energy = energy + pair_energy(self.config, model, self.pair_features(gamma, overlaps))
        return energy

    def __call__(self, gamma: jax.Array, params: DeePKSParams) -> jax.Array:
        """E_δ(Γ, θ) (Hartree, scalar) for the total AO density matrix Γ [nao, nao]."""
        return self.energy_from_overlaps(gamma, params.model, params.overlaps,
                                         params.element_onehot)


def _summary(sections) -> str:
    counts: dict[int, int] = {}
    for s in sections:
        counts[s] = counts.get(s, 0) + 1
    return " + ".join(f"{n}x{s}" for s, n in counts.items()) or "none"


def deepks_params(model_params: ModelParams, projector_data: ProjectorData,
                  symbols: Sequence[str] | None = None,
                  elements: Sequence[str] = ()) -> DeePKSParams:
    """Build θ for one geometry.

    Args:
        model_params: the model's parameters.
        projector_data: overlaps of this geometry (:func:`projector_overlaps`).
        symbols: element of each atom; required when the model has element constants.
        elements: the model's element table (``ModelConfig.elements``).
    Returns:
        :class:`DeePKSParams`.
    """
    natm = projector_data.overlaps.shape[1]
    if len(elements):
        if symbols is None:
            raise InputError("this model has per-element energy constants: pass the symbols")
        if len(symbols) != natm:
            raise InputError(f"{len(symbols)} symbols for {natm} atoms")
        onehot = element_onehot(symbols, elements)
    else:
        onehot = np.zeros((natm, 0))
    return DeePKSParams(model=model_params, overlaps=jnp.asarray(projector_data.overlaps),
                        element_onehot=jnp.asarray(onehot))


def correction_energy(term: DeePKSTerm, gamma: jax.Array, params: DeePKSParams) -> jax.Array:
    """E_δ(Γ, θ) (Hartree)."""
    return term(gamma, params)


@functools.partial(jax.jit, static_argnums=0)
def correction_potential(term: DeePKSTerm, gamma: jax.Array, params: DeePKSParams) -> jax.Array:
    """V_δ = ∂E_δ/∂Γ, symmetrised, [nao, nao] (Hartree): the Fock-matrix contribution (jitted)."""
    v = jax.grad(term)(gamma, params)
    return 0.5 * (v + v.T)


@functools.partial(jax.jit, static_argnums=0)
def deepks_forces(term: DeePKSTerm, gamma: jax.Array, params: DeePKSParams,
                  projector_derivs: ProjectorDerivs) -> jax.Array:
    """F_A = −∂E_δ/∂R_A at fixed Γ, [natm, 3] (Hartree/Bohr); jitted, ``term`` static.

    With G = ∂E_δ/∂P [nao, natm, nproj] (JAX gradient) and the derivative integrals of
    :class:`ProjectorDerivs` (∂P_{μIk}/∂R_{A(μ)} = −⟨∇φ_μ|α_Ik⟩, ∂P_{μIk}/∂R_I = −⟨φ_μ|∇α_Ik⟩):

        F_A = Σ_{μ∈A} Σ_{Ik} G_{μIk} ⟨∇φ_μ|α_Ik⟩ + Σ_{μk} G_{μAk} ⟨φ_μ|∇α_Ak⟩
    """
    g = jax.grad(term.energy_from_overlaps, argnums=2)(gamma, params.model, params.overlaps,
                                                       params.element_onehot)
    f_ao = jnp.einsum("uik,xuik,ua->ax", g, projector_derivs.ao_ip, projector_derivs.ao_atom)
    f_proj = jnp.einsum("uak,xuak->ax", g, projector_derivs.proj_ip)
    return f_ao + f_proj

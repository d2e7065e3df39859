"""Parameter hooks: energy terms E(Γ, θ) that enter the SCF (and its derivatives) like any other.

A term is a *hashable* callable ``term(Γ, θ) -> scalar`` (Hartree), Γ the total AO density matrix
[nao, nao] and θ any pytree. :func:`jaxks.scf.run_scf` / :func:`jaxks.implicit.solve` add
E(Γ, θ) to the energy and ∂E/∂Γ (symmetrised, by ``jax.grad``) to the Fock matrix, so the
self-consistent solution — and, through :mod:`jaxks.implicit`, its derivatives with respect to θ —
include the term. A plain top-level Python function is a valid term; the classes below are the
common cases.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ExternalPotential:
    """E = Σ_k θ_k tr(Γ V_k): a parametrised one-electron potential.

    ``params = {"theta": [K], "v": [K, nao, nao]}`` (Hartree); with ``v`` the dipole integrals
    −⟨μ|r_k|ν⟩ this is a homogeneous electric field θ (atomic units).
    """

    def __call__(self, gamma: jax.Array, params) -> jax.Array:
        return jnp.einsum("k,kij,ij->", params["theta"], params["v"], gamma)


def electric_field_params(mol, field) -> dict:
    """Params of :class:`ExternalPotential` for a uniform electric field ``field`` [3] (a.u.).

    An electron (charge −1) at r in the field E has potential energy +E·r, so
    V_k = ⟨μ|r_k − O_k|ν⟩ [3, nao, nao] with the origin O at the centre of nuclear charge.
    """
    from jaxks.integrals import dipole_integrals

    return {"theta": jnp.asarray(field, dtype=jnp.float64), "v": dipole_integrals(mol)}

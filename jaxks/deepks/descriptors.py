"""DeePKS descriptors: eigenvalues of the projected density matrix, atom by atom, shell by shell.

For atom I and projector shell (n, l) the projected density matrix is the (2l+1)×(2l+1) block

    D^I_{nl} = P^I_{nl}ᵀ Γ P^I_{nl},      P^I_{nl}[μ, m] = ⟨φ_μ|α^I_{nlm}⟩,

with Γ the total AO density matrix [nao, nao] (tr ΓS = N_elec). The descriptor of atom I is the
concatenation over shells, in projector order (all s, then all p, then all d for the default
basis: DeePKS-kit's order), of eigvalsh(D^I_{nl}) in ascending order: 12·1 + 12·3 + 12·5 = 108
numbers for the default basis. They are invariant under rotations of the molecule because each
block transforms as W D Wᵀ with W an orthogonal (Wigner) matrix.

Everything is batched over atoms and radial functions (einsum); the only Python loop runs over
the handful of projector shells at trace time. Eigenvalues go through :func:`jaxks.linalg.eigh`,
whose derivative rule stays finite at exact degeneracies (the p and d blocks of a free atom, or
of an atom on a symmetry element), also to second order (needed by the SCF's implicit
differentiation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxks.integrals.projectors import ProjectorData
from jaxks.linalg import eigh


def shell_offsets(shells) -> list[tuple[int, int, int, int]]:
    """Static (l, n, start, stop) of every projector shell along the projector axis."""
    out, start = [], 0
    for l, n in shells:
        stop = start + n * (2 * l + 1)
        out.append((int(l), int(n), start, stop))
        start = stop
    return out


def projected_density_blocks(gamma: jax.Array, overlaps: jax.Array, shells) -> list[jax.Array]:
    """D^I_{nl} = P^I_{nl}ᵀ Γ P^I_{nl} for every atom and shell.

    Args:
        gamma: AO density matrix [nao, nao] (symmetric).
        overlaps: P [nao, natm, nproj].
        shells: static ((l, n_radial), ...).
    Returns:
        one array per projector shell, [natm, n_radial, 2l+1, 2l+1].
    """
    nao, natm, nproj = overlaps.shape
    # Γ P once for all atoms and shells: [nao, natm, nproj]
    gp = (gamma @ overlaps.reshape(nao, natm * nproj)).reshape(nao, natm, nproj)
    blocks = []
    for l, n, start, stop in shell_offsets(shells):
        m = 2 * l + 1
        p = overlaps[:, :, start:stop].reshape(nao, natm, n, m)
        q = gp[:, :, start:stop].reshape(nao, natm, n, m)
        d = jnp.einsum("uanm,uank->ankm", p, q)
        blocks.append(0.5 * (d + jnp.swapaxes(d, -1, -2)))
    return blocks


def descriptors_from_overlaps(gamma: jax.Array, overlaps: jax.Array, shells) -> jax.Array:
    """Descriptors d^I = concat_{nl} eigvalsh(D^I_{nl}) (ascending inside each block).

    Args:
        gamma: AO density matrix [nao, nao].
        overlaps: P [nao, natm, nproj].
        shells: static ((l, n_radial), ...).
    Returns:
        [natm, nproj] descriptors (dimensionless; electrons in the projected subspace),
        [natm, 108] for the default basis.
    """
    natm = overlaps.shape[1]
    parts = []
    for block in projected_density_blocks(gamma, overlaps, shells):
        w, _ = eigh(block)  # [natm, n, m]
        parts.append(w.reshape(natm, -1))
    return jnp.concatenate(parts, axis=-1)


def descriptors(gamma: jax.Array, proj: ProjectorData) -> jax.Array:
    """Descriptors [natm, nproj] of density matrix ``gamma`` with projector data ``proj``
    (see :func:`descriptors_from_overlaps`)."""
    return descriptors_from_overlaps(gamma, proj.overlaps, proj.shells)

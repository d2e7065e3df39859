"""DeePKS descriptors: rotation invariants of the projected density matrix, atom by atom, shell
by shell.

For atom I and projector shell (n, l) the projected density matrix is the (2l+1)×(2l+1) block

    D^I_{nl} = P^I_{nl}ᵀ Γ P^I_{nl},      P^I_{nl}[μ, m] = ⟨φ_μ|α^I_{nlm}⟩,

with Γ the total AO density matrix [nao, nao] (tr ΓS = N_elec); D is symmetric positive
semi-definite. Each block gives 2l + 1 numbers, in projector order (all s, then all p, then all d
for the default basis: DeePKS-kit's order), 12·1 + 12·3 + 12·5 = 108 per atom for the default
basis. Two kinds (:data:`DESCRIPTOR_KINDS`), both invariant under rotations of the molecule
(each block transforms as W D Wᵀ with W an orthogonal Wigner matrix):

* ``"schatten"`` (the default of new models): the Schatten norms of the block,

      d_k = ‖D‖_k = (tr D^k + τ^k)^{1/k},    k = 1 … 2l + 1,   τ = :data:`SCHATTEN_FLOOR`.

  They are functions of the traces of matrix powers, so they are smooth (C^∞) in Γ everywhere —
  through eigenvalue crossings, where sorted eigenvalues have a kink — and the floor τ keeps them
  smooth at D = 0 too. Nothing is lost: the power sums tr D^k, k ≤ 2l + 1, fix the eigenvalues
  (Newton's identities). They keep the eigenvalues' units and scale (d_1 = tr D, and d_k tends
  to the largest eigenvalue as k grows), and ∂d_k/∂D = (tr D^k + τ^k)^{1/k−1} D^{k−1} has spectral
  norm ≤ 1: V_δ = ∂E_δ/∂Γ is bounded by the network's slope, whatever the spectrum. No
  eigensolver is needed (matrix powers of 5×5 blocks).
* ``"eig"``: eigvalsh(D^I_{nl}) in ascending order (DeePKS-kit's descriptor, for its models and
  data). Continuous, but not differentiable where two eigenvalues of a block cross: the model
  energy has a kink there and V_δ jumps, which can leave a DeePKS-SCF with no fixed point
  (measured: water_cluster(8) with the first shipped model, commutator stuck at 2e-3).

Optional pair features (:func:`pair_features`) read the *off-site* blocks between atoms: for a
subset of "pair shells" (radial indices ``pair_radial`` × angular momenta ``pair_l``, S shells per
atom), every ordered atom pair I ≠ J and shells a on I, b on J,

    B^{IJ}_{ab} = P_{I,a}ᵀ Γ P_{J,b}                       [(2l_a+1) × (2l_b+1)]
    q^{IJ}_{ab} = sqrt(‖B^{IJ}_{ab}‖_F² + τ²) − τ           (electrons, τ = :data:`PAIR_FLOOR`)

invariant under rotations (both sides of B turn by orthogonal Wigner matrices, which leave the
Frobenius norm alone) and under swapping the pair (q^{JI}_{ba} = q^{IJ}_{ab}, as B^{JI}_{ba} =
(B^{IJ}_{ab})ᵀ for a symmetric Γ); smooth everywhere, B = 0 included, and → 0 for distant pairs.

Everything is batched over atoms and radial functions (einsum); the only Python loop runs over
the handful of projector shells at trace time. Eigenvalues go through :func:`jaxks.linalg.eigh`,
whose derivative rule stays finite at exact degeneracies (the p and d blocks of a free atom, or
of an atom on a symmetry element), also to second order (needed by the SCF's implicit
differentiation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.integrals.projectors import ProjectorData
from jaxks.linalg import eigh
from jaxks.system import InputError

#: Descriptor kinds: smooth Schatten norms (default of new models), sorted eigenvalues.
DESCRIPTOR_KINDS = ("schatten", "eig")
#: Default descriptor kind of new models.
DEFAULT_DESCRIPTOR = "schatten"
#: τ of the Schatten descriptor (electrons): makes ‖D‖_k smooth at D = 0 and its argument
#: positive for blocks whose eigenvalues are at rounding level (odd k); it moves a descriptor by
#: at most τ, and only blocks whose largest eigenvalue is below ~τ notice it.
SCHATTEN_FLOOR = 1e-10
#: τ of the pair features (electrons). q = sqrt(‖B‖² + τ²) − τ is ≈ ‖B‖ − τ for ‖B‖ ≫ τ and
#: ≈ ‖B‖²/2τ below; its slope is ≤ 1 and its curvature ≤ 1/τ. Off-site blocks of the diffuse
#: shells between hydrogen-bonded atoms of the water dimer are 0.002-0.09 e (def2-SVP, PBE),
#: so 1e-3 keeps them in the (nearly) linear regime, while the curvature 1/τ is felt only by
#: blocks below ~1e-3 e (distant pairs, whose contribution vanishes anyway).
PAIR_FLOOR = 1e-3
#: The diffuse radial functions of the default basis (rms radius 0.8-2.2 Bohr for s, 0.9-2.5
#: for p; radial 0-5: 0.03-0.67 Bohr): the suggested ``pair_radial``. They hold ≥ 93 % of
#: Σ_n ‖B_{nn}‖² of the hydrogen-bonded H…O pair of the water dimer (def2-SVP, PBE); radial
#: functions 0-4 hold < 1 %.
DIFFUSE_PAIR_RADIAL = (6, 7, 8, 9, 10, 11)


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


def schatten_norms(blocks: jax.Array, floor: float = SCHATTEN_FLOOR) -> jax.Array:
    """‖D‖_k = (tr D^k + τ^k)^{1/k} for k = 1 … m of symmetric blocks D [..., m, m].

    tr D^k = Σ_ij (D^a)_ij (D^b)_ji with a + b = k, from the powers D, D², … (no eigensolver).
    Returns:
        [..., m] (units of D: electrons), k ascending.
    """
    m = blocks.shape[-1]
    powers = [blocks]
    for _ in range((m + 1) // 2 - 1):  # D^1 … D^⌈m/2⌉: every k ≤ m splits as a + b from these
        powers.append(powers[-1] @ blocks)
    out = []
    for k in range(1, m + 1):
        if k == 1:
            trace = jnp.trace(blocks, axis1=-2, axis2=-1)
        else:
            a, b = (k + 1) // 2, k // 2
            trace = jnp.sum(powers[a - 1] * jnp.swapaxes(powers[b - 1], -1, -2), axis=(-2, -1))
        # tr D^k ≥ 0 for a positive semi-definite D (up to rounding for odd k): the floor keeps
        # the root's argument positive and its derivative finite; for k = 1 it is a plain shift
        out.append(trace + floor if k == 1 else (trace + floor ** k) ** (1.0 / k))
    return jnp.stack(out, axis=-1)


def descriptors_from_overlaps(gamma: jax.Array, overlaps: jax.Array, shells,
                              kind: str = "eig") -> jax.Array:
    """Descriptors d^I = concat_{nl} f(D^I_{nl}), f = sorted eigenvalues (``kind="eig"``) or
    Schatten norms k = 1 … 2l+1 (``kind="schatten"``); see the module docstring.

    Args:
        gamma: AO density matrix [nao, nao].
        overlaps: P [nao, natm, nproj].
        shells: static ((l, n_radial), ...).
        kind: one of :data:`DESCRIPTOR_KINDS` (static).
    Returns:
        [natm, nproj] descriptors (electrons in the projected subspace), [natm, 108] for the
        default basis.
    """
    check_kind(kind)
    natm = overlaps.shape[1]
    parts = []
    for block in projected_density_blocks(gamma, overlaps, shells):
        if kind == "eig":
            w, _ = eigh(block)  # [natm, n, m]
        else:
            w = schatten_norms(block)
        parts.append(w.reshape(natm, -1))
    return jnp.concatenate(parts, axis=-1)


def check_kind(kind: str) -> None:
    """Raise :class:`jaxks.system.InputError` for an unknown descriptor kind."""
    if kind not in DESCRIPTOR_KINDS:
        raise InputError(f"unknown descriptor kind {kind!r}: choose one of {DESCRIPTOR_KINDS}")


def descriptors(gamma: jax.Array, proj: ProjectorData, kind: str = "eig") -> jax.Array:
    """Descriptors [natm, nproj] of density matrix ``gamma`` with projector data ``proj``
    (see :func:`descriptors_from_overlaps`)."""
    return descriptors_from_overlaps(gamma, proj.overlaps, proj.shells, kind)


# --------------------------------------------------------------------------- pair features
def radial_counts(shells) -> dict[int, int]:
    """Number of radial functions of every angular momentum, {l: n}, of ((l, n_radial), ...)
    (several shells of one l count together, in basis order)."""
    counts: dict[int, int] = {}
    for l, n in shells:
        counts[int(l)] = counts.get(int(l), 0) + int(n)
    return counts


def check_pair_shells(counts: dict[int, int], pair_radial, pair_l) -> None:
    """Raise :class:`jaxks.system.InputError` unless every l of ``pair_l`` is in the basis
    (``counts``: {l: n_radial}, :func:`radial_counts`) and every index of ``pair_radial`` is a
    radial function that every one of those l has (0-based)."""
    if len(set(pair_radial)) != len(pair_radial) or len(set(pair_l)) != len(pair_l):
        raise InputError(f"pair_radial {list(pair_radial)} and pair_l {list(pair_l)} must not "
                         "repeat an entry")
    if not pair_l:
        raise InputError("pair_l must name at least one angular momentum, e.g. [0, 1]")
    missing = [l for l in pair_l if l not in counts]
    if missing:
        raise InputError(f"pair_l {list(pair_l)}: the projector basis has no l = "
                         f"{', '.join(map(str, missing))} functions (it has l = "
                         f"{', '.join(map(str, sorted(counts)))})")
    n = min(counts[l] for l in pair_l)
    bad = [r for r in pair_radial if not 0 <= r < n]
    if bad:
        raise InputError(f"pair_radial {list(pair_radial)}: indices {bad} are out of range; the "
                         f"projector basis has radial functions 0..{n - 1} for l in "
                         f"{list(pair_l)}")


def pair_columns(shells, pair_radial, pair_l):
    """Static selection of the pair shells along the projector axis.

    Pair shell s = (l, r) for l in ``pair_l``, r in ``pair_radial`` (l slowest): S shells. The
    r-th radial function of angular momentum l counts over all projector shells of that l.

    Returns:
        (cols [K] indices into the projector axis, owner [K, S] one-hot shell of each column),
        K = len(pair_radial) Σ_l (2l + 1), m fastest inside a shell (as in the basis).
    """
    check_pair_shells(radial_counts(shells), pair_radial, pair_l)
    starts: dict[int, list[int]] = {}
    for l, n, start, _ in shell_offsets(shells):
        starts.setdefault(l, []).extend(start + r * (2 * l + 1) for r in range(n))
    cols, owner = [], []  # owner: the pair shell of every column
    for s, (l, r) in enumerate((l, r) for l in pair_l for r in pair_radial):
        cols += [starts[l][r] + m for m in range(2 * l + 1)]
        owner += [s] * (2 * l + 1)
    return np.asarray(cols), np.eye(len(pair_l) * len(pair_radial))[np.asarray(owner)]


def pair_features(gamma: jax.Array, overlaps: jax.Array, shells, pair_radial, pair_l,
                  floor: float = PAIR_FLOOR) -> jax.Array:
    """q^{IJ}_{ab} = sqrt(‖P_{I,a}ᵀ Γ P_{J,b}‖_F² + τ²) − τ for all atoms I, J and pair shells
    a, b (module docstring; the diagonal I = J is computed too, and left to the caller).

    Args:
        gamma: AO density matrix [nao, nao] (symmetrised here).
        overlaps: P [nao, natm, nproj].
        shells: static ((l, n_radial), ...) of the projector basis.
        pair_radial, pair_l: static pair shells (:func:`pair_columns`).
        floor: τ (electrons).
    Returns:
        [natm, natm, S, S] (electrons), S = len(pair_radial) · len(pair_l).
    """
    cols, owner = pair_columns(shells, pair_radial, pair_l)
    nao, natm, _ = overlaps.shape
    p = overlaps[:, :, cols].reshape(nao, natm * cols.size)
    gamma = 0.5 * (gamma + gamma.T)
    # all blocks B^{IJ} at once: [natm K, natm K] (5.3M entries for (H2O)32 with K = 24)
    b = (p.T @ (gamma @ p)).reshape(natm, cols.size, natm, cols.size)
    owner = jnp.asarray(owner)
    norm2 = jnp.einsum("akbl,ks,lt->abst", b * b, owner, owner)
    return jnp.sqrt(norm2 + floor ** 2) - floor

"""Atomic-orbital values and their first and second derivatives on grid points, in JAX.

A contracted spherical Gaussian shell of angular momentum l centred at A, contraction k, component m:

    φ_{km}(r) = S_{lm}(d) · R_k(d²),        d = r − A,
    R_k(s)    = Σ_p c_{pk} exp(−α_p s),
    S_{lm}(d) = Σ_{a+b+c=l} U^l_{abc,m} d_x^a d_y^b d_z^c

with c_{pk} PySCF's (libcint's) contraction coefficients, which already hold the primitive and
contraction normalisation, and U^l PySCF's Cartesian-to-real-spherical matrix ``cart2sph(l)``
(for l = 0, 1 it is the constant 1/√(4π), √(3/(4π)) that libcint folds into s and p functions).
Derivatives follow from the chain rule with R'_k = Σ_p c_{pk} (−2α_p) e_p and R''_k = Σ_p c_{pk} 4α_p² e_p:

    ∂_i φ   = ∂_i S · R + S d_i R'
    ∂_ij φ  = ∂_ij S · R + (∂_i S d_j + ∂_j S d_i + δ_ij S) R' + S d_i d_j R''

The polynomial derivatives ∂_i S, ∂_ij S are again polynomials of degree l−1, l−2 whose
coefficients are derived from U^l on the host (numpy) once per l.

Evaluation has two stages. The radial functions R, R', R'' are computed per shell and contraction,
shells grouped by (l, n_prim, n_ctr) so that each group is one dense computation over
[grid points, shells, primitives] (one exponential per primitive and point). S and its derivatives
depend only on the atom and on (l, m), so they are computed once per atom and l, not per shell.
One fused pass then gathers both into PySCF's AO order (shell by shell in ``mol._bas`` order,
contraction-major, m in cart2sph order, p as x, y, z) and applies the chain rule above.
Everything depends on the atom centres through d = r − A, so the AO values are differentiable with
respect to :attr:`BasisData.centers` (nuclear forces) as well as the grid coordinates.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.transfer import to_device

__all__ = ["AO_CUTOFF", "AOScreen", "BasisData", "ScreenBin", "basis_data", "eval_ao", "eval_ao_screened",
           "n_components", "screen_blocks", "shell_extents"]

#: Number of components returned by :func:`eval_ao` for deriv = 0, 1, 2
#: (value; + x, y, z; + xx, xy, xz, yy, yz, zz), as in PySCF's ``GTOval_sph_deriv{n}``.
_NCOMP = {0: 1, 1: 4, 2: 10}
#: Pairs (i, j) of the second-derivative components, in PySCF's order xx, xy, xz, yy, yz, zz.
_HESS_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def n_components(deriv: int) -> int:
    """Number of AO components for derivative order ``deriv`` (1, 4 or 10)."""
    if deriv not in _NCOMP:
        raise ValueError(f"deriv must be 0, 1 or 2 (AO values, gradients, Hessians), got {deriv!r}")
    return _NCOMP[deriv]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["centers", "exps", "coeffs"],
    meta_fields=["shell_l", "shell_atom", "shell_nprim", "shell_nctr", "shell_ao_offset", "n_ao",
                 "groups"],
)
@dataclasses.dataclass(frozen=True)
class BasisData:
    """A contracted spherical Gaussian basis, laid out for vectorised evaluation.

    Array leaves (differentiable):
        centers: [natm, 3] atom positions, Bohr. Replace it (``dataclasses.replace``) to move atoms.
        exps: one array per shell group, [nsh_g, nprim_g], exponents α in Bohr⁻².
        coeffs: one array per shell group, [nsh_g, nprim_g, nctr_g], contraction coefficients
            including PySCF's normalisation (``mol._libcint_ctr_coeff``).

    Static aux data (hashable tuples, part of the jit cache key):
        shell_l, shell_atom, shell_nprim, shell_nctr, shell_ao_offset: per shell in ``mol._bas`` order.
        n_ao: number of spherical AOs.
        groups: per group, the tuple of shell indices it holds; all its shells share (l, nprim, nctr).
    """

    centers: jax.Array
    exps: tuple
    coeffs: tuple
    shell_l: tuple
    shell_atom: tuple
    shell_nprim: tuple
    shell_nctr: tuple
    shell_ao_offset: tuple
    n_ao: int
    groups: tuple

    @property
    def natm(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_shells(self) -> int:
        return len(self.shell_l)

    @property
    def group_keys(self) -> tuple:
        """(l, nprim, nctr) of each group."""
        return tuple((self.shell_l[g[0]], self.shell_nprim[g[0]], self.shell_nctr[g[0]])
                     for g in self.groups)


def basis_data(mol) -> BasisData:
    """The basis of a built PySCF ``Mole`` (spherical, ``cart=False``) as a :class:`BasisData`.

    Runs on the host once per molecule; ghost atoms keep their basis functions, as in PySCF.
    """
    if getattr(mol, "cart", False):
        raise ValueError("Cartesian basis functions (mol.cart=True) are not supported; "
                         "use spherical harmonics (cart=False)")
    if mol._bas is None or len(mol._bas) == 0:
        raise ValueError("the molecule has no basis functions: build it with a basis first "
                         "(mol.basis = 'def2-svp'; mol.build())")
    nbas = mol.nbas
    shell_l = tuple(int(mol.bas_angular(i)) for i in range(nbas))
    if any(l > 10 for l in shell_l):
        raise ValueError(f"angular momentum up to l=10 is supported, the basis has l={max(shell_l)}")
    shell_atom = tuple(int(mol.bas_atom(i)) for i in range(nbas))
    shell_nprim = tuple(int(mol.bas_nprim(i)) for i in range(nbas))
    shell_nctr = tuple(int(mol.bas_nctr(i)) for i in range(nbas))
    ao_loc = mol.ao_loc_nr()
    if ao_loc[-1] != mol.nao_nr():
        raise ValueError("inconsistent AO layout in the PySCF molecule")

    keyed: dict[tuple, list[int]] = {}
    for i in range(nbas):
        keyed.setdefault((shell_l[i], shell_nprim[i], shell_nctr[i]), []).append(i)
    groups = tuple(tuple(v) for v in keyed.values())
    exps, coeffs, centers = to_device((
        tuple(np.stack([mol.bas_exp(i) for i in g]) for g in groups),
        tuple(np.stack([mol._libcint_ctr_coeff(i) for i in g]) for g in groups),
        mol.atom_coords(unit="Bohr")))
    return BasisData(
        centers=centers,
        exps=exps, coeffs=coeffs,
        shell_l=shell_l, shell_atom=shell_atom, shell_nprim=shell_nprim, shell_nctr=shell_nctr,
        shell_ao_offset=tuple(int(x) for x in ao_loc[:-1]), n_ao=int(ao_loc[-1]), groups=groups,
    )


# ---------------------------------------------------------------------------------------------
# Solid-harmonic polynomials (host side, numpy, once per l)


def _cart_powers(l: int) -> list[tuple[int, int, int]]:
    """Cartesian exponents (a, b, c) of degree l in PySCF's order (xx, xy, xz, yy, yz, zz, ...)."""
    return [(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]


@functools.lru_cache(maxsize=None)
def _solid_harmonic_tables(l: int):
    """Coefficients of S_lm and of its first and second derivatives on monomials.

    Returns (u0, u1, u2): u0 [ncart(l), 2l+1]; u1 [3, ncart(l−1), 2l+1] (or None for l < 1);
    u2 [6, ncart(l−2), 2l+1] (or None for l < 2), each for the monomials of ``_cart_powers``.
    """
    from pyscf import gto  # host only: coefficients become constants of the traced program

    u0 = np.asarray(gto.cart2sph(l), dtype=np.float64).reshape(len(_cart_powers(l)), 2 * l + 1)
    index = {p: i for i, p in enumerate(_cart_powers(l))}

    def lowered(table, powers_hi, axes):
        """Differentiate the polynomial with coefficient ``table`` along ``axes`` (exact)."""
        deg = sum(powers_hi[0]) - len(axes)
        lo = {p: i for i, p in enumerate(_cart_powers(deg))}
        out = np.zeros((len(lo), table.shape[1]))
        for p, i in zip(powers_hi, range(len(powers_hi))):
            q = list(p)
            fac = 1.0
            for ax in axes:
                fac *= q[ax]
                q[ax] -= 1
            if fac != 0.0:
                out[lo[tuple(q)]] += fac * table[i]
        return out

    powers = list(index)
    u1 = np.stack([lowered(u0, powers, (i,)) for i in range(3)]) if l >= 1 else None
    u2 = np.stack([lowered(u0, powers, pair) for pair in _HESS_PAIRS]) if l >= 2 else None
    return u0, u1, u2


def _monomials(d: jax.Array, deg: int) -> list:
    """d_x^a d_y^b d_z^c for all a+b+c = deg in ``_cart_powers`` order: a list of [...] arrays."""
    if deg == 0:
        return [jnp.ones(d.shape[:-1], d.dtype)]
    pw = [[None, d[..., ax]] for ax in range(3)]
    for ax in range(3):
        for k in range(2, deg + 1):
            pw[ax].append(pw[ax][k - 1] * d[..., ax])

    def term(a, b, c):
        factors = [pw[ax][k] for ax, k in ((0, a), (1, b), (2, c)) if k > 0]
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out

    return [term(*p) for p in _cart_powers(deg)]


def _combine(monos: list, table: np.ndarray) -> jax.Array:
    """Σ_c table[c, m] · monos[c] for every m, stacked on a new last axis.

    The tables are small and sparse constants, so the sums are unrolled at trace time into
    elementwise code that XLA fuses (tiny matrix products are slow on CPU).
    """
    cols = []
    for m in range(table.shape[1]):
        acc = None
        for c in np.flatnonzero(table[:, m]):
            coef = float(table[c, m])
            t = monos[c] if coef == 1.0 else coef * monos[c]
            acc = t if acc is None else acc + t
        cols.append(jnp.zeros_like(monos[0]) if acc is None else acc)
    return jnp.stack(cols, axis=-1)


# ---------------------------------------------------------------------------------------------
# Evaluation


@functools.lru_cache(maxsize=64)
def _layout(shell_l, shell_atom, shell_nctr, shell_ao_offset, n_ao, groups):
    """Static index tables of the two-stage evaluation (host side, cached per basis layout).

    Returns (angular, yidx, ridx, aidx):
        angular: tuple of (l, atoms), the atoms that carry shells of angular momentum l; the
            compact angular array holds, l after l, atom after atom, the 2l+1 columns of S_lm.
        yidx [nao]: column of AO μ in the compact angular array.
        ridx [nao]: column of AO μ in the compact radial array (groups' shells, then contractions).
        aidx [nao]: atom carrying AO μ.
    """
    angular = []
    y_pos = {}
    y_off = 0
    for l in sorted(set(shell_l)):
        atoms = tuple(sorted({a for a, ls in zip(shell_atom, shell_l) if ls == l}))
        for i, a in enumerate(atoms):
            y_pos[(l, a)] = y_off + i * (2 * l + 1)
        y_off += len(atoms) * (2 * l + 1)
        angular.append((l, atoms))
    r_pos = {}
    r_off = 0
    for grp in groups:
        for s in grp:
            r_pos[s] = r_off
            r_off += shell_nctr[s]
    yidx = np.empty(n_ao, dtype=np.int32)
    ridx = np.empty(n_ao, dtype=np.int32)
    aidx = np.empty(n_ao, dtype=np.int32)
    for s, (l, a, nctr, off) in enumerate(zip(shell_l, shell_atom, shell_nctr, shell_ao_offset)):
        nm = 2 * l + 1
        for k in range(nctr):
            cols = off + k * nm + np.arange(nm)
            yidx[cols] = y_pos[(l, a)] + np.arange(nm)
            ridx[cols] = r_pos[s] + k
            aidx[cols] = a
    return tuple(angular), yidx, ridx, aidx


def _radial(r2, exps, coeffs, deriv: int):
    """R_k and its s-derivatives (s = r²) for one shell group.

    r2 [ng, nsh]; exps [nsh, nprim]; coeffs [nsh, nprim, nctr]  ->  [deriv+1, ng, nsh·nctr]:
    Σ_p c_pk e_p, Σ_p c_pk (−2α_p) e_p, Σ_p c_pk 4α_p² e_p  with  e_p = exp(−α_p r²).
    """
    e = jnp.exp(-r2[:, :, None] * exps[None])                         # [ng, nsh, nprim]
    factors = [jnp.ones_like(exps), -2.0 * exps, 4.0 * exps * exps][: deriv + 1]
    rc = jnp.stack([coeffs * fac[..., None] for fac in factors])      # [nr, nsh, nprim, nctr]
    f = jnp.einsum("gsp,rspk->rgsk", e, rc)
    return f.reshape(deriv + 1, r2.shape[0], -1)


def _angular(d, l: int, deriv: int):
    """Solid harmonics and their Cartesian derivatives for the atoms of one l.

    d [ng, nA, 3]  ->  [npoly, ng, nA·(2l+1)] with rows S (deriv ≥ 0), ∂_x S, ∂_y S, ∂_z S
    (deriv ≥ 1), ∂_xx S, ∂_xy S, ∂_xz S, ∂_yy S, ∂_yz S, ∂_zz S (deriv 2); identically zero rows
    (derivatives of order > l) are zeros, kept so that every l has the same rows.
    """
    ng, na = d.shape[:2]
    u0, u1, u2 = _solid_harmonic_tables(l)
    s = _combine(_monomials(d, l), u0)                                # [ng, nA, m]
    zero = jnp.zeros_like(s)
    rows = [s]
    if deriv >= 1:
        mono = _monomials(d, l - 1) if l >= 1 else None
        rows += [_combine(mono, u1[i]) if l >= 1 else zero for i in range(3)]
    if deriv >= 2:
        mono = _monomials(d, l - 2) if l >= 2 else None
        rows += [_combine(mono, u2[h]) if l >= 2 else zero for h in range(6)]
    return jnp.stack(rows).reshape(len(rows), ng, na * (2 * l + 1))


@functools.partial(jax.jit, static_argnames=("deriv",))
def eval_ao(bd: BasisData, coords: jax.Array, deriv: int = 0) -> jax.Array:
    """AO values (and Cartesian derivatives) on grid points, equal to PySCF's ``mol.eval_gto``.

    φ_μ(r_g), ∂_i φ_μ(r_g), ∂_i∂_j φ_μ(r_g) as in the module docstring; matches
    ``GTOval_sph`` / ``GTOval_sph_deriv1`` / ``GTOval_sph_deriv2``.

    Args:
        bd: basis from :func:`basis_data`.
        coords: [ngrid, 3] grid points, Bohr.
        deriv: 0, 1 or 2 (static).
    Returns:
        [ncomp, ngrid, nao] with ncomp = 1, 4, 10; components value, x, y, z, xx, xy, xz, yy, yz, zz
        (derivatives with respect to the grid point, Bohr⁻¹, Bohr⁻²).

    Two stages. First, compact arrays: radial functions R, R', R'' per shell and contraction
    [ngrid, nrad] (exponentials evaluated once per primitive) and solid harmonics with their
    derivatives per atom, l and m [ngrid, nY]. Then one fused pass gathers them into PySCF's AO
    order and applies the chain rule, writing the [ncomp, ngrid, nao] result once.
    Memory: O(ncomp · ngrid · nao + ngrid · Σ_shells nprim); call it on blocks of grid points.
    Differentiable with respect to ``coords``, ``bd.centers``, ``bd.exps`` and ``bd.coeffs``.
    Jitted (deriv static): eager callers get one compiled kernel per basis layout and grid size
    instead of hundreds of small dispatched operations; inside an outer jit it is inlined.
    """
    n_components(deriv)
    coords = jnp.asarray(coords)
    if coords.ndim != 2 or coords.shape[-1] != 3:
        raise ValueError(f"grid coordinates must have shape [ngrid, 3] (Bohr), got {coords.shape}")
    dtype = jnp.result_type(coords.dtype, bd.centers.dtype)
    angular, yidx, ridx, aidx = _layout(bd.shell_l, bd.shell_atom, bd.shell_nctr,
                                        bd.shell_ao_offset, bd.n_ao, bd.groups)
    d = coords.astype(dtype)[:, None, :] - bd.centers.astype(dtype)[None]   # [ng, natm, 3]
    r2 = jnp.sum(d * d, axis=-1)                                              # [ng, natm]

    rad = jnp.concatenate(
        [_radial(r2[:, np.asarray([bd.shell_atom[s] for s in grp])],
                 exps.astype(dtype), coeffs.astype(dtype), deriv)
         for grp, exps, coeffs in zip(bd.groups, bd.exps, bd.coeffs)], axis=-1)  # [nk, ng, nrad]
    ang = [_angular(d[:, np.asarray(atoms)], l, deriv) for l, atoms in angular]
    # Materialise the per-l arrays before concatenating: otherwise XLA fuses their producers
    # into the concatenation and recomputes the polynomials many times (measured 10x slower).
    ang = jax.lax.optimization_barrier(ang)
    ang = ang[0] if len(ang) == 1 else jnp.concatenate(ang, axis=-1)         # [npoly, ng, nY]

    # The fused gather and chain rule (module docstring); S d_i etc. are formed here, per AO,
    # rather than stored: it halves the compact arrays and the memory traffic. The gathers pick
    # whole rows of grid-minor copies of the compact arrays (contiguous; gathering columns of
    # grid-major arrays was 1.5x slower for deriv=2), and the result is transposed once at the end.
    ang_t = jnp.swapaxes(ang, -1, -2)                                         # [npoly, nY, ng]
    rad_t = jnp.swapaxes(rad, -1, -2)                                         # [nk, nrad, ng]
    d_t = jnp.transpose(d, (2, 1, 0))                                         # [3, natm, ng]

    def y(row):
        return jnp.take(ang_t[row], yidx, axis=0)                             # [nao, ng]

    r = [jnp.take(rad_t[k], ridx, axis=0) for k in range(deriv + 1)]
    di = [jnp.take(d_t[i], aidx, axis=0) for i in range(3)] if deriv else []
    s = y(0)
    comps = [s * r[0]]
    if deriv >= 1:
        comps += [y(1 + i) * r[0] + s * di[i] * r[1] for i in range(3)]
    if deriv >= 2:
        for h, (i, j) in enumerate(_HESS_PAIRS):
            t1 = y(1 + i) * di[j] + y(1 + j) * di[i]
            if i == j:
                t1 = t1 + s
            comps.append(y(4 + h) * r[0] + t1 * r[1] + s * di[i] * di[j] * r[2])
    return jnp.swapaxes(jnp.stack(comps), 1, 2)                               # [ncomp, ng, nao]


# ---------------------------------------------------------------------------------------------
# Static AO screening on grid blocks

#: Default screening threshold: a shell is dropped from a grid block when a bound on the absolute
#: value of every AO of the shell and of each of its gradient components is below this at every
#: point of the block. 1e-11 keeps energies within 1e-11 Eh and forces within 1e-9 Eh/Bohr of
#: the unscreened values on the test molecules (tests/test_numint.py).
AO_CUTOFF = 1e-11


def shell_extents(bd: BasisData, cutoff: float = AO_CUTOFF, r_max: float = 60.0,
                  step: float = 0.01) -> np.ndarray:
    """Radius r_s (Bohr) of each shell beyond which its AO values and gradients are below cutoff.

    With r = |r − A| and |d_x^a d_y^b d_z^c| ≤ r^l (a+b+c = l), for every m and contraction k

        |φ_km|   ≤ C_l r^l Σ_p |c_pk| e^{−α_p r²}
        |∂_i φ_km| ≤ C'_l r^{l−1} Σ_p |c_pk| e^{−α_p r²} + C_l r^{l+1} Σ_p |c_pk| 2α_p e^{−α_p r²}

    with C_l = max_m Σ_c |U^l_{c,m}| and C'_l the same for the derivative polynomials. r_s is the
    largest radius on a ``step`` grid in (0, r_max] where either bound (maximised over k) still
    reaches ``cutoff``, plus one step. Host side (NumPy), once per basis. Returns [n_shells].
    """
    r = np.arange(step, r_max + step, step)
    radii = np.zeros(bd.n_shells)
    for grp, exps, coeffs in zip(bd.groups, bd.exps, bd.coeffs):
        exps, coeffs = np.asarray(exps), np.abs(np.asarray(coeffs))
        for i, s in enumerate(grp):
            l = bd.shell_l[s]
            u0, u1, _ = _solid_harmonic_tables(l)
            c0 = np.abs(u0).sum(0).max()
            c1 = np.abs(u1).sum(1).max() if u1 is not None else 0.0
            e = np.exp(-np.outer(r * r, exps[i]))                         # [nr, nprim]
            rad = e @ coeffs[i]                                           # [nr, nctr]
            rad1 = (e * (2.0 * exps[i])) @ coeffs[i]
            val = c0 * r[:, None] ** l * rad
            grad = c0 * r[:, None] ** (l + 1) * rad1
            if l >= 1:
                grad = grad + c1 * l * r[:, None] ** (l - 1) * rad
            bound = np.maximum(val, grad).max(axis=1)
            above = np.flatnonzero(bound >= cutoff)
            radii[s] = r[above[-1]] + step if above.size else step
    return radii


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["blocks", "slots", "mask", "ao_index", "fold"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class ScreenBin:
    """Grid blocks that share one padded shell list length (a static shape under jit).

    For every shell group g of the :class:`BasisData` (shells sharing l, nprim, nctr) and block,
    ``slots[g]`` lists the positions (within the group) of the shells whose AO values or gradients
    can reach the cutoff at a point of the block, padded to the bin's common length n_g (a
    multiple of 8, at most the group size) with masked slots.

    Attributes:
        blocks: [nb_k] int32, indices of the grid blocks in this bin.
        slots: per group, [nb_k, n_g] int32 shell positions within the group.
        mask: per group, [nb_k, n_g] float64, 1 for real slots, 0 for padding.
        ao_index: [nb_k, n_sig] int32, the AO (PySCF order) of each column of
            :func:`eval_ao_screened`'s result; padded slots repeat a real AO (their values are 0).
        fold: None, or for a basis of periodic images (:mod:`jaxks.integrals.cell`, where a
            block's columns repeat AOs, one per image) [nb_k, nao, K] int32: the columns of each
            AO μ, padded with n_sig (a zero column), so that Σ_k ao[:, fold[μ, k]] is the
            lattice-summed AO μ.
    """

    blocks: jax.Array
    slots: tuple
    mask: tuple
    ao_index: jax.Array
    fold: jax.Array | None = None

    @property
    def n_sig(self) -> int:
        return int(self.ao_index.shape[1])


@functools.partial(jax.tree_util.register_dataclass, data_fields=["bins"],
                   meta_fields=["cutoff"])
@dataclasses.dataclass(frozen=True)
class AOScreen:
    """Static AO screening of a blocked grid (once per geometry): which shells each block needs.

    Blocks are sorted by how many AOs they need and split into a few :class:`ScreenBin` s, each
    with its own padded length, so that a handful of far-from-everything blocks does not set the
    cost of all blocks. Blocks listed in no bin hold only zero-weight (padding) points.

    Attributes:
        bins: tuple of :class:`ScreenBin`.
        cutoff: the threshold the screen was built with (see :data:`AO_CUTOFF`).
    """

    bins: tuple
    cutoff: float = AO_CUTOFF


def _split_bins(cost: np.ndarray, n_bins: int) -> list[int]:
    """Split points of ascending ``cost`` (per-block n_sig) into at most ``n_bins`` bins that
    minimise Σ_bins (blocks in bin) · (largest n_sig in bin)² (work of the padded blocks)."""
    nb = len(cost)
    cand = sorted({int(round(q * nb)) for q in np.linspace(0.05, 0.95, 19)} - {0, nb})
    best, best_cut = nb * float(cost[-1]) ** 2, []

    def work(cuts):
        edges = [0, *cuts, nb]
        return sum((b - a) * float(cost[b - 1]) ** 2 for a, b in zip(edges, edges[1:]))

    import itertools
    for k in range(1, n_bins):
        for cuts in itertools.combinations(cand, k):
            w = work(cuts)
            if w < best:
                best, best_cut = w, list(cuts)
    return best_cut


def screen_blocks(bd: BasisData, coords: np.ndarray, block_size: int, *, n_real: int | None = None,
                  cutoff: float = AO_CUTOFF, n_bins: int = 4, bucket: int = 8) -> AOScreen:
    """The :class:`AOScreen` of grid points ``coords`` [n_blocks·block_size, 3] (Bohr) in blocks.

    Shell s (on atom A, radius r_s from :func:`shell_extents` at ``cutoff``) is kept in block b
    when min_{g ∈ b} |r_g − R_A| < r_s, so every dropped AO value and gradient component is below
    ``cutoff`` at every point of the block. Points at index ≥ ``n_real`` (zero-weight padding)
    are ignored; blocks holding only such points are left out. Blocks of spatially close points
    (PySCF sorts its grids into boxes) keep few shells. Host side (NumPy), once per geometry.
    """
    coords = np.asarray(coords, dtype=np.float64)
    n_grid = coords.shape[0]
    if n_grid % block_size:
        raise ValueError(f"{n_grid} grid points are not a whole number of blocks of {block_size}")
    nb = n_grid // block_size
    n_real = n_grid if n_real is None else n_real
    radii = shell_extents(bd, cutoff)
    centers = np.asarray(bd.centers)
    pts = coords.reshape(nb, block_size, 3)
    real = (np.arange(n_grid) < n_real).reshape(nb, block_size)
    dmin = np.empty((nb, centers.shape[0]))
    for a, c in enumerate(centers):
        dist = np.sqrt(((pts - c) ** 2).sum(-1))
        dmin[:, a] = np.where(real, dist, np.inf).min(axis=1)
    keep = dmin[:, list(bd.shell_atom)] < radii[None]                    # [nb, n_shells]
    width = np.asarray([bd.shell_nctr[s] * (2 * bd.shell_l[s] + 1) for s in range(bd.n_shells)])
    used = np.flatnonzero(real.any(axis=1))

    def padded(k):
        """AO columns of each group when its shell count is rounded up to the bucket."""
        return [np.minimum(-(-np.maximum(k[..., list(g)].sum(-1), 1) // bucket) * bucket, len(g))
                * width[g[0]] for g in bd.groups]

    def shape(blocks):
        return tuple(int(p.max()) for p in padded(keep[blocks]))

    n_sig = np.sum(padded(keep[used]), axis=0)
    order = used[np.argsort(n_sig, kind="stable")]
    cuts = _split_bins(np.sort(n_sig), n_bins) if len(order) > 1 else []
    bins = []
    for blocks in np.split(order, cuts):
        if bins and shape(blocks) == shape(bins[-1]):
            bins[-1] = np.concatenate([bins[-1], blocks])   # same shapes: one bin
        else:
            bins.append(blocks)
    out = []
    for blocks in bins:
        slots, masks, aos = [], [], []
        for grp in bd.groups:
            grp = np.asarray(grp)
            k = keep[np.ix_(blocks, grp)]                                 # [nb_k, n_in_group]
            n = max(int(k.sum(1).max()), 1)
            n = min(-(-n // bucket) * bucket, len(grp))
            pos = np.argsort(~k, axis=1, kind="stable")[:, :n]            # kept shells first
            m = np.take_along_axis(k, pos, axis=1)
            pos = np.where(m, pos, pos[:, :1])
            slots.append(pos.astype(np.int32))
            masks.append(m.astype(np.float64))
            w = width[grp[0]]
            off = np.asarray(bd.shell_ao_offset)[grp][pos]                # [nb_k, n]
            aos.append((off[:, :, None] + np.arange(w)).reshape(len(blocks), -1))
        out.append(ScreenBin(blocks.astype(np.int32), tuple(slots), tuple(masks),
                             np.concatenate(aos, axis=1).astype(np.int32)))
    return to_device(AOScreen(tuple(out), cutoff=float(cutoff)))


@functools.partial(jax.jit, static_argnames=("deriv",))
def eval_ao_screened(bd: BasisData, coords: jax.Array, screen: AOScreen, deriv: int = 0):
    """AO values (and derivatives) of the shells of one block's screen, at the block's points.

    The same functions as :func:`eval_ao` (module docstring), for the AOs listed in
    ``screen.ao_index`` only and in that order.

    Args:
        bd: basis; coords: [ngrid, 3] points of the block (Bohr); deriv: 0, 1 or 2 (static).
        screen: one block's row of a :class:`ScreenBin` (its ``slots`` [n_g] and ``mask`` [n_g]
            per group; ``ao_index`` [n_sig] names the columns).
    Returns:
        [ncomp, ngrid, n_sig]; columns of masked (padding) slots are zero.

    Work is per selected shell: its radial functions (one exponential per primitive and point),
    its solid harmonics, and the chain rule, in shell-local layout [ngrid, shells, nctr, 2l+1].
    Differentiable with respect to ``coords`` and ``bd.centers`` (nuclear forces, grid response).
    Jitted (deriv static), as :func:`eval_ao`; inlined inside an outer jit.
    """
    n_components(deriv)
    coords = jnp.asarray(coords)
    dtype = jnp.result_type(coords.dtype, bd.centers.dtype)
    atoms_of = np.asarray(bd.shell_atom)
    ng = coords.shape[0]
    cols = []
    for grp, exps, coeffs, slots, mask in zip(bd.groups, bd.exps, bd.coeffs, screen.slots,
                                              screen.mask):
        l, nctr = bd.shell_l[grp[0]], bd.shell_nctr[grp[0]]
        nm = 2 * l + 1
        n = slots.shape[0]
        atom = jnp.asarray(atoms_of[np.asarray(grp)])[slots]              # [n]
        d = coords.astype(dtype)[:, None, :] - bd.centers.astype(dtype)[atom][None]  # [ng, n, 3]
        r2 = jnp.sum(d * d, axis=-1)
        rc = coeffs.astype(dtype)[slots] * mask[:, None, None]
        rad = _radial(r2, exps.astype(dtype)[slots], rc, deriv).reshape(deriv + 1, ng, n, nctr, 1)
        ang = _angular(d, l, deriv).reshape(-1, ng, n, 1, nm)
        s = ang[0]
        comps = [s * rad[0]]
        if deriv >= 1:
            di = [d[:, :, i, None, None] for i in range(3)]
            comps += [ang[1 + i] * rad[0] + s * di[i] * rad[1] for i in range(3)]
        if deriv >= 2:
            for h, (i, j) in enumerate(_HESS_PAIRS):
                t1 = ang[1 + i] * di[j] + ang[1 + j] * di[i]
                if i == j:
                    t1 = t1 + s
                comps.append(ang[4 + h] * rad[0] + t1 * rad[1] + s * di[i] * di[j] * rad[2])
        cols.append(jnp.stack(comps).reshape(len(comps), ng, n * nctr * nm))
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)

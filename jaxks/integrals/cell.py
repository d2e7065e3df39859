"""Integrals of a periodic cell at the Γ point, from ``pyscf.pbc``: the pieces of the same
:class:`jaxks.integrals.Integrals` pytree the molecular SCF consumes (assembled by
:func:`jaxks.integrals.integrals_from_cell`), so :func:`jaxks.scf.run_scf` runs a periodic cell
unchanged.

Every ``pyscf.pbc`` call of jaxks lives here. At the Γ point (k = 0) every Bloch sum is real,
the periodic AO is the lattice sum of a Gaussian over the translations T = n·A of the cell,

    φ_μ(r) = Σ_T χ_μ(r − R_μ − T),

and the Kohn-Sham equations keep the molecular form F C = S C ε with real matrices of the cell's
nao × nao AOs. Per geometry, once:

* ``S``, ``T``   lattice-summed overlap and kinetic matrices (``cell.pbc_intor`` at Γ);
* ``V``          nuclear attraction of all nuclei of the crystal, with the G = 0 term removed
                 (PySCF's ``GDF.get_nuc``: the neutralising background; Martin eqs. 12.16-12.21);
* ``e_nuc``      the Ewald energy of the point nuclei per cell with the same G = 0 convention
                 (``cell.energy_nuc()``). For a neutral cell the three G = 0 terms (electron-
                 electron, electron-nuclear, nuclear-nuclear) cancel, and E = tr(Γh) + ½ tr(ΓJ)
                 + E_xc + E_nuc is PySCF's ``pbc.dft.RKS(cell).density_fit()`` energy at Γ;
* ``cderi``      PySCF's own whitened Gaussian density-fitting tensor at Γ (``pbc.df.GDF``:
                 range-separated 3-centre lattice sums of the auxiliary basis made neutral,
                 the 2-centre metric (P|Q) without its G = 0 part, whitened by its Cholesky or
                 eigen-decomposition); J_μν = Σ_L B_L,μν Σ_λσ B_L,λσ Γ_λσ is then exactly
                 PySCF's GDF J. A 3D cell's metric is positive definite: no negative part;
* the grid      PySCF's Becke grids for cells (``pbc.dft.gen_grid.BeckeGrids`` at the grid
                 level): atom-centred grids of the atoms and their images, cut to the cell
                 (fractional coordinates in [−½, ½]), with Becke weights over the images;
* ``basis``      the AO basis *with its periodic images*: every image shell of an atom that can
                 reach a grid point (:data:`jaxks.basis.AO_CUTOFF`) is a shell of the
                 :class:`jaxks.basis.BasisData`, carrying its home AO index. The screened grid
                 loop (:func:`jaxks.numint.scan_blocks`) evaluates a block's image shells and
                 sums the columns of each AO (:func:`fold_plan`, a gather), φ_μ = Σ_T χ_μ(r − T),
                 then works with the whole Γ. A periodic cell therefore always uses the AO
                 screen;
* ``guess``      PySCF's MINAO guess for the cell (``pbc.dft.RKS.get_init_guess``);
* ``lattice``    the lattice vectors (rows, Bohr).

``CELL_PRECISION`` sets ``cell.precision``, PySCF's tolerance for its lattice sums; PySCF's
reference calculation in the tests uses the same ``Cell`` (:func:`make_cell`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxks.basis import AO_CUTOFF, AOScreen, BasisData, basis_data, shell_extents
from jaxks.system import InputError, System

#: ``cell.precision`` of the cells jaxks builds: PySCF truncates its lattice sums (integrals,
#: AO values, grids) where terms fall below it. PySCF's default, 1e-8, moves the energy of a
#: water in a 4.5 Å cube by 3e-8 Eh against 1e-12; 1e-10 keeps such truncation below the
#: 1e-8 Eh agreement the tests ask for (see tests/integrals/test_cell.py).
CELL_PRECISION = 1e-10


def make_cell(system: System, basis=None, precision: float = CELL_PRECISION):
    """The PySCF ``pbc.gto.Cell`` of a periodic :class:`System` (Bohr, spherical AOs, all-electron).

    Raises:
        InputError: the system is not periodic, or PySCF has no such basis for an element.
    """
    from pyscf.pbc import gto as pbcgto

    if system.lattice is None:
        raise InputError(f"{system.formula} is a molecule, not a periodic cell")
    if system.charge != 0:
        # PySCF adds a neutralising background to a charged cell; jaxks does not model it
        raise InputError(f"a charged periodic cell (charge {system.charge}) is not supported: "
                         "the cell must be neutral")
    basis = system.basis if basis is None else basis
    try:
        cell = pbcgto.Cell()
        cell.build(atom=[(s, c) for s, c in zip(system.symbols, system.coords)], unit="Bohr",
                   a=np.asarray(system.lattice), basis=basis, charge=system.charge, spin=0,
                   cart=False, precision=precision, dimension=3, verbose=0)
    except (KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"cannot build basis {basis!r} for the cell of {system.formula}: "
                         f"{err}") from err
    return cell


def make_cell_grids(cell, level: int):
    """PySCF's Becke grids for a cell (``BeckeGrids``) at ``level``, the grid the SCF integrates
    the XC energy on (points in the cell, Bohr; weights sum to about the cell volume)."""
    from pyscf.pbc.dft import gen_grid

    grids = gen_grid.BeckeGrids(cell)
    grids.level = level
    return grids.build(with_non0tab=False)


def gdf_tensor(cell, auxbasis) -> np.ndarray:
    """PySCF's whitened Γ-point Gaussian density-fitting tensor B [n_fit, nao(nao+1)/2], packed
    lower triangle μ ≥ ν (``pbc.df.GDF(cell).sr_loop`` at k = 0), so that the fitted J is PySCF's.

    Raises:
        InputError: PySCF cannot build the auxiliary basis.
    """
    from pyscf.pbc import df as pbcdf

    gdf = pbcdf.GDF(cell, kpts=np.zeros((1, 3)))
    gdf.auxbasis = auxbasis
    try:
        gdf.build(j_only=True)
    except (KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"cannot build auxiliary basis {auxbasis!r}: {err}") from err
    parts = []
    for b_re, b_im, sign in gdf.sr_loop(np.zeros((2, 3)), compact=True, blksize=10**9):
        if sign != 1:  # only low-dimensional cells have a negative part
            raise InputError("the density-fitting metric of this cell is not positive definite")
        parts.append(np.asarray(b_re, dtype=np.float64))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def image_shifts(cell_bd: BasisData, lattice: np.ndarray, points: np.ndarray,
                 cutoff: float = AO_CUTOFF):
    """The periodic images of the atoms whose shells can reach ``points``.

    Image (a, T) of atom a at R_a + T (T = n·A, n integer) is kept when some shell of atom a
    has extent r_s (:func:`jaxks.basis.shell_extents` at ``cutoff``) with
    |R_a + T − c| < r_s + ρ, c and ρ the centre and radius of a sphere holding every point.

    Args:
        cell_bd: the cell's basis (home atoms only).
        lattice: [3, 3] lattice vectors (rows, Bohr).
        points: [n, 3] grid points (Bohr).
    Returns:
        (parents [n_img] int, shifts [n_img, 3] Bohr), home images (T = 0) first.
    """
    centers = np.asarray(cell_bd.centers)
    radii = shell_extents(cell_bd, cutoff)
    reach = np.zeros(len(centers))
    np.maximum.at(reach, np.asarray(cell_bd.shell_atom), radii)
    lo, hi = points.min(0), points.max(0)
    c = 0.5 * (lo + hi)
    rho = float(np.sqrt(((points - c) ** 2).sum(-1)).max())
    # |n_i| bounded through the reciprocal vectors b_i (A bᵀ = 1): n_i = (x − R_a) · b_i
    recip = np.linalg.inv(lattice).T
    span = rho + reach.max() + np.abs(centers - c).max() * np.sqrt(3)
    nmax = np.ceil(span * np.linalg.norm(recip, axis=1)).astype(int) + 1
    grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1)
    n = grid.reshape(-1, 3)
    n = n[np.argsort(np.abs(n).sum(1), kind="stable")]  # T = 0 first
    shifts = n @ lattice                                                     # [nT, 3]
    dist = np.linalg.norm(centers[None] + shifts[:, None] - c, axis=-1)      # [nT, natm]
    t_idx, a_idx = np.nonzero(dist < reach[None] + rho)
    return a_idx.astype(np.int64), shifts[t_idx]


def periodic_basis(cell_bd: BasisData, parents: np.ndarray, shifts: np.ndarray) -> BasisData:
    """A :class:`BasisData` of the images (a, T) of the cell's atoms: image j is atom
    ``parents[j]`` moved by ``shifts[j]`` and carries its atom's shells with their *home* AO
    offsets (n_ao stays the cell's nao). Only the screened AO evaluation
    (:func:`jaxks.basis.eval_ao_screened`) reads it correctly: it names each column's AO."""
    import jax.numpy as jnp

    shells_of = {}
    for s, a in enumerate(cell_bd.shell_atom):
        shells_of.setdefault(a, []).append(s)
    where = {}
    for g, grp in enumerate(cell_bd.groups):
        for pos, s in enumerate(grp):
            where[s] = (g, pos)
    src, atom = [], []
    for j, a in enumerate(parents):
        for s in shells_of.get(int(a), []):
            src.append(s)
            atom.append(j)
    keyed: dict[int, list[int]] = {}
    for new, s in enumerate(src):
        keyed.setdefault(where[s][0], []).append(new)
    gkeys = sorted(keyed)
    groups = tuple(tuple(keyed[g]) for g in gkeys)
    exps = tuple(cell_bd.exps[g][np.asarray([where[src[i]][1] for i in keyed[g]])] for g in gkeys)
    coeffs = tuple(cell_bd.coeffs[g][np.asarray([where[src[i]][1] for i in keyed[g]])]
                   for g in gkeys)
    centers = jnp.asarray(np.asarray(cell_bd.centers)[parents] + shifts)
    return BasisData(
        centers=centers, exps=exps, coeffs=coeffs,
        shell_l=tuple(cell_bd.shell_l[s] for s in src), shell_atom=tuple(atom),
        shell_nprim=tuple(cell_bd.shell_nprim[s] for s in src),
        shell_nctr=tuple(cell_bd.shell_nctr[s] for s in src),
        shell_ao_offset=tuple(cell_bd.shell_ao_offset[s] for s in src),
        n_ao=cell_bd.n_ao, groups=groups)


def fold_plan(bd: BasisData, screen: AOScreen) -> AOScreen:
    """The screen with each bin's ``fold`` index (:class:`jaxks.basis.ScreenBin`): for every
    block and cell AO μ, the columns of the block's image AOs that are copies of μ (real slots
    only), padded with n_sig, so the grid loop sums images by a gather (:mod:`jaxks.numint`)."""
    import jax.numpy as jnp

    width = [bd.shell_nctr[g[0]] * (2 * bd.shell_l[g[0]] + 1) for g in bd.groups]
    bins = []
    for b in screen.bins:
        idx = np.asarray(b.ao_index)                                      # [nb_k, n_sig]
        real = np.concatenate([np.repeat(np.asarray(m) > 0, w, axis=1)
                               for m, w in zip(b.mask, width)], axis=1)
        nb, n_sig = idx.shape
        key = np.where(real, idx, bd.n_ao)                                # padding sorts last
        order = np.argsort(key, axis=1, kind="stable")
        counts = np.stack([np.bincount(k[k < bd.n_ao], minlength=bd.n_ao) for k in key])
        k_max = max(int(counts.max()), 1)
        plan = np.full((nb, bd.n_ao + 1, k_max), n_sig, dtype=np.int32)
        sorted_key = np.take_along_axis(key, order, axis=1)
        start = np.concatenate([np.zeros((nb, 1), int), np.cumsum(counts, axis=1)], axis=1)
        rank = np.arange(n_sig)[None] - np.take_along_axis(start, sorted_key, axis=1)
        rows = np.repeat(np.arange(nb)[:, None], n_sig, axis=1)
        ok = sorted_key < bd.n_ao
        plan[rows[ok], sorted_key[ok], rank[ok]] = order[ok]
        bins.append(dataclasses.replace(b, fold=jnp.asarray(plan[:, :bd.n_ao])))
    return dataclasses.replace(screen, bins=tuple(bins))


def check_cell(cell, omega: float = 0.0, ao_cutoff: float | None = AO_CUTOFF) -> None:
    """Raise :class:`InputError` for what the Γ-point cell integrals do not cover: ``omega`` > 0
    (range-separated hybrids), no AO screen (it sums the images of each AO), Cartesian AOs,
    open shells, low-dimensional cells, pseudopotentials."""
    if omega:
        raise InputError("range-separated hybrids (HSE06) are not implemented for periodic "
                         "cells yet; use a semilocal functional (pbe, lda)")
    if ao_cutoff is None:
        raise InputError("a periodic cell needs the AO screen (ao_cutoff): it sums the images "
                         "of each AO on the grid")
    if cell.cart:
        raise InputError("Cartesian basis functions (cart=True) are not supported")
    if cell.spin != 0 or cell.nelectron % 2:
        raise InputError(f"open-shell systems are not supported yet: {cell.nelectron} electrons")
    if cell.dimension != 3 or cell.pseudo or len(cell._ecpbas):
        raise InputError("only all-electron cells periodic in three dimensions are supported")


def one_electron(cell):
    """Γ-point S, T, V [nao, nao] and E_nuc (Hartree): lattice-summed overlap and kinetic
    matrices, the crystal's nuclear attraction without its G = 0 term (GDF ``get_nuc``), and
    the Ewald energy of the nuclei per cell (``cell.energy_nuc()``)."""
    from pyscf.pbc import df as pbcdf

    S = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1))
    T = np.asarray(cell.pbc_intor("int1e_kin", hermi=1))
    V = _real(pbcdf.GDF(cell, kpts=np.zeros((1, 3))).get_nuc(np.zeros(3)), "nuclear attraction")
    return S, T, V, float(cell.energy_nuc())


def image_basis(cell, points: np.ndarray, cutoff: float = AO_CUTOFF) -> BasisData:
    """The cell's AO basis with every periodic image that reaches ``points`` [n, 3] (Bohr)
    within ``cutoff`` (:func:`image_shifts`, :func:`periodic_basis`)."""
    cell_bd = basis_data(cell)
    parents, shifts = image_shifts(cell_bd, np.asarray(cell.lattice_vectors()), points, cutoff)
    return periodic_basis(cell_bd, parents, shifts)


def projector_cell(cell, projector_basis):
    """A PySCF ``Cell`` of ghost atoms (symbol X: no charge, no electrons) carrying the DeePKS
    projector basis ``projector_basis`` (PySCF's list format) at the nuclei of ``cell``, with
    the same lattice and ``precision`` (Bohr)."""
    from pyscf.pbc import gto as pbcgto

    pcell = pbcgto.Cell()
    pcell.build(atom=[["X", c] for c in cell.atom_coords(unit="Bohr")], unit="Bohr",
                a=np.asarray(cell.lattice_vectors()), basis={"X": projector_basis}, cart=False,
                precision=cell.precision, dimension=3, verbose=0, dump_input=False)
    return pcell


def lattice_projector_overlaps(cell, projector_basis) -> np.ndarray:
    """Γ-point DeePKS projector overlaps of a cell [nao, natm · nproj] (dimensionless):

        P^I_{μ,k} = Σ_T ⟨χ_μ(r − R_μ − T) | α_k(r − R_I)⟩,

    the overlap of the lattice-summed AO φ_μ (the Γ-point Bloch sum) with atom I's projector
    α^I_k in the home cell, summed over every translation T = n·A within PySCF's cut-off
    (``pbc.gto.cell.intor_cross`` at k = 0 on the cell and its ghost-atom projector cell,
    :func:`projector_cell`). At Γ the sum is the same whether the AO or the projector is
    translated, so a lattice translation of every atom leaves P unchanged."""
    from pyscf.pbc.gto.cell import intor_cross

    pcell = projector_cell(cell, projector_basis)
    return _real(intor_cross("int1e_ovlp", cell, pcell), "projector overlap")


def pyscf_cell_ks(cell, xc: str, auxbasis, exxdiv: str = "ewald"):
    """PySCF's Γ-point density-fitted RKS object of a cell, not yet run (the reference and
    the labeller, :func:`jaxks.data.labels.pyscf_cell_label`, set its grids and tolerances):

        pbc.dft.RKS(cell, xc=xc, exxdiv=exxdiv).density_fit(auxbasis)

    A range-separated hybrid (``"hse06"``: ω = 0.11 Bohr⁻¹, 25 % short-range exact exchange)
    gets PySCF's short-range exchange for cells at Γ from the same GDF object (its
    erfc-attenuated 3-centre integrals). ``exxdiv`` is PySCF's treatment of the G = 0
    exchange divergence: ``"ewald"`` (PySCF's default) adds the Madelung constant of the full
    Coulomb kernel times S Γ S to K, also to HSE06's short-range K (``df_jk.
    _ewald_exxdiv_for_G0`` takes no ω), ``"none"`` adds nothing; a semilocal functional has
    no K and is unaffected. Energies are per cell (Hartree).
    """
    from pyscf.pbc import dft as pbcdft

    exxdiv = None if exxdiv == "none" else exxdiv  # PySCF's spelling of "no correction"
    return pbcdft.RKS(cell, xc=xc, exxdiv=exxdiv).density_fit(auxbasis=auxbasis)


def gamma_matrices(mf) -> dict[str, np.ndarray]:
    """The real Γ-point arrays of a converged PySCF cell RKS ``mf``: ``overlap`` S, ``fock``
    F[Γ] (Hartree), ``mo_energy`` ε (Hartree), ``mo_coeff`` C, ``mo_occ`` and ``dm`` Γ = C n Cᵀ
    (electrons); [nao, nao] / [nmo] / [nao, nmo]."""
    dm = _real(mf.make_rdm1(), "density matrix")
    return dict(overlap=_real(mf.get_ovlp(), "overlap"), fock=_real(mf.get_fock(dm=dm), "Fock"),
                mo_energy=np.asarray(mf.mo_energy, dtype=np.float64),
                mo_coeff=_real(mf.mo_coeff, "orbital coefficients"),
                mo_occ=np.asarray(mf.mo_occ, dtype=np.float64), dm=dm)


def minao_guess(cell) -> np.ndarray:
    """PySCF's MINAO initial density matrix of the cell at Γ [nao, nao]."""
    from pyscf.pbc import dft as pbcdft

    return _real(pbcdft.RKS(cell).get_init_guess(cell, "minao"), "initial guess")


def _real(x, what: str) -> np.ndarray:
    """The real part of a Γ-point matrix PySCF may return as complex (its imaginary part is
    round-off at k = 0)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        if np.abs(x.imag).max(initial=0.0) > 1e-8 * max(np.abs(x.real).max(initial=0.0), 1.0):
            raise RuntimeError(f"the Γ-point {what} has an imaginary part")
        x = x.real
    return np.ascontiguousarray(x, dtype=np.float64)

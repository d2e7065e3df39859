"""The integrals stage: the one place that asks PySCF for integrals, returned as arrays in pytrees.

This package holds every PySCF integral call of jaxks: the SCF's integrals (this module), those
of a periodic cell at the Γ point (:mod:`jaxks.integrals.cell`, every ``pyscf.pbc`` call), the
nuclear-derivative integrals of the forces (:mod:`jaxks.integrals.derivatives`), the DeePKS
projector overlaps (:mod:`jaxks.integrals.projectors`) and the dipole integrals of an external
field (:func:`dipole_integrals`).

For a :class:`~jaxks.system.System` we compute, once per geometry,

* ``S``      overlap  S_μν = <μ|ν>                                   [nao, nao]
* ``T``      kinetic  T_μν = <μ|-½∇²|ν>                              [nao, nao]
* ``V``      nuclear attraction V_μν = <μ|Σ_A -Z_A/|r-R_A||ν>        [nao, nao]
* ``e_nuc``  nuclear repulsion Σ_{A<B} Z_A Z_B / R_AB                 scalar, Hartree
* ``cderi``  whitened density-fitting tensor B_P,μν = Σ_Q (L⁻¹)_PQ (Q|μν), with (P|Q) = L Lᵀ,
             stored on the packed lower triangle μ ≥ ν (PySCF's ``pack_tril`` order)  [naux, n_pair]
             so that (μν|λσ) ≈ Σ_P B_P,μν B_P,λσ (the same approximation as PySCF's ``density_fit``);
             by default only the pairs whose column 2-norm reaches :data:`DF_PAIR_CUTOFF`
             (``pairs``, a :class:`jaxks.pairs.PairList`; None when every pair is kept,
             n_pair = nao(nao+1)/2)
* ``cderi_sr`` (only when asked for, ``omega`` > 0) the same whitened tensor of the short-range
             operator erfc(ωr)/r, 3-centre and 2-centre integrals both short-range (PySCF's
             range-separated density fitting, ``mol.with_range_coulomb(-ω)``), for the
             short-range exact exchange of HSE-type hybrids (:mod:`jaxks.exchange`)
* the integration grid (coordinates [ngrid, 3] Bohr, weights [ngrid]), padded with zero-weight
  points to a whole number of blocks so the XC integration can ``lax.scan`` over equal blocks,
* ``guess``  PySCF's MINAO initial density matrix [nao, nao],
* the basis description (:class:`jaxks.basis.BasisData`) for evaluating AOs on the grid in JAX.

The 3-centre tensor is built block by block over AO shells and whitened in place, so peak memory
is the result plus one block — this is what lets (H2O)32/def2-SVP fit on a 24 GB machine.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.dlpack
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxks.basis import AO_CUTOFF, AOScreen, BasisData, basis_data, screen_blocks
from jaxks.linalg import n_independent
from jaxks.pairs import PairList, pair_list
from jaxks.system import InputError, System
from jaxks.transfer import to_device


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Integrals:
    """Integrals of one geometry (atomic units). Array fields are pytree leaves.

    Static fields (``n_elec``, ``nao``, ``n_mo``, ``block_size``) are part of the tree structure, so
    a jitted function taking an ``Integrals`` recompiles only when these or the array shapes change.
    ``screen`` (:class:`jaxks.basis.AOScreen`, or None for none) lists the shells each grid block
    evaluates and ``pairs`` (:class:`jaxks.pairs.PairList`, or None for all) the AO pairs the DF
    tensors keep; their lengths depend on the geometry, so two geometries of one molecule may
    compile twice (build with ``ao_cutoff=None, pair_cutoff=None`` where one compilation per
    composition matters, as batched training frames do).

    ``lattice`` is None for a molecule; for a periodic cell at Γ (:mod:`jaxks.integrals.cell`)
    it holds the lattice vectors (rows, [3, 3], Bohr), ``basis`` holds the AO shells of the
    atoms' periodic images and ``screen`` is always set (it sums the images of each AO).
    """

    S: jax.Array
    T: jax.Array
    V: jax.Array
    e_nuc: jax.Array
    cderi: jax.Array
    grid_coords: jax.Array
    grid_weights: jax.Array
    basis: BasisData
    atom_coords: jax.Array
    atom_charges: jax.Array
    guess: jax.Array | None = None
    screen: AOScreen | None = None
    cderi_sr: jax.Array | None = None
    pairs: PairList | None = None
    lattice: jax.Array | None = None
    n_elec: int = dataclasses.field(metadata=dict(static=True), default=0)
    nao: int = dataclasses.field(metadata=dict(static=True), default=0)
    n_mo: int = dataclasses.field(metadata=dict(static=True), default=0)
    block_size: int = dataclasses.field(metadata=dict(static=True), default=0)
    omega: float = dataclasses.field(metadata=dict(static=True), default=0.0)

    @property
    def hcore(self) -> jax.Array:
        """Core Hamiltonian h = T + V, [nao, nao]."""
        return self.T + self.V

    @property
    def n_occ(self) -> int:
        return self.n_elec // 2

    @property
    def naux(self) -> int:
        return self.cderi.shape[0]

    @property
    def n_grid(self) -> int:
        return self.grid_weights.shape[0]


@dataclasses.dataclass(frozen=True)
class IntegralTimings:
    """Wall time (s) spent in each integral stage."""

    one_electron: float
    density_fitting: float
    grid: float

    @property
    def total(self) -> float:
        return self.one_electron + self.density_fitting + self.grid


def dipole_integrals(mol) -> jax.Array:
    """⟨μ|r_k − O_k|ν⟩ [3, nao, nao] (Bohr), O the centre of nuclear charge (PySCF ``int1e_r``)."""
    charges = mol.atom_charges()
    origin = np.einsum("i,ix->x", charges, mol.atom_coords()) / charges.sum()
    with mol.with_common_orig(origin):
        return jnp.asarray(mol.intor_symmetric("int1e_r", comp=3))


def make_grids(mol, level: int):
    """PySCF's Becke/Treutler grids at ``level`` (the default PySCF RKS grid, no density pruning)."""
    from pyscf.dft import gen_grid

    grids = gen_grid.Grids(mol)
    grids.level = level
    grids.build(with_non0tab=False)
    return grids


def auxmol_for(mol, auxbasis):
    """The auxiliary-basis molecule PySCF's density fitting would use."""
    from pyscf.df import addons

    try:
        return addons.make_auxmol(mol, auxbasis)
    except (KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"cannot build auxiliary basis {auxbasis!r}: {err}") from err


@dataclasses.dataclass(frozen=True)
class Whitening:
    """The whitening of the density-fitting metric M_PQ = (P|Q), shared by the SCF's tensor and the
    forces' fitted coefficients (host side, NumPy).

    Cholesky M = L Lᵀ: B = L⁻¹ (P|μν), and the fitted coefficients c = M⁻¹ d are c = L⁻ᵀ (B·Γ).
    If M is not numerically positive definite, its eigenvectors with eigenvalues > 1e-14
    (as PySCF does): V = U w^(-1/2), B = Vᵀ (P|μν), c = V (B·Γ).
    """

    low: np.ndarray | None
    v: np.ndarray | None

    @classmethod
    def of(cls, auxmol) -> "Whitening":
        j2c = auxmol.intor("int2c2e", hermi=1)
        try:
            return cls(scipy.linalg.cholesky(j2c, lower=True), None)
        except np.linalg.LinAlgError:
            w, u = scipy.linalg.eigh(j2c)
            keep = w > 1e-14
            return cls(None, u[:, keep] / np.sqrt(w[keep]))

    @property
    def n_fit(self) -> int:
        """Rows of the whitened tensor (n_aux, or fewer after dropping the null space)."""
        return self.low.shape[0] if self.low is not None else self.v.shape[1]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """L⁻¹ x (or Vᵀ x) for x [n_aux, k]; x may be overwritten."""
        if self.low is not None:
            return scipy.linalg.solve_triangular(self.low, x, lower=True, overwrite_b=True,
                                                 check_finite=False)
        return self.v.T @ x

    def fit_matrix(self) -> np.ndarray:
        """G [n_aux, n_fit] with fitted coefficients c = G (B·Γ): L⁻ᵀ (or V)."""
        if self.low is not None:
            return scipy.linalg.solve_triangular(self.low, np.eye(self.low.shape[0]),
                                                 lower=True).T
        return self.v


#: Pair screening threshold of the DF tensor (:func:`df_tensor`): columns B_·,μν with 2-norm
#: below it are dropped (measured effect in tests/test_integrals.py and
#: benchmarks/results/scf_timing_cpu.md).
DF_PAIR_CUTOFF = 1e-11


def _whitened_blocks(mol, auxmol, white: Whitening, max_block_mb: float):
    """Yield (p0, p1, L⁻¹ (P|μν)[:, p0:p1]) over blocks of AO shell rows: pairs (i ≥ j) of rows
    ao_loc[i0]:ao_loc[i1] are contiguous in the packed triangle (PySCF's pack_tril order)."""
    from pyscf.df import incore

    naux = white.n_fit
    ao_loc = mol.ao_loc_nr()
    max_pairs = max(int(max_block_mb * 1e6 / 8 / max(naux, 1)), 1)
    nbas = mol.nbas
    i0 = 0
    while i0 < nbas:
        i1 = i0 + 1
        while i1 < nbas and (ao_loc[i1 + 1] * (ao_loc[i1 + 1] + 1) // 2
                             - ao_loc[i0] * (ao_loc[i0] + 1) // 2) <= max_pairs:
            i1 += 1
        p0 = ao_loc[i0] * (ao_loc[i0] + 1) // 2
        p1 = ao_loc[i1] * (ao_loc[i1] + 1) // 2
        int3c = incore.aux_e2(mol, auxmol, intor="int3c2e", aosym="s2ij",
                              shls_slice=(i0, i1, 0, i1, 0, auxmol.nbas))
        yield p0, p1, white.apply(np.asarray(int3c).reshape(p1 - p0, -1).T)
        i0 = i1


def df_tensor(mol, auxmol, *, pair_cutoff: float | None = None, keep: np.ndarray | None = None,
              max_block_mb: float = 512.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Whitened 3-centre tensor B = L⁻¹ (P|μν) on the packed triangle μ ≥ ν, optionally screened.

    Pair screening: column μν of B has 2-norm ‖B_·,μν‖ = (μν|μν)_DF^½, the fitted Coulomb
    self-repulsion of the product χ_μ χ_ν (never above the exact (μν|μν)^½: fitting in the
    Coulomb metric is a projection). Dropping the columns with ‖B_·,μν‖ < ``pair_cutoff``
    changes every DF quantity by terms bounded by ‖B_·,μν‖ |Γ_μν| summed over the dropped pairs:
    the Coulomb energy, J, K. They are pairs of distant or tight functions, whose product density
    vanishes (22 % of the pairs of (H2O)8/def2-SVP at 1e-11, energy changed by 2e-12 Eh).

    Args:
        mol, auxmol: PySCF molecules of the orbital and auxiliary basis.
        pair_cutoff: drop columns with 2-norm below it (None: keep every pair).
        keep: instead of a cutoff, keep exactly these pairs (bool [nao(nao+1)/2]; e.g. the
            pairs of the full-range tensor for the short-range one).
        max_block_mb: memory for one block of raw 3-centre integrals.
    Returns:
        (B [naux, n_pair] float64, 64-byte aligned; keep [nao(nao+1)/2] bool, or None when every
        pair is kept). Peak memory: the result plus one block (plus the kept columns once more
        while they are joined, with a cutoff).
    """
    white = Whitening.of(auxmol)
    naux = white.n_fit
    nao = mol.nao
    npair = nao * (nao + 1) // 2
    blocks = _whitened_blocks(mol, auxmol, white, max_block_mb)
    if keep is None and pair_cutoff is None:
        out = _aligned_empty((naux, npair))
        for p0, p1, b in blocks:
            out[:, p0:p1] = b
        return out, None
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (npair,):
            raise ValueError(f"keep has shape {keep.shape}, expected ({npair},)")
        out = _aligned_empty((naux, int(keep.sum())))
        pos = 0
        for p0, p1, b in blocks:
            sel = keep[p0:p1]
            n = int(sel.sum())
            out[:, pos:pos + n] = b[:, sel]
            pos += n
        return out, (None if keep.all() else keep)
    keep = np.empty(npair, dtype=bool)
    parts = []
    for p0, p1, b in blocks:
        sel = np.sqrt(np.einsum("pk,pk->k", b, b)) >= pair_cutoff
        keep[p0:p1] = sel
        parts.append(b if sel.all() else np.ascontiguousarray(b[:, sel]))
        del b
    out = _aligned_empty((naux, int(keep.sum())))
    pos = 0
    parts.reverse()
    while parts:  # each part is freed as soon as it is copied
        part = parts.pop()
        out[:, pos:pos + part.shape[1]] = part
        pos += part.shape[1]
        del part
    return out, (None if keep.all() else keep)


def cholesky_cderi(mol, auxmol, max_block_mb: float = 512.0) -> np.ndarray:
    """Whitened 3-centre tensor B = L⁻¹ (P|μν) on every pair μ ≥ ν [naux, nao(nao+1)/2]
    (:func:`df_tensor` without screening)."""
    return df_tensor(mol, auxmol, max_block_mb=max_block_mb)[0]


def range_separated_cderi(mol, auxmol, omega: float, keep: np.ndarray | None = None,
                          max_block_mb: float = 512.0) -> np.ndarray:
    """Whitened short-range tensor B^SR = L_SR⁻¹ (P|erfc(ωr₁₂)/r₁₂|μν), (P|erfc|Q) = L_SR L_SRᵀ,
    on the pairs μ ≥ ν ``keep`` selects (all if None) [naux, n_pair] (ω in Bohr⁻¹;
    :func:`df_tensor` under PySCF's ``with_range_coulomb(-ω)``, the same integrals PySCF's RSH
    density fitting uses). The SCF keeps the full-range tensor's pairs: the exact self-repulsions
    obey (ρ|erfc(ωr)/r|ρ) ≤ (ρ|1/r|ρ) for every ρ (in Fourier space the kernels are
    4π/k² (1 − e^(−k²/4ω²)) ≤ 4π/k²); the effect on HSE06 energies is tested."""
    with mol.with_range_coulomb(-omega), auxmol.with_range_coulomb(-omega):
        return df_tensor(mol, auxmol, keep=keep, max_block_mb=max_block_mb)[0]


def _aligned_empty(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous float64 array whose data starts on an ``align``-byte boundary.

    NumPy's large buffers are only 16-byte aligned; JAX's CPU client copies any DLPack buffer that
    is not 64-byte aligned, which for the DF tensor would mean a second full copy.
    """
    n = int(np.prod(shape))
    buf = np.empty(n + align // 8, dtype=np.float64)
    offset = (-buf.ctypes.data % align) // 8
    return buf[offset:offset + n].reshape(shape)


def _to_device(x: np.ndarray) -> jax.Array:
    """A JAX array of ``x`` without a second copy on the CPU backend.

    The DF tensor is the largest array of a calculation (8.5 GB for (H2O)32/def2-SVP); a plain
    ``jnp.asarray`` would hold it twice while copying. On the CPU, DLPack hands the NumPy buffer
    to JAX as is when it is 64-byte aligned (see :func:`_aligned_empty`; otherwise XLA copies it);
    it must then never be written to, and nothing here does. On an accelerator the copy goes to
    device memory anyway.
    """
    if jax.default_backend() == "cpu" and x.flags.c_contiguous:
        return jax.dlpack.from_dlpack(x)
    return jnp.asarray(x)


#: Grid points per block with AO screening (measured, benchmarks/results/scf_timing_cpu.md):
#: small blocks are spatially tight (PySCF sorts its grid points into boxes), so they keep few
#: shells, while still large enough for efficient [block, n_sig] matrix products.
SCREENED_BLOCK_SIZE = 256


def _grid_block_size(nao: int, n_grid: int, deriv_comps: int = 4,
                     target_mb: float = 96.0, screened: bool = False) -> int:
    """Grid points per XC block: :data:`SCREENED_BLOCK_SIZE` with screening, otherwise as many
    as keep one block of AO values (and gradients) near target_mb."""
    if screened:
        size = SCREENED_BLOCK_SIZE
    else:
        size = int(target_mb * 1e6 / (8 * deriv_comps * max(nao, 1)))
        size = max(128, min(size, 8192))
    size = min(size, -(-n_grid // 128) * 128)  # no block larger than the (rounded) grid
    return max(128, size // 128 * 128)


def padded_grid(grids, mol, block_size: int | None, screened: bool):
    """A PySCF grid's points [n, 3] (Bohr) and weights [n], padded with zero-weight points to a
    whole number of blocks of ``block_size`` (default: :func:`_grid_block_size`).

    Returns:
        (coords, weights, n_real, block_size), n_real the number of the grid's own points.
    """
    coords = np.asarray(grids.coords)
    weights = np.asarray(grids.weights)
    n_grid = weights.shape[0]
    if block_size is None:
        block_size = _grid_block_size(mol.nao, n_grid, screened=screened)
    n_pad = -n_grid % block_size
    if n_pad:
        # Zero-weight padding points sit on the first atom: finite density, no contribution.
        coords = np.concatenate([coords, np.repeat(mol.atom_coord(0)[None], n_pad, 0)])
        weights = np.concatenate([weights, np.zeros(n_pad)])
    return coords, weights, n_grid, int(block_size)


def compute_integrals(system: System, *, block_size: int | None = None,
                      ao_cutoff: float | None = AO_CUTOFF,
                      pair_cutoff: float | None = DF_PAIR_CUTOFF, return_timings: bool = False,
                      omega: float = 0.0):
    """Compute every integral the SCF needs for ``system`` (PySCF, host side, once).

    Args:
        system: the molecule and its basis settings.
        block_size: grid points per XC block (default: chosen from the basis size).
        ao_cutoff: AO screening threshold (:data:`jaxks.basis.AO_CUTOFF`; see
            :func:`jaxks.basis.screen_blocks`), or None to evaluate every AO on every point.
        pair_cutoff: DF pair screening threshold (:data:`DF_PAIR_CUTOFF`; see :func:`df_tensor`),
            or None to keep every AO pair.
        return_timings: also return :class:`IntegralTimings`.
        omega: > 0 (Bohr⁻¹) adds the short-range exchange tensor ``cderi_sr`` that HSE-type
            functionals need (``jaxks.exchange.sr_omega(xc)`` gives it for a functional).

    Returns:
        :class:`Integrals` (and :class:`IntegralTimings` if ``return_timings``).

    A periodic ``system`` (``system.lattice`` set) gets its Γ-point integrals from
    :func:`jaxks.integrals.cell.cell_integrals`.
    """
    if system.lattice is not None:
        return cell_integrals(system, block_size=block_size, ao_cutoff=ao_cutoff,
                              pair_cutoff=pair_cutoff,
                              return_timings=return_timings, omega=omega)
    mol = system.to_pyscf()
    return integrals_from_pyscf(mol, auxbasis=system.auxbasis, grid_level=system.grid_level,
                                block_size=block_size, ao_cutoff=ao_cutoff,
                                pair_cutoff=pair_cutoff, return_timings=return_timings,
                                omega=omega)


def pyscf_system(system: System):
    """The PySCF object of ``system``: a ``pbc.gto.Cell`` for a periodic cell
    (:func:`jaxks.integrals.cell.make_cell`), else a ``Mole`` (:meth:`System.to_pyscf`). The
    DeePKS projector overlaps (:func:`jaxks.integrals.projectors.projector_overlaps`) take
    either."""
    if system.lattice is not None:
        from jaxks.integrals import cell as pbc

        return pbc.make_cell(system)
    return system.to_pyscf()


def integrals_from_pyscf(mol, auxbasis, grid_level: int, *, grids=None,
                         block_size: int | None = None, ao_cutoff: float | None = AO_CUTOFF,
                         pair_cutoff: float | None = DF_PAIR_CUTOFF, return_timings: bool = False,
                         omega: float = 0.0):
    """As :func:`compute_integrals`, from a PySCF ``Mole`` (optionally with ready-made ``grids``)."""
    if mol.cart:
        raise InputError("Cartesian basis functions (mol.cart=True) are not supported")
    if mol.spin != 0 or mol.nelectron % 2:
        raise InputError(f"open-shell systems are not supported yet: {mol.nelectron} electrons")
    t0 = time.perf_counter()
    S = mol.intor_symmetric("int1e_ovlp")
    T = mol.intor_symmetric("int1e_kin")
    V = mol.intor_symmetric("int1e_nuc")
    e_nuc = mol.energy_nuc()
    t1 = time.perf_counter()
    auxmol = auxmol_for(mol, auxbasis)
    cderi, keep = df_tensor(mol, auxmol, pair_cutoff=pair_cutoff)
    cderi_sr = range_separated_cderi(mol, auxmol, omega, keep) if omega else None
    t2 = time.perf_counter()
    if grids is None:
        grids = make_grids(mol, grid_level)
    coords, weights, n_grid, block_size = padded_grid(grids, mol, block_size,
                                                      screened=ao_cutoff is not None)
    bd = basis_data(mol)
    screen = (None if ao_cutoff is None
              else screen_blocks(bd, coords, block_size, n_real=n_grid, cutoff=ao_cutoff))
    from pyscf.scf import hf
    guess = hf.init_guess_by_minao(mol)
    t3 = time.perf_counter()
    n_mo = n_independent(S)  # canonical orthogonalisation keeps as many orbitals as PySCF
    if n_mo < mol.nelectron // 2:
        raise InputError("the basis is too linearly dependent for the number of electrons")
    host = dict(S=S, T=T, V=V, e_nuc=e_nuc, grid_coords=coords, grid_weights=weights,
                atom_coords=mol.atom_coords(), atom_charges=mol.atom_charges().astype(np.float64),
                guess=guess)
    ints = Integrals(
        **to_device(host), cderi=_to_device(cderi), basis=bd, screen=screen,
        cderi_sr=None if cderi_sr is None else _to_device(cderi_sr), omega=float(omega),
        pairs=None if keep is None else pair_list(keep, mol.nao),
        n_elec=int(mol.nelectron), nao=int(mol.nao), n_mo=n_mo, block_size=int(block_size))
    del cderi, cderi_sr
    if return_timings:
        return ints, IntegralTimings(t1 - t0, t2 - t1, t3 - t2)
    return ints


def cell_integrals(system: System, *, block_size: int | None = None,
                   ao_cutoff: float | None = AO_CUTOFF, pair_cutoff: float | None = DF_PAIR_CUTOFF,
                   return_timings: bool = False, omega: float = 0.0, precision: float | None = None):
    """Every integral the SCF needs for a periodic cell at the Γ point (:mod:`jaxks.integrals.cell`:
    PySCF pbc, host side, once).

    As :func:`compute_integrals` (same arguments and result, the same DF pair screening of the
    tensor's columns), for a :class:`System` with a lattice; ``precision`` is the ``Cell``'s
    (default :data:`jaxks.integrals.cell.CELL_PRECISION`).

    Raises:
        InputError: ``omega`` > 0 (range-separated hybrids are not implemented for cells),
            ``ao_cutoff`` None (a cell needs the AO screen), or the system cannot be built.
    """
    from jaxks.integrals import cell as pbc

    cell = pbc.make_cell(system, precision=pbc.CELL_PRECISION if precision is None else precision)
    return integrals_from_cell(cell, system.auxbasis, system.grid_level, block_size=block_size,
                               ao_cutoff=ao_cutoff, pair_cutoff=pair_cutoff,
                               return_timings=return_timings, omega=omega)


def integrals_from_cell(cell, auxbasis, grid_level: int, *, grids=None,
                        block_size: int | None = None, ao_cutoff: float | None = AO_CUTOFF,
                        pair_cutoff: float | None = DF_PAIR_CUTOFF, return_timings: bool = False,
                        omega: float = 0.0):
    """As :func:`cell_integrals`, from a PySCF ``pbc.gto.Cell`` (optionally with ready-made
    ``grids``, e.g. a ``BeckeGrids`` object). The basis holds the AO shells of the atoms'
    periodic images, ``screen`` (always set) their fold plan, ``lattice`` the lattice vectors."""
    from jaxks.integrals import cell as pbc

    pbc.check_cell(cell, omega, ao_cutoff)
    t0 = time.perf_counter()
    S, T, V, e_nuc = pbc.one_electron(cell)
    t1 = time.perf_counter()
    b = pbc.gdf_tensor(cell, auxbasis)
    keep = None
    if pair_cutoff is not None:  # as df_tensor's screening, on PySCF's whitened columns
        keep = np.sqrt(np.einsum("pk,pk->k", b, b)) >= pair_cutoff
        b = b[:, keep] if not keep.all() else b
        keep = None if keep.all() else keep
    cderi = _aligned_empty(b.shape)
    cderi[...] = b
    del b
    t2 = time.perf_counter()
    if grids is None:
        grids = pbc.make_cell_grids(cell, grid_level)
    coords, weights, n_grid, block_size = padded_grid(grids, cell, block_size, screened=True)
    bd = pbc.image_basis(cell, coords[:n_grid], ao_cutoff)
    screen = pbc.fold_plan(bd, screen_blocks(bd, coords, block_size, n_real=n_grid,
                                             cutoff=ao_cutoff))
    guess = pbc.minao_guess(cell)
    t3 = time.perf_counter()
    n_mo = n_independent(S)
    if n_mo < cell.nelectron // 2:
        raise InputError("the basis is too linearly dependent for the number of electrons")
    host = dict(S=S, T=T, V=V, e_nuc=e_nuc, grid_coords=coords, grid_weights=weights,
                atom_coords=cell.atom_coords(), atom_charges=cell.atom_charges().astype(np.float64),
                guess=guess, lattice=np.asarray(cell.lattice_vectors()))
    ints = Integrals(
        **to_device(host), cderi=_to_device(cderi), basis=bd, screen=screen,
        pairs=None if keep is None else pair_list(keep, cell.nao),
        n_elec=int(cell.nelectron), nao=int(cell.nao), n_mo=n_mo, block_size=int(block_size))
    if return_timings:
        return ints, IntegralTimings(t1 - t0, t2 - t1, t3 - t2)
    return ints

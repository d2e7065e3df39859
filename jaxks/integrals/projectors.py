"""DeePKS projectors: the projector basis, its overlaps with the orbital basis and their nuclear
derivatives (PySCF, host side, once per geometry).

Every atom I carries the same set of atom-centred functions α^I_{nlm} (radial index n, angular
momentum l, real spherical harmonic m). The descriptors only ever need the overlaps

    P^I_{μ,nlm} = ⟨φ_μ | α^I_{nlm}⟩        (dimensionless; φ_μ the orbital basis)

computed by PySCF with the projectors on ghost atoms (no charge, no electrons) placed at the
nuclei (``int1e_ovlp`` cross integrals), and, for forces, their derivatives with respect to the
nuclear positions, ⟨∇φ|α⟩ and ⟨∇α|φ⟩ (``int1e_ipovlp``).

The default basis is DeePKS-kit's (kept for interoperability of descriptors and models):
twelve exponents ζ_k = 1.5^k, k ∈ (17, 13, 10, 7, 5, 3, 2, 1, 0, −1, −2, −3) Bohr⁻², and twelve
radial functions built from the *normalised* primitives g̃(ζ) = N_l(ζ) r^l exp(−ζ r²):

    R_0 = g̃(ζ_0),     R_j = g̃(ζ_j) − g̃(ζ_{j−1})  (j ≥ 1),     each then normalised to ⟨R|R⟩ = 1,

the same twelve for l = 0, 1, 2 with spherical harmonics: 12·(1 + 3 + 5) = 108 functions per
atom, ordered as PySCF orders one multiply-contracted shell per l: all s functions (radial index
fastest), then all p (m fastest inside a radial function), then all d. The set is deliberately
non-orthogonal and is not orthogonalised.

A basis is described by :class:`ProjectorBasis` (hashable, host side); the arrays that enter
jitted code live in the pytrees :class:`ProjectorData` (overlaps) and :class:`ProjectorDerivs`
(their nuclear derivatives). They live here, in the integrals stage that produces them, and
:mod:`jaxks.deepks` uses them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.system import InputError

#: DeePKS-kit default exponents ζ_k = 1.5**k (Bohr⁻²), in this order.
DEFAULT_EXPONENT_POWERS = (17, 13, 10, 7, 5, 3, 2, 1, 0, -1, -2, -3)
#: Angular momenta of the default projector basis.
DEFAULT_L_VALUES = (0, 1, 2)
#: Label of the default basis in model files and messages.
DEFAULT_BASIS_NAME = "deepks-kit-default"


@dataclasses.dataclass(frozen=True)
class ProjectorShell:
    """One projector shell of angular momentum ``l`` with ``n`` radial functions.

    Attributes:
        l: angular momentum (0 = s, 1 = p, 2 = d, ...).
        exponents: primitive exponents (Bohr⁻²), length n_prim.
        coefficients: [n_prim][n] coefficients on *normalised* primitives (PySCF's convention);
            column j is radial function j (normalised afterwards by PySCF).
    """

    l: int
    exponents: tuple[float, ...]
    coefficients: tuple[tuple[float, ...], ...]

    @property
    def n_radial(self) -> int:
        return len(self.coefficients[0])

    @property
    def size(self) -> int:
        """Number of projector functions in the shell, n (2l + 1)."""
        return self.n_radial * (2 * self.l + 1)


@dataclasses.dataclass(frozen=True)
class ProjectorBasis:
    """A projector basis: the same shells on every atom (hashable, static).

    Attributes:
        shells: the shells of one atom, in PySCF order.
        name: a label for files and messages.
    """

    shells: tuple[ProjectorShell, ...]
    name: str = "custom"

    # ----------------------------------------------------------------- structure
    @property
    def shell_structure(self) -> tuple[tuple[int, int], ...]:
        """((l, n_radial), ...) per shell: the static blocking of descriptors."""
        return tuple((s.l, s.n_radial) for s in self.shells)

    @property
    def n_proj(self) -> int:
        """Projector functions per atom (108 for the default basis)."""
        return sum(s.size for s in self.shells)

    @property
    def shell_sections(self) -> tuple[int, ...]:
        """Size 2l + 1 of every (radial function, l) block, in descriptor order
        (DeePKS-kit's ``shell_sec``: [1]*12 + [3]*12 + [5]*12 for the default basis)."""
        return tuple(2 * l + 1 for l, n in self.shell_structure for _ in range(n))

    def to_pyscf(self) -> list:
        """The basis in PySCF's internal list format [[l, [ζ, c_0, c_1, ...], ...], ...]."""
        return [[s.l, *[[e, *c] for e, c in zip(s.exponents, s.coefficients)]]
                for s in self.shells]

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return dict(name=self.name, shells=[dict(l=s.l, exponents=list(s.exponents),
                                                 coefficients=[list(c) for c in s.coefficients])
                                            for s in self.shells])

    @classmethod
    def from_dict(cls, d: dict) -> "ProjectorBasis":
        shells = tuple(ProjectorShell(int(s["l"]), tuple(float(e) for e in s["exponents"]),
                                      tuple(tuple(float(x) for x in c) for c in s["coefficients"]))
                       for s in d["shells"])
        return cls(shells=shells, name=str(d.get("name", "custom")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def same_as(self, other: "ProjectorBasis") -> bool:
        """Equal functions (names ignored)."""
        return self.shells == other.shells


# --------------------------------------------------------------------------- constructors
def _difference_shell(l: int, exponents: Sequence[float]) -> ProjectorShell:
    n = len(exponents)
    # column j: +1 on primitive j, -1 on primitive j-1 (column 0 is primitive 0 alone)
    coef = np.eye(n) - np.eye(n, k=1)
    return ProjectorShell(l, tuple(float(e) for e in exponents),
                          tuple(tuple(float(x) for x in row) for row in coef))


def _primitive_shell(l: int, exponents: Sequence[float]) -> ProjectorShell:
    n = len(exponents)
    return ProjectorShell(l, tuple(float(e) for e in exponents),
                          tuple(tuple(float(x) for x in row) for row in np.eye(n)))


def default_basis() -> ProjectorBasis:
    """DeePKS-kit's default projector basis (108 functions per atom, see the module docstring)."""
    zeta = 1.5 ** np.array(DEFAULT_EXPONENT_POWERS, dtype=np.float64)
    return ProjectorBasis(tuple(_difference_shell(l, zeta) for l in DEFAULT_L_VALUES),
                          name=DEFAULT_BASIS_NAME)


def basis_from_exponents(exponents: Sequence[float], l_values: Sequence[int] = DEFAULT_L_VALUES,
                         contraction: str = "difference", name: str = "custom") -> ProjectorBasis:
    """A user-defined projector basis: the same radial set for every l in ``l_values``.

    Args:
        exponents: Gaussian exponents ζ (Bohr⁻², positive).
        l_values: angular momenta, e.g. (0, 1, 2).
        contraction: ``"difference"`` (DeePKS-kit style R_0 = g̃(ζ_0), R_j = g̃(ζ_j) − g̃(ζ_{j−1}))
            or ``"primitive"`` (one radial function per exponent).
    Raises:
        InputError: empty, non-positive or repeated exponents; negative l; unknown contraction.
    """
    zeta = np.asarray(exponents, dtype=np.float64).ravel()
    if zeta.size == 0 or not np.all(np.isfinite(zeta)) or np.any(zeta <= 0):
        raise InputError(f"projector exponents must be positive numbers, got {list(zeta)}")
    if len(np.unique(zeta)) != zeta.size:
        raise InputError("projector exponents must be distinct (a repeated exponent makes a "
                         "zero radial function)")
    ls = [int(l) for l in l_values]
    if not ls or any(l < 0 or l > 6 for l in ls):
        raise InputError(f"projector angular momenta must be in 0..6, got {list(l_values)}")
    make = {"difference": _difference_shell, "primitive": _primitive_shell}.get(contraction)
    if make is None:
        raise InputError(f"unknown projector contraction {contraction!r}: "
                         "use 'difference' or 'primitive'")
    return ProjectorBasis(tuple(make(l, zeta) for l in ls), name=name)


def basis_from_pyscf(name: str, element: str = "Ne") -> ProjectorBasis:
    """A projector basis taken from a PySCF basis set: the functions ``name`` has for ``element``.

    ``"name@El"`` selects the element inline (DeePKS-kit's convention).

    Raises:
        InputError: PySCF does not know the basis for that element.
    """
    from pyscf import gto

    if "@" in name:
        name, element = name.split("@", 1)
    try:
        raw = gto.basis.load(name, element)
    except Exception as err:  # PySCF raises several types for unknown names
        raise InputError(f"PySCF has no basis {name!r} for element {element!r}: {err}") from err
    shells = []
    for entry in raw:
        l, rest = int(entry[0]), list(entry[1:])
        if rest and not isinstance(rest[0], (list, tuple)):
            rest = rest[1:]  # drop the relativistic kappa entry
        exps = tuple(float(p[0]) for p in rest)
        coefs = tuple(tuple(float(x) for x in p[1:]) for p in rest)
        shells.append(ProjectorShell(l, exps, coefs))
    if not shells:
        raise InputError(f"basis {name!r} has no functions for {element!r}")
    return ProjectorBasis(tuple(shells), name=f"{name}@{element}")


def resolve_basis(basis) -> ProjectorBasis:
    """``None`` → default; a :class:`ProjectorBasis` as is; a string → PySCF basis name
    (``"default"`` selects the DeePKS-kit default); a dict → :meth:`ProjectorBasis.from_dict`."""
    if basis is None:
        return default_basis()
    if isinstance(basis, ProjectorBasis):
        return basis
    if isinstance(basis, str):
        if basis.lower() in ("default", DEFAULT_BASIS_NAME):
            return default_basis()
        return basis_from_pyscf(basis)
    if isinstance(basis, dict):
        return ProjectorBasis.from_dict(basis)
    raise InputError(f"cannot interpret {basis!r} as a projector basis")


# --------------------------------------------------------------------------- pytrees
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProjectorData:
    """Overlaps of the orbital basis with every atom's projectors (one geometry).

    Attributes:
        overlaps: P[μ, I, k] = ⟨φ_μ|α^I_k⟩, shape [nao, natm, nproj] (dimensionless).
        shells: static ((l, n_radial), ...) per projector shell, the blocking of P along k.
    """

    overlaps: jax.Array
    shells: tuple[tuple[int, int], ...] = dataclasses.field(metadata=dict(static=True),
                                                             default=())


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProjectorDerivs:
    """Nuclear-derivative integrals of the projector overlaps (one geometry).

    With ∂/∂R φ(r − R) = −∇φ:
        ∂P[μ, I, k]/∂R_{A(μ)} = −ao_ip[:, μ, I, k]         (A(μ): the atom carrying φ_μ)
        ∂P[μ, I, k]/∂R_I      = −proj_ip[:, μ, I, k]

    Attributes:
        ao_ip: ⟨∇φ_μ|α^I_k⟩, shape [3, nao, natm, nproj] (Bohr⁻¹).
        proj_ip: ⟨φ_μ|∇α^I_k⟩, shape [3, nao, natm, nproj] (Bohr⁻¹).
        ao_atom: one-hot [nao, natm], 1 where φ_μ sits on atom A.
    """

    ao_ip: jax.Array
    proj_ip: jax.Array
    ao_atom: jax.Array


# --------------------------------------------------------------------------- integrals
def projector_mol(mol, basis: ProjectorBasis | None = None):
    """PySCF ``Mole`` of ghost atoms (no charge) carrying ``basis`` at the nuclei of ``mol``."""
    from pyscf import gto

    basis = resolve_basis(basis)
    pmol = gto.Mole()
    pmol.atom = [["X", c] for c in mol.atom_coords(unit="Bohr")]
    pmol.unit = "Bohr"
    pmol.basis = {"X": basis.to_pyscf()}
    pmol.cart = False
    pmol.verbose = 0
    pmol.build(dump_input=False, parse_arg=False)
    return pmol


def _is_cell(mol) -> bool:
    """True for a PySCF periodic ``Cell`` (its AOs are lattice sums at Γ)."""
    from pyscf.pbc import gto as pbcgto

    return isinstance(mol, pbcgto.Cell)


def _check_mol(mol):
    if mol.cart:
        raise InputError("DeePKS projectors need spherical orbital basis functions "
                         "(mol.cart=False)")


def projector_overlaps(mol, basis: ProjectorBasis | None = None) -> ProjectorData:
    """P[μ, I, k] = ⟨φ_μ|α^I_k⟩ for every atom I (PySCF ``int1e_ovlp`` cross integrals).

    For a periodic ``Cell``, φ_μ is the Γ-point lattice sum Σ_T χ_μ(r − T) and
    P[μ, I, k] = Σ_T ⟨χ_μ(r − T)|α^I_k⟩ (:func:`jaxks.integrals.cell.lattice_projector_overlaps`),
    so descriptors, V_δ and the DeePKS-SCF of a cell are those of a molecule with this P.

    Args:
        mol: PySCF ``Mole`` or periodic ``pbc.gto.Cell`` of the system (spherical AOs).
        basis: projector basis (default: DeePKS-kit's).
    Returns:
        :class:`ProjectorData` with overlaps [nao, natm, nproj].
    """
    from pyscf import gto

    _check_mol(mol)
    basis = resolve_basis(basis)
    if _is_cell(mol):
        # a periodic cell at Γ: the Bloch-summed AOs against every atom's projectors
        from jaxks.integrals.cell import lattice_projector_overlaps

        s = lattice_projector_overlaps(mol, basis.to_pyscf())
    else:
        s = gto.intor_cross("int1e_ovlp", mol, projector_mol(mol, basis))
    return ProjectorData(jnp.asarray(s.reshape(mol.nao, mol.natm, basis.n_proj)),
                         shells=basis.shell_structure)


def projector_derivatives(mol, basis: ProjectorBasis | None = None) -> ProjectorDerivs:
    """Derivative integrals of P with respect to the AO centres and the projector centres.

    ``int1e_ipovlp`` puts ∇ on the bra: ⟨∇φ|α⟩ from (mol, pmol), ⟨∇α|φ⟩ from (pmol, mol).

    Returns:
        :class:`ProjectorDerivs` (arrays in Bohr⁻¹).
    """
    from pyscf import gto

    _check_mol(mol)
    if _is_cell(mol):
        raise InputError("DeePKS forces of a periodic cell are not implemented (no Γ-point "
                         "gradients for cells in jaxks yet)")
    basis = resolve_basis(basis)
    pmol = projector_mol(mol, basis)
    nao, natm, nproj = mol.nao, mol.natm, basis.n_proj
    ao_ip = gto.intor_cross("int1e_ipovlp", mol, pmol).reshape(3, nao, natm, nproj)
    proj_ip = gto.intor_cross("int1e_ipovlp", pmol, mol)  # [3, natm*nproj, nao]
    proj_ip = proj_ip.transpose(0, 2, 1).reshape(3, nao, natm, nproj)
    ao_atom = np.zeros((nao, natm))
    for a, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        ao_atom[p0:p1, a] = 1.0
    return ProjectorDerivs(jnp.asarray(ao_ip), jnp.asarray(proj_ip), jnp.asarray(ao_atom))

"""The functional type, the registry of named functionals, and energy + potential evaluation.

A functional is a weighted sum of libxc-equivalent terms, e(ρ, σ) = Σ_k w_k e_k(ρ, σ), each term an
energy density (Hartree/Bohr³) with libxc's own small-density screening. Potentials come from JAX
automatic differentiation of e, so they are consistent with the energy to all orders.

Which libxc terms each name means was checked with ``pyscf.dft.libxc.parse_xc`` (PySCF 2.14 with
libxc 7.0.0, and PySCF 2.15 with libxc 7.1.2, whose values the terms reproduce). For the hybrids
"hse06" and "pbe0" ``terms`` is only the semilocal part (libxc
evaluates them as one id: HYB_GGA_XC_HSE06 = 1·WPBEH(ω=0) − 0.25·WPBEH(ω=0.11) + GGA_C_PBE and
HYB_GGA_XC_PBEH = 0.75·GGA_X_PBE + GGA_C_PBE, checked term by term against libxc's output); the
exact exchange is described by ``exact_exchange``, ``sr_exchange`` and ``omega`` and is the SCF's job. Note PySCF's "vwn" is VWN5 (libxc LDA_C_VWN, id 7), not VWN_RPA (id 8), and PySCF's
bare "lda" is Slater exchange only; here "lda" means PySCF's "lda,vwn".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from jaxks.xc import lda as _lda
from jaxks.xc import pbe as _pbe
from jaxks.xc import wpbeh as _wpbeh


@dataclass(frozen=True)
class XCTerm:
    """One libxc functional in a sum: weight × energy density.

    Attributes:
        libxc_name: the libxc functional it reproduces, e.g. "GGA_X_PBE".
        energy_density: e(ρ, σ) [...] → [...], Hartree/Bohr³ (closed shell, libxc screening included);
            a plain function, or a frozen dataclass carrying the term's parameters (e.g.
            ``GgaXWpbeh(omega=0.11)``), so that the term stays hashable (a jit static argument).
        weight: coefficient in the sum.
    """
    libxc_name: str
    energy_density: Callable
    weight: float = 1.0


LDA_X = XCTerm("LDA_X", _lda.lda_x)
LDA_C_VWN = XCTerm("LDA_C_VWN", _lda.lda_c_vwn)
LDA_C_VWN_RPA = XCTerm("LDA_C_VWN_RPA", _lda.lda_c_vwn_rpa)
LDA_C_PW = XCTerm("LDA_C_PW", _lda.lda_c_pw)
LDA_C_PW_MOD = XCTerm("LDA_C_PW_MOD", _lda.lda_c_pw_mod)
GGA_X_PBE = XCTerm("GGA_X_PBE", _pbe.gga_x_pbe)
GGA_C_PBE = XCTerm("GGA_C_PBE", _pbe.gga_c_pbe)
#: ωPBE exchange at ω = 0 (the full-range Ernzerhof-Perdew-hole exchange).
GGA_X_WPBEH = XCTerm("GGA_X_WPBEH", _wpbeh.GgaXWpbeh(omega=0.0))

#: HSE06 range separation ω (Bohr⁻¹) and short-range exact-exchange fraction (libxc HYB_GGA_XC_HSE06,
#: PySCF ``rsh_coeff("hse06") == (0.11, 0.0, 0.25)``).
HSE06_OMEGA = 0.11
HSE06_SR_EXCHANGE = 0.25
#: PBE0 full-range exact-exchange fraction (libxc HYB_GGA_XC_PBEH, PySCF ``hybrid_coeff("pbe0")``).
PBE0_EXACT_EXCHANGE = 0.25


@dataclass(frozen=True)
class XCFunctional:
    """A closed-shell exchange-correlation functional. Hashable: usable as a ``jax.jit`` static argument.

    Attributes:
        name: registry name (lower case).
        family: "lda" (depends on ρ only) or "gga" (on ρ and σ = |∇ρ|²).
        pyscf_xc: the PySCF ``xc`` string this functional reproduces.
        terms: the weighted libxc terms whose sum is the semilocal energy density.
        exact_exchange: fraction α of full-range exact (Hartree-Fock) exchange, 1/r.
        sr_exchange: fraction β of short-range exact exchange, erfc(ω r)/r (HSE06: 0.25).
        omega: range-separation parameter ω (Bohr⁻¹) of the short-range exchange.
        The exact-exchange energy is E_K = −¼ tr(Γ (α K[Γ] + β K_ω^SR[Γ])) (closed shell).
    """
    name: str
    family: str
    pyscf_xc: str
    terms: tuple[XCTerm, ...]
    exact_exchange: float = 0.0
    sr_exchange: float = 0.0
    omega: float = 0.0

    def __post_init__(self):
        if self.family not in ("lda", "gga"):
            raise ValueError(f"XC family must be 'lda' or 'gga', got {self.family!r}")

    def energy_density(self, rho, sigma=None):
        """e(ρ, σ) = Σ_k w_k e_k(ρ, σ) = ρ ε_xc, Hartree/Bohr³.

        Args:
            rho: total electron density [...], electrons/Bohr³.
            sigma: |∇ρ|² [...], electrons²/Bohr⁸; may be None (treated as 0) for an LDA.
        Returns:
            e [...], same shape as rho.
        """
        rho = jnp.asarray(rho)
        sigma = jnp.zeros_like(rho) if sigma is None else jnp.asarray(sigma)
        e = jnp.zeros_like(rho)
        for term in self.terms:
            e = e + term.weight * term.energy_density(rho, sigma)
        return e


def eval_xc(xc: XCFunctional, rho, sigma=None):
    """Energy density and its partial derivatives, by reverse-mode autodiff of ``xc.energy_density``.

        e = ρ ε_xc(ρ, σ),   v_ρ = ∂e/∂ρ,   v_σ = ∂e/∂σ   (pointwise)

    Same convention as libxc's ``vrho``/``vsigma`` (closed shell). Differentiable again
    (second derivatives are finite away from screened points and zero on them).

    Args:
        xc: the functional.
        rho: total electron density [...], electrons/Bohr³.
        sigma: |∇ρ|² [...], electrons²/Bohr⁸; None means 0 (fine for an LDA).
    Returns:
        (e, vrho, vsigma), each [...]: Hartree/Bohr³, Hartree, Hartree·Bohr⁵. vsigma is zero for an LDA.
    """
    rho = jnp.asarray(rho)
    sigma = jnp.zeros_like(rho) if sigma is None else jnp.asarray(sigma)
    e, pullback = jax.vjp(xc.energy_density, rho, sigma)
    vrho, vsigma = pullback(jnp.ones_like(e))
    return e, vrho, vsigma


def _lda_vwn(name):
    return XCFunctional(name, "lda", "lda,vwn", (LDA_X, LDA_C_VWN))


def _pbe(name):
    return XCFunctional(name, "gga", "pbe", (GGA_X_PBE, GGA_C_PBE))


def hse06(name: str = "hse06", continuous: bool = False) -> XCFunctional:
    """libxc HYB_GGA_XC_HSE06: semilocal part WPBEH(ω=0) − ¼ WPBEH(ω=0.11) + PBE correlation,
    plus ¼ short-range (erfc(ωr)/r) exact exchange at ω = 0.11 Bohr⁻¹.

    ``continuous=True`` gives the variant whose ωPBE reduced-gradient rescaling has no jumps
    (:func:`jaxks.xc.wpbeh.continuous_rescaled_s`): libxc's HSE06 energy jumps where s crosses 1
    or 15, so finite differences of SCF quantities (and the energy along an MD trajectory) see
    those jumps; the smooth variant differs from libxc's only where s < 1 or s > 15, which
    moves the total energy (water monomer, def2-SVP, grid level 3: by 4.2e-4 Eh) but removes
    the jumps. It is for derivative checks, not for production. The registered "hse06" is
    libxc's (``continuous=False``).
    """
    x0 = XCTerm("GGA_X_WPBEH", _wpbeh.GgaXWpbeh(omega=0.0, continuous=continuous))
    sr_x = XCTerm("GGA_X_WPBEH", _wpbeh.GgaXWpbeh(omega=HSE06_OMEGA, continuous=continuous),
                  weight=-HSE06_SR_EXCHANGE)
    return XCFunctional(name, "gga", "hse06", (x0, sr_x, GGA_C_PBE),
                        sr_exchange=HSE06_SR_EXCHANGE, omega=HSE06_OMEGA)


def _pbe0(name):
    """libxc HYB_GGA_XC_PBEH (PBE0): ¾ PBE exchange + PBE correlation + ¼ full-range exact exchange."""
    x = XCTerm("GGA_X_PBE", GGA_X_PBE.energy_density, weight=1.0 - PBE0_EXACT_EXCHANGE)
    return XCFunctional(name, "gga", "pbe0", (x, GGA_C_PBE), exact_exchange=PBE0_EXACT_EXCHANGE)


_REGISTRY: dict[str, XCFunctional] = {
    "lda": _lda_vwn("lda"),
    "lda,vwn": _lda_vwn("lda,vwn"),
    "lda,vwn5": _lda_vwn("lda,vwn5"),
    "svwn": _lda_vwn("svwn"),
    "slater,vwn": _lda_vwn("slater,vwn"),
    "lda,vwn_rpa": XCFunctional("lda,vwn_rpa", "lda", "lda,vwn_rpa", (LDA_X, LDA_C_VWN_RPA)),
    "lda,pw": XCFunctional("lda,pw", "lda", "lda,pw", (LDA_X, LDA_C_PW)),
    "lda,pw_mod": XCFunctional("lda,pw_mod", "lda", "lda,pw_mod", (LDA_X, LDA_C_PW_MOD)),
    "slater": XCFunctional("slater", "lda", "lda,", (LDA_X,)),
    "pbe": _pbe("pbe"),
    "pbe,pbe": _pbe("pbe,pbe"),
    # hybrids: only the semilocal part is evaluated here; exact exchange is the SCF's job
    "hse06": hse06("hse06"),
    "hyb_gga_xc_hse06": hse06("hyb_gga_xc_hse06"),
    "pbe0": _pbe0("pbe0"),
    "pbeh": _pbe0("pbeh"),
    "hyb_gga_xc_pbeh": _pbe0("hyb_gga_xc_pbeh"),
}


def known_names() -> tuple[str, ...]:
    """All registered functional names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_xc(name: str | XCFunctional) -> XCFunctional:
    """Functional by name (case-insensitive; spaces ignored). An :class:`XCFunctional` is returned as is.

    Raises:
        ValueError: unknown name; the message lists the known names.
    """
    if isinstance(name, XCFunctional):
        return name
    if not isinstance(name, str):
        raise ValueError(f"XC functional must be given by name (a string), got {type(name).__name__}")
    key = "".join(name.split()).lower()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ValueError(f"Unknown exchange-correlation functional {name!r}; "
                         f"known: {', '.join(known_names())}") from None


def register(xc: XCFunctional) -> XCFunctional:
    """Add a functional to the registry under ``xc.name`` (lower case); refuses to replace a different one."""
    key = xc.name.lower()
    if key in _REGISTRY and _REGISTRY[key] != xc:
        raise ValueError(f"An XC functional named {xc.name!r} is already registered")
    _REGISTRY[key] = xc
    return xc

"""Local density approximation terms (closed shell), written to reproduce libxc 7.1.2
(PySCF 2.15).

Every public ``*_eps`` function returns an energy *per electron* ε(ρ) in Hartree; the
``lda_*`` functions return the energy *density* e = ρ ε (Hartree/Bohr³) with libxc's screening of
small densities applied. Densities ρ are total (spin-summed) electron densities in electrons/Bohr³;
all functions are elementwise over arrays of any shape.

libxc leaves a grid point out (value and derivatives exactly zero) when ρ < ``dens_threshold``;
exchange is additionally zero where the *spin* density ρ/2 ≤ ``dens_threshold``. The thresholds
below are libxc's per-functional defaults, read from ``xc_func_type`` after ``xc_func_init`` in the
libxc 7.0.0 that PySCF 2.14 ships and unchanged in 7.1.2 (LDA_X, LDA_C_VWN, LDA_C_VWN_RPA, LDA_C_PW,
LDA_C_PW_MOD: 1e-15).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

#: libxc 7.1.2 (and 7.0.0) default density threshold of every LDA term used here (electrons/Bohr³).
LDA_DENS_THRESHOLD = 1e-15


# ---------------------------------------------------------------------------------------------
# libxc-style screening, shared with the GGA terms
# ---------------------------------------------------------------------------------------------

def screened(eps_fn: Callable, rho, sigma, *, dens_threshold: float, spin_screen: bool = False,
             sigma_threshold: float | None = None):
    """e = ρ ε(ρ, σ) with libxc's treatment of small densities and gradients; differentiable everywhere.

        e = 0                                 where ρ < t_ρ  (or ρ/2 ≤ t_ρ when ``spin_screen``)
        e = ρ ε(ρ, max(σ, t_σ²))              elsewhere

    Screened points are replaced by a harmless density (1) *before* calling ``eps_fn`` and masked
    again afterwards (the "double where"), so neither values nor derivatives of any order produce
    NaN/inf there. The σ floor is applied as a straight-through value shift: the value uses
    max(σ, t_σ²) and ∂/∂σ is the analytic derivative at that point, which is what libxc reports as
    vsigma (its derivatives are evaluated at the floored input).

    Args:
        eps_fn: ε(ρ, σ) in Hartree per electron, called only on unscreened (ρ > 0) points.
        rho: total density [...], electrons/Bohr³.
        sigma: |∇ρ|² [...], electrons²/Bohr⁸ (ignored by LDA ``eps_fn``).
        dens_threshold: libxc ``dens_threshold`` t_ρ.
        spin_screen: also zero points whose spin density ρ/2 ≤ t_ρ (libxc's exchange terms).
        sigma_threshold: libxc ``sigma_threshold`` t_σ (a threshold on |∇ρ|, hence squared); None: no floor.
    Returns:
        e [...], Hartree/Bohr³.
    """
    keep = rho >= dens_threshold
    if spin_screen:
        keep = keep & (0.5 * rho > dens_threshold)
    rho_safe = jnp.where(keep, rho, 1.0)
    sigma_safe = jnp.where(keep, sigma, 0.0)
    if sigma_threshold is not None:
        floor = sigma_threshold * sigma_threshold
        sigma_safe = sigma_safe + jax.lax.stop_gradient(jnp.maximum(sigma_safe, floor) - sigma_safe)
    e = rho_safe * eps_fn(rho_safe, sigma_safe)
    return jnp.where(keep, e, 0.0)


def wigner_seitz_radius(rho):
    """r_s = (3 / (4π ρ))^(1/3) in Bohr, for ρ [...] > 0 in electrons/Bohr³."""
    return jnp.cbrt(3.0 / (4.0 * np.pi * rho))


# ---------------------------------------------------------------------------------------------
# Slater exchange
# ---------------------------------------------------------------------------------------------

def slater_exchange_eps(rho):
    """Exchange energy per electron of the uniform gas (Dirac/Slater), closed shell:

        ε_x(ρ) = −(3/4) (3/π)^(1/3) ρ^(1/3)

    Args: rho [...] > 0, electrons/Bohr³. Returns ε_x [...], Hartree.
    """
    return -0.75 * np.cbrt(3.0 / np.pi) * jnp.cbrt(rho)


def lda_x(rho, sigma=None):
    """libxc LDA_X (id 1): e_x = ρ ε_x(ρ), zero where ρ/2 ≤ 1e-15. rho [...] → e [...] (Hartree/Bohr³)."""
    return screened(lambda r, s: slater_exchange_eps(r), rho, _zeros_if_none(sigma, rho),
                    dens_threshold=LDA_DENS_THRESHOLD, spin_screen=True)


# ---------------------------------------------------------------------------------------------
# Vosko-Wilk-Nusair correlation
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VWNParams:
    """Paramagnetic (ζ = 0) parameters of the VWN interpolation, Hartree units (libxc ``vwn.mpl``)."""
    A: float
    b: float
    c: float
    x0: float


#: VWN "functional V" (fit to Ceperley-Alder), libxc LDA_C_VWN (id 7) = PySCF "vwn" / "vwn5".
VWN5_PARAMAGNETIC = VWNParams(A=0.0310907, b=3.72744, c=12.9352, x0=-0.10498)
#: VWN fit to the RPA correlation energy, libxc LDA_C_VWN_RPA (id 8) = PySCF "vwn_rpa" / "vwnrpa".
VWN_RPA_PARAMAGNETIC = VWNParams(A=0.0310907, b=13.0720, c=42.7198, x0=-0.409286)


def vwn_eps(rs, p: VWNParams):
    """VWN correlation energy per electron of the unpolarised gas (Vosko, Wilk, Nusair 1980, eq. 4.4):

        x = √r_s,  X(x) = x² + b x + c,  Q = √(4c − b²)
        ε_c = A [ ln(x²/X(x)) + (2b/Q) atan(Q/(2x + b))
                  − (b x₀/X(x₀)) ( ln((x − x₀)²/X(x)) + (2(b + 2x₀)/Q) atan(Q/(2x + b)) ) ]

    Args: rs [...] > 0 (Bohr); p: the parameter set. Returns ε_c [...], Hartree.
    """
    x = jnp.sqrt(rs)
    big_x = rs + p.b * x + p.c
    q = np.sqrt(4.0 * p.c - p.b * p.b)
    x0_term = p.b * p.x0 / (p.x0 * p.x0 + p.b * p.x0 + p.c)
    atan = jnp.arctan(q / (2.0 * x + p.b))
    return p.A * (jnp.log(rs / big_x)
                  + (2.0 * p.b / q - x0_term * 2.0 * (2.0 * p.x0 + p.b) / q) * atan
                  - x0_term * jnp.log((x - p.x0) ** 2 / big_x))


def lda_c_vwn(rho, sigma=None):
    """libxc LDA_C_VWN (VWN5, id 7): e_c = ρ ε_c^VWN5(r_s), zero where ρ < 1e-15."""
    return screened(lambda r, s: vwn_eps(wigner_seitz_radius(r), VWN5_PARAMAGNETIC),
                    rho, _zeros_if_none(sigma, rho), dens_threshold=LDA_DENS_THRESHOLD)


def lda_c_vwn_rpa(rho, sigma=None):
    """libxc LDA_C_VWN_RPA (id 8): e_c = ρ ε_c^VWN-RPA(r_s), zero where ρ < 1e-15."""
    return screened(lambda r, s: vwn_eps(wigner_seitz_radius(r), VWN_RPA_PARAMAGNETIC),
                    rho, _zeros_if_none(sigma, rho), dens_threshold=LDA_DENS_THRESHOLD)


# ---------------------------------------------------------------------------------------------
# Perdew-Wang 1992 correlation
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PW92Params:
    """Paramagnetic (ζ = 0) parameters of the PW92 fit G(r_s; A, α₁, β₁..β₄, p) (libxc ``lda_c_pw.mpl``)."""
    A: float
    alpha1: float
    beta1: float
    beta2: float
    beta3: float
    beta4: float
    p: float = 1.0


#: PW92 as published (A = 0.031091), libxc LDA_C_PW (id 12) = PySCF "pw".
PW92_PARAMAGNETIC = PW92Params(A=0.031091, alpha1=0.21370, beta1=7.5957, beta2=3.5876,
                               beta3=1.6382, beta4=0.49294)
#: PW92 with the more precise A = 0.0310907, libxc LDA_C_PW_MOD (id 13) = PySCF "pw_mod";
#: this is the LDA inside libxc's GGA_C_PBE.
PW92_MOD_PARAMAGNETIC = PW92Params(A=0.0310907, alpha1=0.21370, beta1=7.5957, beta2=3.5876,
                                   beta3=1.6382, beta4=0.49294)


def pw92_eps(rs, p: PW92Params):
    """PW92 correlation energy per electron of the unpolarised gas (Perdew & Wang 1992, eq. 10):

        ε_c = −2A (1 + α₁ r_s) ln[1 + 1 / (2A (β₁ r_s^½ + β₂ r_s + β₃ r_s^(3/2) + β₄ r_s^(p+1)))]

    Args: rs [...] > 0 (Bohr); p: the parameter set. Returns ε_c [...], Hartree.
    """
    sqrt_rs = jnp.sqrt(rs)
    denom = 2.0 * p.A * (p.beta1 * sqrt_rs + p.beta2 * rs + p.beta3 * rs * sqrt_rs
                         + p.beta4 * rs ** (p.p + 1.0))
    # log1p, as libxc 7.1 does (7.0 wrote log(1 + x), which loses up to ~1e-8 relative at r_s ~ 1e5,
    # ρ ~ 1e-15, where 1/denom is tiny); the more accurate form is also the one libxc 7.1.2 computes.
    return -2.0 * p.A * (1.0 + p.alpha1 * rs) * jnp.log1p(1.0 / denom)


def lda_c_pw(rho, sigma=None):
    """libxc LDA_C_PW (id 12): e_c = ρ ε_c^PW92(r_s), zero where ρ < 1e-15."""
    return screened(lambda r, s: pw92_eps(wigner_seitz_radius(r), PW92_PARAMAGNETIC),
                    rho, _zeros_if_none(sigma, rho), dens_threshold=LDA_DENS_THRESHOLD)


def lda_c_pw_mod(rho, sigma=None):
    """libxc LDA_C_PW_MOD (id 13): e_c = ρ ε_c^PW92-mod(r_s), zero where ρ < 1e-15."""
    return screened(lambda r, s: pw92_eps(wigner_seitz_radius(r), PW92_MOD_PARAMAGNETIC),
                    rho, _zeros_if_none(sigma, rho), dens_threshold=LDA_DENS_THRESHOLD)


def _zeros_if_none(sigma, rho):
    return jnp.zeros_like(rho) if sigma is None else sigma

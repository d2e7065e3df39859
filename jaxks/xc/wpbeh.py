"""Short-range ωPBE exchange (libxc GGA_X_WPBEH, id 524), closed shell, written to reproduce libxc 7.1.2.

The exchange hole of Ernzerhof & Perdew (J. Chem. Phys. 109, 3313 (1998)) screened by erfc(ω r)/r,
integrated analytically by Heyd, Scuseria & Ernzerhof (J. Chem. Phys. 118, 8207 (2003); erratum
124, 219906 (2006)), with the reduced gradient rescaled as Henderson, Izmaylov, Scalmani &
Scuseria (J. Chem. Phys. 131, 044108 (2009), eq. 8). This is the exchange of HSE06:

    HYB_GGA_XC_HSE06 = 1·WPBEH(ω = 0) − 0.25·WPBEH(ω = 0.11) + 1·GGA_C_PBE + 0.25 exact SR exchange

Inputs: total density ρ (electrons/Bohr³), σ = |∇ρ|² (electrons²/Bohr⁸), ω (Bohr⁻¹); output: the
energy density e = ρ ε_x^LDA(ρ) F_x(ν, s) in Hartree/Bohr³, with the libxc quantities

    k_F = (3π² ρ)^(1/3),   ν = ω / k_F,   s = |∇ρ| / (2 k_F ρ)   (rescaled and floored, below)

F_x is libxc's maple expression (``maple/gga_exc/gga_x_wpbeh.mpl`` and the C generated from it),
re-derived here in our own notation, as libxc 7.1.2 (PySCF 2.15) evaluates it; its branches:

* s → s' : s' = s (s ≤ 1), s − ln(1 + exp(s − s_max)) (1 < s ≤ 15), s_max = 8.572844 (s > 15);
  then s' is floored at 1e-15 (value and derivative frozen below, as libxc does).
* E, c₁, c₂ derived from A..D, and EG(s) exact at every s (7.0 used the rounded published
  constants and a quartic fit of EG below s = 0.08; see ``_E``).
* term1: the full 8-term expansion of the erfc-screened hole for ν ≤ 14; for ν > 14 libxc's
  "large ω" Gaussian form (with the constant of the ν² term switched from 1.4559... to 2);
  ζ_w = s'²H + eb1 ν² floored at DBL_EPSILON^(2/3) = 3.7e-11 (new in 7.1).
* exp(x) erfc(√x) and exp(x) Ei(−x) through scaled functions (:mod:`jaxks.xc.special`).

Where 7.1.2's arithmetic decides the value, it is followed: at ω = 0 and s → 0 the hole's
exp(x) E₁(x) and ln(ζ/(D + ζ)) cancel (each ~ ln ζ), and 7.1.2 computes the logarithm as
log1p(−D/(D + ζ)), whose rounding then sets F_x to ~1e-6: F_x(s → 0, ω = 0) = 0.99999918572 in
7.1.2 (0.99999999520 in 7.0.0; the exact limit of the 7.1 formula is 1.0000000008), and above the
floor (s ≳ 0.0078) F_x carries noise of up to 1.3e-6 decaying as s⁻⁴ (~2e-8 at s = 0.02).
:func:`_log_zeta_ratio` uses the same operations, so values agree to ~1e-15 and vsigma, the
derivative of that noise, to ~1e-10 relative (see ``tests/xc/compare.py``, wpbeh_rounding_band).
The F_x of HSE06 (weight 1 on ω = 0) differs from the exact formula by these amounts only where
s < 0.03, i.e. in nearly uniform regions.

libxc 7.1.2 thresholds (PySCF 2.15; as in 7.0.0), checked against its output: points with
ρ/2 ≤ 1e-14 are zero (value and derivatives); σ is floored at t_σ² with t_σ = (1e-14)^(4/3).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxks.xc.lda import screened, slater_exchange_eps
from jaxks.xc.pbe import fermi_wavevector
from jaxks.xc.special import e1_scaled, erfcx

#: libxc 7.1.2 defaults for GGA_X_WPBEH (unchanged since 7.0): density threshold, and σ threshold
#: (on |∇ρ|) t_ρ^(4/3).
WPBEH_DENS_THRESHOLD = 1e-14
WPBEH_SIGMA_THRESHOLD = WPBEH_DENS_THRESHOLD ** (4.0 / 3.0)

# Ernzerhof-Perdew hole parameters A..D as published.
_A, _B, _C, _D = 1.0161144, -0.37170836, -0.077215461, 0.57786348
_SQRT_PI = float(np.sqrt(np.pi))
_SQRT_A = float(np.sqrt(_A))
# E, and the c1, c2 of F(s) = c1 H(s) + c2, derived from A..D as libxc 7.1 does. E makes EG regular at
# s = 0 (3π/4 + G_a(0) = 0); the published E = −0.051955731 satisfies that to 2.3e-8 relative only,
# c1 = 6.4753871 and c2 = 0.47965830 (7.0) are roundings (6e-9, 8e-9 relative) of
#   c1 = 4A²/(9C) + (B − A D)/C,   c2 = −4/(108 C).
# Sizes of the change, F_x(7.1) − F_x(7.0): s ≤ 0.08 (where 7.0 used its quartic EG fit): +6e-9
# (+5e-9 at ω = 0.11); s in (0.08, 15]: up to 4e-11; s > 15: 5.4e-10.
_E = (12.0 * _SQRT_PI * (_SQRT_A - 1.0) * _D**3.5
      - (6.0 * _C * _D + 4.0 * _B * _D**2 + 8.0 * _A * _D**3)) / 15.0
_FC1 = 4.0 * _A * _A / (9.0 * _C) + (_B - _A * _D) / _C
_FC2 = -4.0 / (108.0 * _C)
# H(s) = (a1 s² + a2 s⁴) / (1 + a3 s⁴ + a4 s⁵ + a5 s⁶)
_HA = (0.00979681, 0.0410834, 0.187440, 0.00120824, 0.0347188)
# ν beyond which the large-ω form is used; the ν² coefficient of the Gaussian argument below/above it
_NU_SWITCH = 14.0
_EB1_SMALL, _EB1_LARGE = 1.455915450052607, 2.0
# coefficients of the erfc(ν k_F r) expansion
_EA = (-1.128223946706117, 1.452736265762971, -1.243162299390327, 0.971824836115601,
       -0.568861079687373, 0.246880514820192, -0.065032363850763, 0.008401793031216)
# s rescaling (Henderson et al. 2009, eq. 8) and libxc's floor on the rescaled s
_S_MAX = 8.572844
_S_FLOOR = 1e-15
# libxc 7.1's floor on ζ_w = s'² H + eb1 ν² (its ``xc_reduced_floor``, DBL_EPSILON^(2/3) = 3.67e-11;
# located from 7.1.2's output: the switch lies between ζ = 3.6646e-11 and 3.6834e-11)
_ZETA_FLOOR = float(np.finfo(np.float64).eps) ** (2.0 / 3.0)

_X_OVER = 9.0 / (4.0 * _A)      # x = 9 ζ / (4A): argument of the scaled erfc / Ei


def rescaled_s(s):
    """libxc's rescaled reduced gradient (version 2 of Henderson et al.), floored at 1e-15:

        s' = s  (s ≤ 1);   s − ln(1 + exp(s − s_max))  (1 < s ≤ 15);   s_max  (s > 15)

    (libxc 7.0 switched at s < 1 instead; the two differ only at s = 1 exactly.)

    Args: s [...] ≥ 0, the reduced gradient. Returns s' [...] in [1e-15, s_max].
    """
    s_mid = jnp.clip(s, 1.0, 15.0)
    scaled = jnp.where(s <= 1.0, s,
                       jnp.where(s > 15.0, _S_MAX, s_mid - jnp.log(1.0 + jnp.exp(s_mid - _S_MAX))))
    return jnp.where(scaled < _S_FLOOR, _S_FLOOR, scaled)


def _h_over_s2(s2):
    """Ernzerhof-Perdew H(s)/s² as a function of s² (finite at s = 0)."""
    s4 = s2 * s2
    a1, a2, a3, a4, a5 = _HA
    return (a1 + a2 * s2) / (1.0 + a3 * s4 + a4 * s4 * jnp.sqrt(s2) + a5 * s4 * s2)


def _s2_eg(s2, h, f):
    """s² EG(s) with EG = −(3π/4 + G_a)/G_b (the exact form, no small-s fit), as

        s² EG = −(3π/4 + G_a) · 16 λ^(7/2) / (15 √π),   λ = D + s² H

    G_b = 15 √π s² / (16 λ^(7/2)) is divided out analytically, so nothing is 0/0 at s → 0:
    3π/4 + G_a = O(s²) is a cancellation of O(1) terms, which costs ~1e-16 absolute in s² EG, i.e.
    in F_x. libxc 7.1 evaluates the same function (below s = 0.08 as its Taylor series, which agrees
    with it to rounding); 7.0 used a quartic fit of EG there.

    Args: s2 = s'² [...], h = H(s')/s'² [...], f = F(s') [...]. Returns s² EG [...].
    """
    zeta = s2 * s2 * h                       # s² H(s)
    lam = _D + zeta
    lam_72 = lam ** 3 * jnp.sqrt(lam)
    # √(9 s² H / (4A)) = s² √(9 (H/s²) / (4A)): no square root of a vanishing argument
    y = s2 * jnp.sqrt(_X_OVER * h)
    g_a = (_SQRT_PI * (15.0 * _E + 6.0 * _C * (1.0 + f * s2) * lam + 4.0 * _B * lam * lam
                       + 8.0 * _A * lam ** 3) / (16.0 * lam_72)
           - 0.75 * np.pi * _SQRT_A * erfcx(y))
    return -(0.75 * np.pi + g_a) * 16.0 * lam_72 / (15.0 * _SQRT_PI)


def _log_zeta_ratio(zw):
    """ln(ζ_w / (D + ζ_w)) as libxc 7.1.2 evaluates it: log1p(−D · (1/(D + ζ_w))), with ζ_w ≥ 3.7e-11.

    Written in libxc's operation order on purpose: where ζ_w ≪ D the quotient rounds (relative error
    ~1e-16 D/ζ_w in ζ_w), and at the floor this *is* libxc's value: F_x(s → 0, ω = 0) = 0.99999918572
    where the exact limit of the same formula is 1.0000000008 (−8.15e-7 relative, all of it this
    rounding); 7.0 computed ln ζ_w − ln(D + ζ_w) and gave 0.99999999520 (published E).
    """
    return jnp.log1p(-_D * (1.0 / (_D + zw)))


def _zeta_w(zeta, nu2, eb1):
    """ζ_w = max(s'² H + eb1 ν², 3.7e-11), libxc 7.1's floored argument of the hole's Gaussian."""
    return jnp.maximum(zeta + eb1 * nu2, _ZETA_FLOOR)


def _term1_full(nu, zeta, zw, eb1):
    """term1 for ν ≤ 14: t1 + t2..t9 of the erfc expansion + t10 = (A/2) ln(ζ_w / (D + ζ_w)).

    Args: nu = ν [...]; zeta = s'² H(s') [...]; zw = :func:`_zeta_w` [...]; eb1 [...] (ν² coefficient).
    """
    ea1, ea2, ea3, ea4, ea5, ea6, ea7, ea8 = _EA
    A = _A
    nu2 = nu * nu
    dw = _D + zw
    x = _X_OVER * zw
    np1 = (-1.5 * ea1 * _SQRT_A * nu + 27.0 * ea3 * nu ** 3 / (8.0 * _SQRT_A)
           - 243.0 * ea5 * nu ** 5 / (32.0 * A ** 1.5) + 2187.0 * ea7 * nu ** 7 / (128.0 * A ** 2.5))
    np2 = (-A + 9.0 * ea2 * nu2 / 4.0 - 81.0 * ea4 * nu2 ** 2 / (16.0 * A)
           + 729.0 * ea6 * nu2 ** 3 / (64.0 * A * A) - 6561.0 * ea8 * nu2 ** 4 / (256.0 * A ** 3))
    t1 = 0.5 * (np1 * np.pi * erfcx(jnp.sqrt(x)) - np2 * e1_scaled(x))
    # the f_k of libxc's maple, split into partial fractions of ζ_w and D + ζ_w with their
    # half-integer powers built from one square root each (fewer operations to differentiate)
    rdw, sdw, rzw, szw = 1.0 / dw, jnp.sqrt(dw), 1.0 / zw, jnp.sqrt(zw)
    f2 = 0.5 * ea1 * _SQRT_PI * A / sdw
    f3 = 0.5 * ea2 * A * rdw
    f4 = ea3 * _SQRT_PI * (-9.0 / (8.0 * szw) + 0.25 * A * rdw / sdw)
    f5 = (ea4 / 128.0) * (-144.0 * rzw + 64.0 * A * rdw * rdw)
    f6 = (3.0 * _SQRT_PI * ea5 / 32.0) * (3.0 * (9.0 * zw - 2.0 * A) * rzw / (szw * A)
                                            + 4.0 * A * rdw * rdw / sdw)
    f7 = (ea6 / 32.0) * (32.0 * A * rdw ** 3 + (-36.0 + 81.0 * zeta / A) * rzw * rzw)
    f8 = (-3.0 * _SQRT_PI * ea7 / 128.0) * (-40.0 * A * rdw ** 3 / sdw
                                            + 9.0 * (27.0 * zw * zw - 6.0 * zw * A + 4.0 * A * A)
                                            * rzw * rzw / (szw * A * A))
    f9 = (324.0 * ea6 / (128.0 * A)) * eb1 * rzw * rzw + (ea8 / 128.0) * (
        384.0 * A * rdw ** 4 + (-729.0 * zw * zw + 324.0 * zw * A - 288.0 * A * A) * rzw ** 3 / (A * A))
    t2t9 = nu * (f2 + nu * (f3 + nu * (f4 + nu * (f5 + nu * (f6 + nu * (f7 + nu * (f8 + nu * f9)))))))
    return t1 + t2t9 + 0.5 * A * _log_zeta_ratio(zw)


def continuous_rescaled_s(s):
    """Henderson et al.'s rescaled reduced gradient over the whole range, without libxc's branches:

        s' = s − ln(1 + exp(s − s_max)) = s_max − ln(1 + exp(s_max − s))

    libxc's :func:`rescaled_s` keeps s' = s below s = 1 and s' = s_max above s = 15, so s' jumps
    by ln(1 + e^(1 − s_max)) = 5.1e-4 at s = 1 and by 1.6e-3 at s = 15: its HSE06 energy is a
    discontinuous function of the density (the energy density jumps by 1e-4 relative at s = 1).
    This form is smooth everywhere and equal to libxc's for 1 < s ≤ 15.

    Args: s [...] ≥ 0, the reduced gradient. Returns s' [...] in [1e-15, s_max).
    """
    scaled = _S_MAX - jnp.logaddexp(0.0, _S_MAX - s)
    return jnp.where(scaled < _S_FLOOR, _S_FLOOR, scaled)


def wpbeh_enhancement(s, nu, omega_is_zero: bool = False, continuous: bool = False):
    """ωPBE exchange enhancement F_x(ν, s) (libxc 7.1.2 ``f_wpbeh0``), ε_x = ε_x^LDA F_x:

        F_x = −(8/9) [term1(ν, s') + term2(s') + term3(ν, s') + term4(ν, s') + term5(ν, s')]

    with s' = :func:`rescaled_s`, ζ = s'² H(s'), λ = D + ζ, λ_ν = λ + ν², F = c₁H + c₂, and
        term2 = (λ² B + λ C + 2E + λ s'² C F + 2 s'² EG) / (2λ³)
        term3 = −ν (4λ_ν² B + 6λ_ν C + 15E + 6λ_ν s'² C F + 15 s'² EG) / (8 λ λ_ν^(5/2))
        term4 = −ν³ (λ_ν C + 5E + λ_ν s'² C F + 5 s'² EG) / (2 λ² λ_ν^(5/2))
        term5 = −ν⁵ (E + s'² EG) / (λ³ λ_ν^(5/2))
        term1 = t1 + Σ_{k=2..9} f_k ν^(k−1) + (A/2) ln(ζ_w/(D + ζ_w))                   (ν ≤ 14)
        term1 = −(A/2) [exp(x) Ei(−x) + ln(D + ζ_w) − ln ζ_w],  x = 9ζ_w/(4A)           (ν > 14)
        t1 = ½ [np₁(ν) π exp(x) erfc(√x) + np₂(ν) exp(x) Ei(−x)]
        ζ_w = max(ζ + eb1 ν², 3.7e-11)   (eb1 = 1.4559... for ν < 14, 2 above)

    E, c₁, c₂ are derived from A..D and EG is exact at every s (see ``_E`` and :func:`_s2_eg`).

    Args:
        s: reduced gradient [...] ≥ 0 (before rescaling), dimensionless.
        nu: ν = ω/k_F [...] ≥ 0, dimensionless.
        omega_is_zero: ν ≡ 0 (ω = 0): terms 3-5 and t2..t9 vanish and t1 = (A/2) exp(x) E₁(x).
        continuous: rescale s with :func:`continuous_rescaled_s` instead of libxc's branches.
    Returns: F_x [...], dimensionless.
    """
    s = continuous_rescaled_s(s) if continuous else rescaled_s(s)
    s2 = s * s
    h = _h_over_s2(s2)
    zeta = s2 * s2 * h
    f = _FC1 * s2 * h + _FC2
    lam = _D + zeta
    s2eg = _s2_eg(s2, h, f)
    term2 = (lam * lam * _B + lam * _C + 2.0 * _E + lam * s2 * _C * f + 2.0 * s2eg) / (2.0 * lam ** 3)
    if omega_is_zero:
        # ν = 0: term1 = (A/2) [exp(x) E₁(x) + ln(ζ_w / (D + ζ_w))], ζ_w = max(ζ, floor); the two
        # logarithms (each ~ ln ζ) cancel, to the rounding of _log_zeta_ratio that libxc 7.1.2 has too
        zw = _zeta_w(zeta, 0.0, 0.0)
        term1 = 0.5 * _A * (e1_scaled(_X_OVER * zw) + _log_zeta_ratio(zw))
        return -8.0 / 9.0 * (term1 + term2)
    nu2 = nu * nu
    lam_nu = lam + nu2
    lam_nu52 = lam_nu * lam_nu * jnp.sqrt(lam_nu)
    term3 = -nu * (4.0 * lam_nu * lam_nu * _B + 6.0 * lam_nu * _C + 15.0 * _E
                   + 6.0 * lam_nu * s2 * _C * f + 15.0 * s2eg) / (8.0 * lam * lam_nu52)
    term4 = -nu2 * nu * (lam_nu * _C + 5.0 * _E + lam_nu * s2 * _C * f + 5.0 * s2eg) / (
        2.0 * lam * lam * lam_nu52)
    term5 = -nu2 * nu2 * nu * (_E + s2eg) / (lam ** 3 * lam_nu52)
    large = nu > _NU_SWITCH
    eb1 = jnp.where(nu < _NU_SWITCH, _EB1_SMALL, _EB1_LARGE)
    # ν ≤ 14: full expansion, evaluated at ν capped at 14 so that it stays finite where unselected
    nu_full = jnp.minimum(nu, _NU_SWITCH)
    full = _term1_full(nu_full, zeta, _zeta_w(zeta, nu_full * nu_full, eb1), eb1)
    zw = _zeta_w(zeta, nu2, eb1)
    # ln((D + ζ_w)/ζ_w) = log1p(D/ζ_w), as libxc 7.1 writes it
    gauss = 0.5 * _A * (e1_scaled(_X_OVER * zw) - jnp.log1p(_D / zw))
    term1 = jnp.where(large, gauss, full)
    return -8.0 / 9.0 * (term1 + term2 + term3 + term4 + term5)


def wpbeh_exchange_eps(rho, sigma, omega: float, continuous: bool = False):
    """ωPBE short-range exchange energy per electron, closed shell:

        ε_x = ε_x^LDA(ρ) F_x(ν, s),   ν = ω / (3π²ρ)^(1/3),   s² = σ / (4 k_F² ρ²)

    Args: rho [...] > 0 (electrons/Bohr³), sigma [...] > 0 (electrons²/Bohr⁸), omega ≥ 0 (Bohr⁻¹,
        static), continuous: see :func:`wpbeh_enhancement`.
    Returns: ε_x [...], Hartree.
    """
    kf = fermi_wavevector(rho)
    s = jnp.sqrt(sigma) / (2.0 * kf * rho)
    nu = omega / kf
    return slater_exchange_eps(rho) * wpbeh_enhancement(s, nu, omega_is_zero=(omega == 0.0),
                                                        continuous=continuous)


@dataclass(frozen=True)
class GgaXWpbeh:
    """libxc GGA_X_WPBEH at a fixed ω: a hashable energy-density callable e(ρ, σ) for :class:`XCTerm`.

    Attributes:
        omega: range-separation parameter ω in Bohr⁻¹ (libxc's ``_omega``; 0 gives the full-range
            Ernzerhof-Perdew-hole exchange of PBEh, 0.11 the short-range part in HSE06).
        continuous: False (default) is libxc's functional exactly, whose energy jumps where the
            reduced gradient crosses s = 1 or 15 (see :func:`continuous_rescaled_s`), so finite
            differences of any SCF quantity pick up those jumps; True is the smooth variant (for
            derivative checks, or molecular dynamics that must conserve energy).
    """
    omega: float = 0.0
    continuous: bool = False

    def __post_init__(self):
        if not (np.isfinite(self.omega) and self.omega >= 0.0):
            raise ValueError(f"omega must be a finite number >= 0 (Bohr^-1), got {self.omega!r}")

    def __call__(self, rho, sigma):
        """e_x(ρ, σ) = ρ ε_x^ωPBE [...] → [...] Hartree/Bohr³, screened as libxc does."""
        return screened(lambda r, sg: wpbeh_exchange_eps(r, sg, self.omega, self.continuous), rho, sigma,
                        dens_threshold=WPBEH_DENS_THRESHOLD, spin_screen=True,
                        sigma_threshold=WPBEH_SIGMA_THRESHOLD)

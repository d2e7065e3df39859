"""Short-range ωPBE exchange (libxc GGA_X_WPBEH, id 524), closed shell, written to reproduce libxc 7.0.0.

The exchange hole of Ernzerhof & Perdew (J. Chem. Phys. 109, 3313 (1998)) screened by erfc(ω r)/r,
integrated analytically by Heyd, Scuseria & Ernzerhof (J. Chem. Phys. 118, 8207 (2003); erratum
124, 219906 (2006)), with the reduced gradient rescaled as Henderson, Izmaylov, Scalmani &
Scuseria (J. Chem. Phys. 131, 044108 (2009), eq. 8). This is the exchange of HSE06:

    HYB_GGA_XC_HSE06 = 1·WPBEH(ω = 0) − 0.25·WPBEH(ω = 0.11) + 1·GGA_C_PBE + 0.25 exact SR exchange

Inputs: total density ρ (electrons/Bohr³), σ = |∇ρ|² (electrons²/Bohr⁸), ω (Bohr⁻¹); output: the
energy density e = ρ ε_x^LDA(ρ) F_x(ν, s) in Hartree/Bohr³, with the libxc quantities

    k_F = (3π² ρ)^(1/3),   ν = ω / k_F,   s = |∇ρ| / (2 k_F ρ)   (rescaled and floored, below)

F_x is libxc's maple expression (``maple/gga_exc/gga_x_wpbeh.mpl`` and the C generated from it),
re-derived here in our own notation; its branches are reproduced:

* s → s' : s' = s (s < 1), s − ln(1 + exp(s − s_max)) (1 ≤ s ≤ 15), s_max = 8.572844 (s > 15);
  then s' is floored at 1e-15 (value and derivative frozen below, as libxc does).
* EG(s): the closed form for s > 0.08, libxc's quartic fit below.
* term1: the full 8-term expansion of the erfc-screened hole for ν ≤ 14; for ν > 14 libxc's
  "large ω" Gaussian form (with the constant of the ν² term switched from 1.4559... to 2).
* exp(x) erfc(√x) and exp(x) Ei(−x) through scaled functions (:mod:`jaxks.xc.special`).

One regrouping differs from libxc's arithmetic (not its mathematics): at ω = 0 the terms
exp(x) Ei(−x) and ln x of the hole cancel as s → 0; libxc subtracts them, which leaves its vsigma
dominated by rounding (relative noise ~2.5e-15/s² measured: 2e-10 at s = 3e-3). Here that pair is
evaluated as one function, exp(x) E₁(x) + ln x, whose derivative is smooth, so values agree with
libxc and the derivatives are the exact ones where libxc's are noise.

libxc 7.0.0 thresholds (PySCF 2.14), checked against its output: points with ρ/2 ≤ 1e-14 are
zero (value and derivatives); σ is floored at t_σ² with t_σ = (1e-14)^(4/3).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxks.xc.lda import screened, slater_exchange_eps
from jaxks.xc.pbe import fermi_wavevector
from jaxks.xc.special import e1_scaled, e1_scaled_plus_log, erfcx

#: libxc 7.0.0 defaults for GGA_X_WPBEH: density threshold, and σ threshold (on |∇ρ|) t_ρ^(4/3).
WPBEH_DENS_THRESHOLD = 1e-14
WPBEH_SIGMA_THRESHOLD = WPBEH_DENS_THRESHOLD ** (4.0 / 3.0)

# Ernzerhof-Perdew hole parameters.
_A, _B, _C, _D, _E = 1.0161144, -0.37170836, -0.077215461, 0.57786348, -0.051955731
# H(s) = (a1 s² + a2 s⁴) / (1 + a3 s⁴ + a4 s⁵ + a5 s⁶)
_HA = (0.00979681, 0.0410834, 0.187440, 0.00120824, 0.0347188)
# F(s) = c1 H(s) + c2 (libxc's rounded values of 4A²/(9C) + (B − A D)/C and −4/(108 C))
_FC1, _FC2 = 6.4753871, 0.47965830
# EG(s) for s ≤ 0.08: a1 + a2 s² + a3 s⁴
_EGA = (-0.02628417880, -0.07117647788, 0.08534541323)
_EG_SWITCH = 0.08
# ν beyond which the large-ω form is used; the ν² coefficient of the Gaussian argument below/above it
_NU_SWITCH = 14.0
_EB1_SMALL, _EB1_LARGE = 1.455915450052607, 2.0
# coefficients of the erfc(ν k_F r) expansion
_EA = (-1.128223946706117, 1.452736265762971, -1.243162299390327, 0.971824836115601,
       -0.568861079687373, 0.246880514820192, -0.065032363850763, 0.008401793031216)
# s rescaling (Henderson et al. 2009, eq. 8) and libxc's floor on the rescaled s
_S_MAX = 8.572844
_S_FLOOR = 1e-15

_SQRT_PI = float(np.sqrt(np.pi))
_SQRT_A = float(np.sqrt(_A))
_X_OVER = 9.0 / (4.0 * _A)      # x = 9 ζ / (4A): argument of the scaled erfc / Ei


def rescaled_s(s):
    """libxc's rescaled reduced gradient (version 2 of Henderson et al.), floored at 1e-15:

        s' = s  (s < 1);   s − ln(1 + exp(s − s_max))  (1 ≤ s ≤ 15);   s_max  (s > 15)

    Args: s [...] ≥ 0, the reduced gradient. Returns s' [...] in [1e-15, s_max].
    """
    s_mid = jnp.clip(s, 1.0, 15.0)
    scaled = jnp.where(s < 1.0, s,
                       jnp.where(s > 15.0, _S_MAX, s_mid - jnp.log(1.0 + jnp.exp(s_mid - _S_MAX))))
    return jnp.where(scaled < _S_FLOOR, _S_FLOOR, scaled)


def _h(s2):
    """Ernzerhof-Perdew H(s) as a function of s² (s > 0)."""
    s4 = s2 * s2
    s5 = s4 * jnp.sqrt(s2)
    a1, a2, a3, a4, a5 = _HA
    return (a1 * s2 + a2 * s4) / (1.0 + a3 * s4 + a4 * s5 + a5 * s4 * s2)


def _eg(s, s2, h, f):
    """EG(s): −(3π/4 + G_a)/G_b for s > 0.08, the quartic fit below (libxc)."""
    big = s > _EG_SWITCH
    # the closed form divides by s² and cancels: evaluate it only where it is selected
    s2b = jnp.where(big, s2, 1.0)
    hb = jnp.where(big, h, 1.0)
    fb = jnp.where(big, f, 1.0)
    a1 = _D + s2b * hb
    a2 = _X_OVER * s2b * hb
    a1_72 = a1 ** 3 * jnp.sqrt(a1)
    g_a = (_SQRT_PI * (15.0 * _E + 6.0 * _C * (1.0 + fb * s2b) * a1 + 4.0 * _B * a1 * a1
                       + 8.0 * _A * a1 ** 3) / (16.0 * a1_72)
           - 0.75 * np.pi * _SQRT_A * erfcx(jnp.sqrt(a2)))
    g_b = 15.0 * _SQRT_PI * s2b / (16.0 * a1_72)
    closed = -(0.75 * np.pi + g_a) / g_b
    fit = _EGA[0] + _EGA[1] * s2 + _EGA[2] * s2 * s2
    return jnp.where(big, closed, fit)


def _term1_full(nu, zeta, h, s2):
    """t1 + t2..t9 of the erfc expansion (ν ≤ 14), without t10 = (A/2) ln(ζ_w / (D + ζ_w))."""
    ea1, ea2, ea3, ea4, ea5, ea6, ea7, ea8 = _EA
    A = _A
    nu2 = nu * nu
    zw = zeta + jnp.where(nu < _NU_SWITCH, _EB1_SMALL, _EB1_LARGE) * nu2   # ζ + eb1 ν²
    dw = _D + zw
    x = _X_OVER * zw
    np1 = (-1.5 * ea1 * _SQRT_A * nu + 27.0 * ea3 * nu ** 3 / (8.0 * _SQRT_A)
           - 243.0 * ea5 * nu ** 5 / (32.0 * A ** 1.5) + 2187.0 * ea7 * nu ** 7 / (128.0 * A ** 2.5))
    np2 = (-A + 9.0 * ea2 * nu2 / 4.0 - 81.0 * ea4 * nu2 ** 2 / (16.0 * A)
           + 729.0 * ea6 * nu2 ** 3 / (64.0 * A * A) - 6561.0 * ea8 * nu2 ** 4 / (256.0 * A ** 3))
    t1 = 0.5 * (np1 * np.pi * erfcx(jnp.sqrt(x)) - np2 * e1_scaled(x))
    eb1 = jnp.where(nu < _NU_SWITCH, _EB1_SMALL, _EB1_LARGE)
    # the f_k of libxc's maple, split into partial fractions of ζ_w and D + ζ_w with their
    # half-integer powers built from one square root each (fewer operations to differentiate)
    rdw, sdw, rzw, szw = 1.0 / dw, jnp.sqrt(dw), 1.0 / zw, jnp.sqrt(zw)
    f2 = 0.5 * ea1 * _SQRT_PI * A / sdw
    f3 = 0.5 * ea2 * A * rdw
    f4 = ea3 * _SQRT_PI * (-9.0 / (8.0 * szw) + 0.25 * A * rdw / sdw)
    f5 = (ea4 / 128.0) * (-144.0 * rzw + 64.0 * A * rdw * rdw)
    f6 = (3.0 * _SQRT_PI * ea5 / 32.0) * (3.0 * (9.0 * zw - 2.0 * A) * rzw / (szw * A)
                                            + 4.0 * A * rdw * rdw / sdw)
    f7 = (ea6 / 32.0) * (32.0 * A * rdw ** 3 + (-36.0 + 81.0 * s2 * h / A) * rzw * rzw)
    f8 = (-3.0 * _SQRT_PI * ea7 / 128.0) * (-40.0 * A * rdw ** 3 / sdw
                                            + 9.0 * (27.0 * zw * zw - 6.0 * zw * A + 4.0 * A * A)
                                            * rzw * rzw / (szw * A * A))
    f9 = (324.0 * ea6 / (128.0 * A)) * eb1 * rzw * rzw + (ea8 / 128.0) * (
        384.0 * A * rdw ** 4 + (-729.0 * zw * zw + 324.0 * zw * A - 288.0 * A * A) * rzw ** 3 / (A * A))
    t2t9 = nu * (f2 + nu * (f3 + nu * (f4 + nu * (f5 + nu * (f6 + nu * (f7 + nu * (f8 + nu * f9)))))))
    return t1 + t2t9 + 0.5 * A * jnp.log(zw / dw)


def continuous_rescaled_s(s):
    """Henderson et al.'s rescaled reduced gradient over the whole range, without libxc's branches:

        s' = s − ln(1 + exp(s − s_max)) = s_max − ln(1 + exp(s_max − s))

    libxc's :func:`rescaled_s` keeps s' = s below s = 1 and s' = s_max above s = 15, so s' jumps
    by ln(1 + e^(1 − s_max)) = 5.1e-4 at s = 1 and by 1.6e-3 at s = 15: its HSE06 energy is a
    discontinuous function of the density (the energy density jumps by 1e-4 relative at s = 1).
    This form is smooth everywhere and equal to libxc's for 1 ≤ s ≤ 15.

    Args: s [...] ≥ 0, the reduced gradient. Returns s' [...] in [1e-15, s_max).
    """
    scaled = _S_MAX - jnp.logaddexp(0.0, _S_MAX - s)
    return jnp.where(scaled < _S_FLOOR, _S_FLOOR, scaled)


def wpbeh_enhancement(s, nu, omega_is_zero: bool = False, continuous: bool = False):
    """ωPBE exchange enhancement F_x(ν, s) (libxc ``f_wpbeh0``), ε_x = ε_x^LDA F_x:

        F_x = −(8/9) [term1(ν, s') + term2(s') + term3(ν, s') + term4(ν, s') + term5(ν, s')]

    with s' = :func:`rescaled_s`, ζ = s'² H(s'), λ = D + ζ, λ_ν = λ + ν², F = c₁H + c₂, and
        term2 = (λ² B + λ C + 2E + λ s'² C F + 2 s'² EG) / (2λ³)
        term3 = −ν (4λ_ν² B + 6λ_ν C + 15E + 6λ_ν s'² C F + 15 s'² EG) / (8 λ λ_ν^(5/2))
        term4 = −ν³ (λ_ν C + 5E + λ_ν s'² C F + 5 s'² EG) / (2 λ² λ_ν^(5/2))
        term5 = −ν⁵ (E + s'² EG) / (λ³ λ_ν^(5/2))
        term1 = t1 + Σ_{k=2..9} f_k ν^(k−1) + (A/2) ln(ζ_w/(D + ζ_w)),  ζ_w = ζ + eb1 ν²  (ν ≤ 14)
        term1 = −(A/2) [exp(x) Ei(−x) + ln(D + ζ_w) − ln ζ_w],  x = 9ζ_w/(4A)           (ν > 14)
        t1 = ½ [np₁(ν) π exp(x) erfc(√x) + np₂(ν) exp(x) Ei(−x)]

    Args:
        s: reduced gradient [...] ≥ 0 (before rescaling), dimensionless.
        nu: ν = ω/k_F [...] ≥ 0, dimensionless.
        omega_is_zero: ν ≡ 0 (ω = 0): use the exact ν = 0 form with the Ei/log pair regrouped.
        continuous: rescale s with :func:`continuous_rescaled_s` instead of libxc's branches.
    Returns: F_x [...], dimensionless.
    """
    s = continuous_rescaled_s(s) if continuous else rescaled_s(s)
    s2 = s * s
    h = _h(s2)
    f = _FC1 * h + _FC2
    zeta = s2 * h
    lam = _D + zeta
    eg = _eg(s, s2, h, f)
    term2 = (lam * lam * _B + lam * _C + 2.0 * _E + lam * s2 * _C * f + 2.0 * s2 * eg) / (2.0 * lam ** 3)
    if omega_is_zero:
        # ν = 0: term1 = (A/2)[exp(x)E1(x) + ln ζ − ln λ] = (A/2)[g(x) − ln(9/(4A)) − ln λ],
        # g(x) = exp(x)E1(x) + ln x, x = 9ζ/(4A); terms 3-5 vanish.
        term1 = 0.5 * _A * (e1_scaled_plus_log(_X_OVER * zeta) - np.log(_X_OVER) - jnp.log(lam))
        return -8.0 / 9.0 * (term1 + term2)
    nu2 = nu * nu
    lam_nu = lam + nu2
    lam_nu52 = lam_nu * lam_nu * jnp.sqrt(lam_nu)
    common = s2 * eg
    term3 = -nu * (4.0 * lam_nu * lam_nu * _B + 6.0 * lam_nu * _C + 15.0 * _E
                   + 6.0 * lam_nu * s2 * _C * f + 15.0 * common) / (8.0 * lam * lam_nu52)
    term4 = -nu2 * nu * (lam_nu * _C + 5.0 * _E + lam_nu * s2 * _C * f + 5.0 * common) / (
        2.0 * lam * lam * lam_nu52)
    term5 = -nu2 * nu2 * nu * (_E + common) / (lam ** 3 * lam_nu52)
    large = nu > _NU_SWITCH
    # ν ≤ 14: full expansion, evaluated at ν capped at 14 so that it stays finite where unselected
    full = _term1_full(jnp.minimum(nu, _NU_SWITCH), zeta, h, s2)
    zw = zeta + jnp.where(nu < _NU_SWITCH, _EB1_SMALL, _EB1_LARGE) * nu2
    gauss = 0.5 * _A * (e1_scaled(_X_OVER * zw) - jnp.log(_D + zw) + jnp.log(zw))
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

"""PBE generalised-gradient exchange and correlation (closed shell), written to reproduce libxc 7.1.2
(PySCF 2.15).

Perdew, Burke, Ernzerhof, Phys. Rev. Lett. 77, 3865 (1996). Inputs are the total density ρ
(electrons/Bohr³) and σ = |∇ρ|² (electrons²/Bohr⁸), elementwise over arrays of any shape; outputs
are energy densities e = ρ ε (Hartree/Bohr³).

Everything is written in terms of σ (never √σ), so the terms are smooth at σ = 0.
libxc 7.1.2 default thresholds, as in 7.0.0 (read from ``xc_func_type`` after ``xc_func_init``;
σ floor = t_σ²):
  GGA_X_PBE: dens_threshold 1e-15 (and spin density ρ/2 ≤ 1e-15 screened), sigma_threshold 1e-20
  GGA_C_PBE: dens_threshold 1e-12, sigma_threshold 1e-16
libxc 7.1.2's GGA_X_PBE vsigma has a relative rounding error up to ~2 ε s² (ε = 2.2e-16) at large s
(measured against a 40-digit evaluation; 3e-6 at s = 1.6e5), where 7.0.0 and this module are exact.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxks.xc.lda import (PW92_MOD_PARAMAGNETIC, pw92_eps, screened, slater_exchange_eps,
                          wigner_seitz_radius)

#: libxc 7.1.2 defaults for GGA_X_PBE (id 101).
PBE_X_DENS_THRESHOLD = 1e-15
PBE_X_SIGMA_THRESHOLD = 1e-20
#: libxc 7.1.2 defaults for GGA_C_PBE (id 130).
PBE_C_DENS_THRESHOLD = 1e-12
PBE_C_SIGMA_THRESHOLD = 1e-16

#: PBE exchange parameters (libxc ``gga_x_pbe``): κ and μ = β π²/3.
PBE_KAPPA = 0.8040
PBE_MU = 0.2195149727645171
#: PBE correlation parameters (libxc ``gga_c_pbe``): β and γ = (1 − ln 2)/π².
PBE_BETA = 0.06672455060314922
PBE_GAMMA = (1.0 - np.log(2.0)) / np.pi**2


def fermi_wavevector(rho):
    """k_F = (3π² ρ)^(1/3) in Bohr⁻¹, for ρ [...] > 0."""
    return jnp.cbrt(3.0 * np.pi**2 * rho)


def pbe_exchange_enhancement(s2, kappa: float = PBE_KAPPA, mu: float = PBE_MU):
    """PBE exchange enhancement factor as a function of s² (PBE 1996, eq. 14):

        F_x(s) = 1 + κ − κ / (1 + μ s² / κ)

    Args: s2 [...] ≥ 0, the squared reduced gradient (dimensionless). Returns F_x [...].
    """
    return 1.0 + kappa - kappa / (1.0 + mu * s2 / kappa)


def pbe_exchange_eps(rho, sigma):
    """PBE exchange energy per electron, closed shell:

        ε_x = ε_x^LDA(ρ) F_x(s),   s² = σ / (4 k_F² ρ²) = σ / (4 (3π²)^(2/3) ρ^(8/3))

    Args: rho [...] > 0 (electrons/Bohr³), sigma [...] ≥ 0 (electrons²/Bohr⁸). Returns ε_x [...], Hartree.
    """
    kf = fermi_wavevector(rho)
    s2 = sigma / (4.0 * kf * kf * rho * rho)
    return slater_exchange_eps(rho) * pbe_exchange_enhancement(s2)


def pbe_correlation_h(eps_c_unif, t2, beta: float = PBE_BETA, gamma: float = PBE_GAMMA):
    """PBE gradient correction H to the correlation energy per electron, ζ = 0 (φ = 1) (PBE 1996, eqs. 7-8):

        A = (β/γ) / (exp(−ε_c^unif / γ) − 1)
        H = γ ln[1 + (β/γ) t² (1 + A t²) / (1 + A t² + A² t⁴)]

    Args:
        eps_c_unif: ε_c of the uniform gas [...] (< 0), Hartree.
        t2: squared reduced gradient t² [...] ≥ 0 (see :func:`pbe_correlation_eps`).
    Returns: H [...] ≥ 0, Hartree.
    """
    # expm1 and log1p (libxc 7.0 wrote exp(x) − 1 and log(1 + x)): accurate where −ε_c/γ is small
    # (ρ → ∞) and where the log's argument is small (t → 0). libxc 7.1.2's output cannot tell the two
    # forms apart beyond rounding (its PW92 inside did switch to log1p); this one agrees best with it
    # (max relative error of e 1.7e-12 vs 2.2e-12 on test_pbe's well-conditioned points)
    a = (beta / gamma) / jnp.expm1(-eps_c_unif / gamma)
    at2 = a * t2
    return gamma * jnp.log1p((beta / gamma) * t2 * (1.0 + at2) / (1.0 + at2 + at2 * at2))


def pbe_correlation_eps(rho, sigma):
    """PBE correlation energy per electron, closed shell:

        ε_c = ε_c^PW92-mod(r_s) + H(ε_c^PW92-mod, t²),
        t² = σ / (2 k_s ρ)² = π σ / (16 k_F ρ²),   k_s = √(4 k_F / π)

    Args: rho [...] > 0 (electrons/Bohr³), sigma [...] ≥ 0 (electrons²/Bohr⁸). Returns ε_c [...], Hartree.
    """
    eps_unif = pw92_eps(wigner_seitz_radius(rho), PW92_MOD_PARAMAGNETIC)
    t2 = np.pi * sigma / (16.0 * fermi_wavevector(rho) * rho * rho)
    return eps_unif + pbe_correlation_h(eps_unif, t2)


def gga_x_pbe(rho, sigma):
    """libxc GGA_X_PBE (id 101): e_x = ρ ε_x^PBE, screened as libxc does. [...] → [...] Hartree/Bohr³."""
    return screened(pbe_exchange_eps, rho, sigma, dens_threshold=PBE_X_DENS_THRESHOLD,
                    spin_screen=True, sigma_threshold=PBE_X_SIGMA_THRESHOLD)


def gga_c_pbe(rho, sigma):
    """libxc GGA_C_PBE (id 130): e_c = ρ ε_c^PBE, screened as libxc does. [...] → [...] Hartree/Bohr³."""
    return screened(pbe_correlation_eps, rho, sigma, dens_threshold=PBE_C_DENS_THRESHOLD,
                    sigma_threshold=PBE_C_SIGMA_THRESHOLD)

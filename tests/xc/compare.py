"""Shared helpers of the XC tests: sample densities, libxc references through PySCF, comparisons.

Used by test_lda.py, test_pbe.py, test_wpbeh.py and test_hse.py (one copy of each helper).
"""

import jax
import jax.numpy as jnp
import numpy as np
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)

# libxc term → a PySCF xc string that evaluates exactly that term
TERM_PYSCF = {"LDA_X": "lda,", "LDA_C_VWN": ",vwn", "LDA_C_VWN_RPA": ",vwn_rpa", "LDA_C_PW": ",pw",
              "LDA_C_PW_MOD": ",pw_mod", "GGA_X_PBE": "pbe,", "GGA_C_PBE": ",pbe",
              "GGA_X_WPBEH": "GGA_X_WPBEH"}

# Around every libxc threshold: ρ < 1e-15 screened; exchange also where ρ/2 ≤ 1e-15;
# GGA_C_PBE screened below 1e-12; GGA_X_WPBEH where ρ/2 ≤ 1e-14; σ floors 1e-40 (PBE x),
# 1e-32 (PBE c) and (1e-14)^(8/3) ≈ 4.6e-38 (WPBEH); WPBEH's rescaled s floored at 1e-15.
EDGE_RHO = np.array([0.0, -1e-10, 1e-16, 1e-15, 1.5e-15, 2e-15, 2.0000001e-15, 1e-14, 5e-13, 1e-12,
                     1.0000001e-12, 1e-9, 1.0, 1.0, 1.0, 1.0, 1e-12, 1e-12, 1e-3,
                     2e-14, 2.0000001e-14, 1e-13, 1e-13, 1.0, 1.0, 1e2])
EDGE_GRAD = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-22, 1e-20, 0.0,
                      1e-17, 1e-21, 0.0, 1e-21, 1e-20, 1e-19, 1e-16, 1e-15, 1e-3,
                      0.0, 0.0, 0.0, 1e-30, 5e-15, 5e-14, 1e-11])


def sample_points(n=6000, seed=0, s_max=1e3, log_rho_min=-14.0):
    """ρ log-uniform in [10^log_rho_min, 1e3] plus the threshold edges; |∇ρ| from the reduced gradient
    s = |∇ρ|/(2 k_F ρ): a quarter exactly 0, the rest log-uniform in [1e-6, s_max].
    Returns rho, grad (= |∇ρ|, fed to PySCF as the x component), s; sigma = grad**2."""
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(log_rho_min, 3, n)
    s = np.where(rng.random(n) < 0.25, 0.0, 10.0 ** rng.uniform(-6, np.log10(s_max), n))
    grad = 2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho * s
    rho = np.concatenate([rho, EDGE_RHO])
    grad = np.concatenate([grad, EDGE_GRAD])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s_edge = np.nan_to_num(EDGE_GRAD / (2.0 * np.cbrt(3.0 * np.pi**2 * EDGE_RHO) * EDGE_RHO))
    s = np.concatenate([s, s_edge])
    return rho, grad, s


def libxc_reference(pyscf_xc, gga, rho, grad, omega=None):
    """(e = ρ ε_xc, vrho, vsigma) from libxc via PySCF (spin=0, deriv=1); vsigma = 0 for an LDA.

    ``omega`` (Bohr⁻¹) sets libxc's ``_omega`` of range-separated terms (e.g. GGA_X_WPBEH); None
    keeps libxc's default (0 for GGA_X_WPBEH; HYB_GGA_XC_HSE06 sets its own two ω)."""
    if gga:
        r = np.zeros((4, rho.size))
        r[0], r[1] = rho, grad
        exc, vxc = libxc.eval_xc(pyscf_xc, r, spin=0, deriv=1, omega=omega)[:2]
        return rho * exc, vxc[0], vxc[1]
    exc, vxc = libxc.eval_xc(pyscf_xc, rho, spin=0, deriv=1, omega=omega)[:2]
    return rho * exc, vxc[0], np.zeros_like(rho)


def local_scales(rho, grad):
    """Natural size of e, vrho, vsigma at each point, from the Slater exchange energy density
    |e_x| = (3/4)(3/π)^(1/3) ρ^(4/3): (|e_x|, |e_x|/ρ, |e_x|/(4 k_F² ρ² + σ)).

    Used as an absolute floor of 1e-12 × scale: where a value is ~0 by cancellation (PBE
    correlation at huge gradients, total PBE vsigma at σ → 0 where exchange and correlation
    gradient terms cancel exactly by construction) relative error is meaningless."""
    rho = np.maximum(rho, 0.0)
    ex = 0.75 * np.cbrt(3.0 / np.pi) * rho ** (4.0 / 3.0)
    kf2 = np.cbrt(3.0 * np.pi**2 * rho) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return ex, np.nan_to_num(ex / rho), np.nan_to_num(ex / (4.0 * kf2 * rho**2 + grad**2))


def jax_values(energy_density, rho, grad):
    """(e, ∂e/∂ρ, ∂e/∂σ) of an energy-density function by autodiff, as NumPy arrays.

    Inputs are padded (ρ = 1, σ = 0) to a power-of-two length ≥ 4096, so that the tests share a few
    shapes and JAX's per-shape compilations are reused between them (test time is compilation)."""
    rho, grad = np.asarray(rho, dtype=float), np.asarray(grad, dtype=float)
    n = rho.size
    size = max(4096, 1 << (n - 1).bit_length())
    rho_p = np.concatenate([rho, np.ones(size - n)])
    sigma_p = np.concatenate([grad * grad, np.zeros(size - n)])
    e, pullback = jax.vjp(energy_density, jnp.asarray(rho_p), jnp.asarray(sigma_p))
    vrho, vsigma = pullback(jnp.ones_like(e))
    return tuple(np.asarray(a)[:n] for a in (e, vrho, vsigma))


def assert_close_to_libxc(got, ref, rho, grad, rtol=1e-10, floor=1e-12, band=(0.0, 0.0, 0.0)):
    """|got − ref| ≤ rtol |ref| + (floor + band) × local scale for e, vrho, vsigma; all finite;
    exactly zero wherever libxc screened the point.

    ``band``: extra allowance per quantity (scalars or arrays, in units of the local scale) where
    libxc's own rounding is known to be larger; see the tests that pass it."""
    for label, g, r, scale, b in zip(("e", "vrho", "vsigma"), got, ref, local_scales(rho, grad), band):
        assert np.all(np.isfinite(g)), f"{label}: non-finite values"
        err = np.abs(g - r)
        bad = err > rtol * np.abs(r) + (floor + b) * scale
        assert not bad.any(), (f"{label}: {bad.sum()} points off, worst rho={rho[bad][:3]}, "
                               f"grad={grad[bad][:3]}, got={g[bad][:3]}, ref={r[bad][:3]}")
        screened = rho < 1e-15
        assert np.all(g[screened] == 0.0), f"{label}: non-zero where libxc screens (rho < 1e-15)"
        if label == "e":
            np.testing.assert_array_equal(g == 0.0, r == 0.0, err_msg="screened points differ")


def assert_relative(got, ref, mask, rtol=1e-10):
    """Plain relative agreement (no floor) on ``mask``, for the quantities that are not ~0 there.
    ``mask`` may be one boolean array or one per quantity (e, vrho, vsigma)."""
    masks = mask if isinstance(mask, tuple) else (mask,) * 3
    for label, g, r, msk in zip(("e", "vrho", "vsigma"), got, ref, masks):
        m = msk & (r != 0)
        rel = np.abs(g[m] - r[m]) / np.abs(r[m])
        assert rel.max(initial=0.0) < rtol, f"{label}: max relative error {rel.max():.2e}"


HESSIAN_POINTS = 16


def assert_hessians_finite(energy_density, rho, sigma):
    """jax.hessian of Σ e(ρ, σ) with respect to (ρ, σ) is finite at every point (and the gradient too).

    At most 16 points, padded to 16 (ρ = 1, σ = 0): one shape for every test, so that JAX's
    per-primitive compilations are shared (a sum of terms reuses those of its terms).
    Returns (∂/∂ρ, ∂/∂σ) and the Hessian blocks, cut back to the given points."""
    def total(r, sg):
        return jnp.sum(energy_density(r, sg))

    n = len(rho)
    assert n <= HESSIAN_POINTS
    rho = jnp.asarray(np.r_[rho, np.ones(HESSIAN_POINTS - n)])
    sigma = jnp.asarray(np.r_[sigma, np.zeros(HESSIAN_POINTS - n)])
    grads = tuple(np.asarray(g)[:n] for g in jax.grad(total, argnums=(0, 1))(rho, sigma))
    assert all(np.all(np.isfinite(g)) for g in grads), "non-finite first derivatives"
    hess = jax.hessian(total, argnums=(0, 1))(rho, sigma)
    hess = tuple(tuple(np.asarray(b)[:n, :n] for b in row) for row in hess)
    assert all(np.all(np.isfinite(b)) for row in hess for b in row), "non-finite Hessian"
    return grads, hess


def wpbeh_rounding_band(rho, grad, omega, weight=1.0):
    """Allowance (in units of :func:`local_scales`) for libxc 7.1.2's own inaccuracy in GGA_X_WPBEH at
    ω, for a term of the given weight: (band_e, band_vrho, band_vsigma).

    Three places where libxc's double-precision result is off by more than 1e-10:
    * ω > 0 and ν = ω/k_F ≤ 14: the 8-term expansion of the erfc-screened hole sums terms of size
      ~ν^8 that cancel to O(1); measured |jaxks − libxc| ≤ 19 ε ν^8 (ε = 2.2e-16) in scale units
      over 2e4 random points, allowed here as 1e-14 ν^8 (≤ 1e-12 below ν ≈ 1.8, 1.5e-5 at ν = 14).
    * ω > 0, vrho and vsigma for ν in [2.1, 3.1] (x = 9ζ_w/(4A) in [18, 30]): not rounding, libxc
      7.1.2's derivatives disagree with its own energy there. At ρ = 3.162e-6, s = 0 (ν = 2.42) its
      vrho differs from a central difference of its e by 4.2e-5 relative, while ours agrees with that
      difference to its 1e-8 noise (libxc 7.0.0's vrho did too). Measured over 1.6e4 random points
      (ω = 0.11): ≤ 3.5e-6 (vrho) and 2.6e-7 (vsigma) in scale units, at ν in [2.2, 3.03]; allowed
      as 1e-5 for ν in [2.1, 3.1]. The energy agrees there to 1e-10.
    * ω = 0, vsigma: libxc 7.1.2 evaluates ln(ζ/(D + ζ)) (ζ = s'²H ≈ 0.0098 s⁴) as
      log1p(−D/(D + ζ)), whose argument rounds by ~1e-16 D/ζ; its vsigma, which contains the
      derivative of that logarithm (~1/ζ) cancelling against that of exp(x) E₁(x), is noise of up
      to 10% of itself just above the ζ floor (s ≈ 0.008). jaxks follows libxc's arithmetic
      (:func:`jaxks.xc.wpbeh._log_zeta_ratio`) and reproduces that noise to ≤ 2.1e-11 scale units
      at s ≈ 0.008 (measured; 1.4e-10 relative, 2.4e-11 relative from s = 0.02); allowed here as
      1e-14/s² in scale units (1.6e-10 at s = 0.008; vsigma ≈ 0.17 × scale there).
    """
    rho = np.maximum(rho, 1e-20)     # below libxc's thresholds anyway (and zero there)
    kf = np.cbrt(3.0 * np.pi**2 * rho)
    if omega > 0.0:
        nu = omega / kf
        b = np.where(nu <= 14.0, 1e-14 * np.minimum(nu, 14.0) ** 8, 0.0) * abs(weight)
        b_deriv = b + np.where((nu >= 2.1) & (nu <= 3.1), 1e-5, 0.0) * abs(weight)
        return b, b_deriv, b_deriv
    sigma_floor = (1e-14 ** (4.0 / 3.0)) ** 2
    s = np.sqrt(np.maximum(grad * grad, sigma_floor)) / (2.0 * kf * rho)
    return 0.0, 0.0, 1e-14 / s**2 * abs(weight)

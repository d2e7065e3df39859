"""GGA_X_WPBEH (jaxks/xc/wpbeh.py) against libxc through PySCF at ω = 0 and ω = 0.11 Bohr⁻¹.

libxc's ω is set with ``pyscf.dft.libxc.eval_xc(..., omega=ω)``, which sets the functional's
``_omega`` external parameter (ω = 0 / None leaves libxc's default, 0).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)
from jaxks.xc import wpbeh
from jaxks.xc.wpbeh import GgaXWpbeh
from tests.xc.compare import (assert_close_to_libxc, assert_hessians_finite, assert_relative, jax_values,
                              libxc_reference, local_scales, sample_points, wpbeh_rounding_band)

OMEGAS = [0.0, 0.11]


def _libxc(rho, grad, omega):
    return libxc_reference("GGA_X_WPBEH", True, rho, grad, omega=omega or None)


def test_libxc_omega_is_set_by_pyscf():
    """The reference itself: ω = 0.11 changes libxc's values, ω = 0 is libxc's default."""
    rho, grad = np.array([0.1, 1.0]), np.array([0.05, 0.3])
    e0, e_none, e11 = (_libxc(rho, grad, w)[0] for w in (0.0, None, 0.11))
    np.testing.assert_array_equal(e0, e_none)
    assert np.all(np.abs(e11 / e0 - 1) > 1e-3)


@pytest.mark.parametrize("omega", OMEGAS)
def test_wpbeh_matches_libxc(omega):
    """e, vrho, vsigma on ρ in [1e-14, 1e3] (+ threshold edges), s in {0} ∪ [1e-6, 100]: 1e-10
    relative (+1e-12 of the local scale) wherever libxc's own arithmetic is good to that; where
    libxc's formula cancels (see ``wpbeh_rounding_band``) within the size of its rounding; and plain
    1e-10 relative on the well-conditioned points."""
    rho, grad, s = sample_points(n=4000, seed=11, s_max=100.0)
    f = GgaXWpbeh(omega)
    got = jax_values(f, rho, grad)
    ref = _libxc(rho, grad, omega)
    assert_close_to_libxc(got, ref, rho, grad, band=wpbeh_rounding_band(rho, grad, omega))
    nu = omega / np.cbrt(3.0 * np.pi**2 * np.maximum(rho, 1e-300))
    good = (rho > 1e-10) & (nu <= 2.0)
    # ω = 0, s < 0.02: libxc 7.1.2's vsigma is dominated by the rounding of its log1p argument (see
    # wpbeh_rounding_band); we follow its arithmetic, to ~1.4e-10 relative at s ≈ 0.008, 2.4e-11 from 0.02
    good_vsigma = good & (s >= 0.02) if omega == 0.0 else good
    assert_relative(got, ref, (good, good, good_vsigma))
    assert good_vsigma.sum() > 1000


def test_small_gradient_limit_is_exact_at_omega_zero():
    """At ω = 0 and small s, vsigma is the exact derivative: F_x = F₀ + F₂ s² + O(s⁴ ln s) with
    F₂ = −(4/9)(D C c₂ + 2 EG₀)/D³ (term2 of the hole at s → 0; the Ei/log pair and ln(D + s²H)
    start at s⁴, and below ζ = 3.7e-11, s ≈ 0.0078, libxc 7.1 freezes them), so
    ∂e/∂σ = e_x^LDA F₂ / (4 k_F² ρ²). EG₀ = EG(0) from the closed form EG = −(3π/4 + G_a)/G_b with
    E fixed by 3π/4 + G_a(0) = 0: to first order in u = s², λ = D, F = c₂, erfcx(y) = 1 − 2y/√π with
    y = u √(9a₁/(4A)), so 3π/4 + G_a = u [3√π C c₂/(8 D^(5/2)) + (9√π/4) √a₁] and
    EG₀ = −(2/5) C c₂ D − (12/5) D^(7/2) √a₁ (−0.026284..., libxc 7.0's fit constant −0.0262841788)."""
    d, c, c2, a1 = wpbeh._D, wpbeh._C, wpbeh._FC2, wpbeh._HA[0]
    eg0 = -0.4 * c * c2 * d - 2.4 * d**3.5 * np.sqrt(a1)
    assert abs(eg0 + 0.0262841788) < 1e-8
    f2 = -4.0 / 9.0 * (d * c * c2 + 2.0 * eg0) / d**3
    rho = np.repeat([1e-6, 1e-2, 1.0, 1e2], 4)
    s = np.tile([1e-12, 1e-9, 1e-7, 1e-5], 4)
    kf = np.cbrt(3.0 * np.pi**2 * rho)
    grad = 2.0 * kf * rho * s
    _, _, vsigma = jax_values(GgaXWpbeh(0.0), rho, grad)
    e_lda = -0.75 * np.cbrt(3.0 / np.pi) * rho ** (4.0 / 3.0)
    np.testing.assert_allclose(vsigma * 4.0 * kf**2 * rho**2 / e_lda, f2, rtol=1e-9)
    # libxc at s = 0.001 (the O(s²) correction there is 3.7e-6 relative)
    ref = _libxc(rho[:1], 2.0 * kf[:1] * rho[:1] * 1e-3, 0.0)[2]
    np.testing.assert_allclose(ref * 4.0 * kf[0] ** 2 * rho[0] ** 2 / e_lda[0], f2, rtol=1e-5)


@pytest.mark.parametrize("omega", OMEGAS)
def test_threshold_edges_exact(omega):
    """Zero for ρ ≤ 2e-14 (spin density ≤ 1e-14), not above; σ below (1e-14)^(8/3) floored (values
    and vrho as libxc); rescaled s below 1e-15 frozen (vsigma exactly 0, as libxc)."""
    rho = np.array([1e-16, 2e-14, 2.0000001e-14, 1e-13, 1e-13, 1e-8, 1.0, 1.0, 1.0, 1e2])
    grad = np.array([0.0, 0.0, 0.0, 0.0, 1e-30, 0.0, 0.0, 1e-15, 1e-10, 1e-12])
    got = jax_values(GgaXWpbeh(omega), rho, grad)
    ref = _libxc(rho, grad, omega)
    # atol: at ρ ~ 1e-14 and ω > 0, ν ~ 2000 and F_x ~ 1/ν² is itself a cancellation (1e-8 relative)
    for g, r, scale in zip(got[:2], ref[:2], local_scales(rho, grad)):
        np.testing.assert_array_equal(g == 0.0, r == 0.0)
        assert np.all(np.abs(g - r) <= 1e-10 * np.abs(r) + 1e-12 * scale)
    np.testing.assert_array_equal(got[2] == 0.0, ref[2] == 0.0)
    assert np.all(got[0][:2] == 0.0) and np.all(got[0][2:] < 0.0)
    assert np.all(got[2][6:8] == 0.0)   # s < 1e-15: frozen


@pytest.mark.parametrize("omega", OMEGAS)
def test_second_derivatives_finite_and_match_libxc(omega):
    """jax.hessian of e wrt (ρ, σ) is finite everywhere (screened, σ = 0, s below the floor, every
    branch switch: s = 0.08, 1, 15; ν = 14; huge s and ν); its pointwise blocks equal libxc's fxc
    at ordinary points (ν ≤ 1, s in [0.1, 5], where libxc's fxc is not rounding noise)."""
    kf = lambda r: np.cbrt(3.0 * np.pi**2 * r)  # noqa: E731
    rho_nu14 = (0.11 / 14.0) ** 3 / (3.0 * np.pi**2)
    edge_rho = np.array([0.0, 1e-16, 2e-14, 2.0000001e-14, 1e-12, rho_nu14, rho_nu14 * 1.001, 1e-3, 1.0])
    edge_s = np.array([0.0, 0.0, 0.0, 1e-3, 0.0, 0.5, 0.5, 1e4, 0.08])
    ord_rho = np.array([0.05, 0.3, 1.0, 4.0, 20.0, 0.1, 2.0])
    ord_s = np.array([0.1, 0.3, 0.9, 1.0001, 2.5, 5.0, 14.99])
    rho = np.r_[edge_rho, ord_rho]
    grad = 2.0 * kf(np.maximum(rho, 0.0)) * rho * np.r_[edge_s, ord_s]
    (_, _), hess = assert_hessians_finite(GgaXWpbeh(omega), rho, grad * grad)
    n = ord_rho.size
    diag = [np.diag(np.asarray(b))[-n:] for b in (hess[0][0], hess[0][1], hess[1][1])]
    r4 = np.zeros((4, n))
    r4[0], r4[1] = ord_rho, grad[-n:]
    v2rho2, v2rhosigma, v2sigma2 = libxc.eval_xc("GGA_X_WPBEH", r4, spin=0, deriv=2,
                                                 omega=omega or None)[2][:3]
    for got, ref in zip(diag, (v2rho2, v2rhosigma, v2sigma2)):
        np.testing.assert_allclose(got, ref, rtol=1e-8)


def test_term_is_hashable_and_validated():
    assert GgaXWpbeh(0.11) == GgaXWpbeh(0.11) and hash(GgaXWpbeh(0.11)) == hash(GgaXWpbeh(0.11))
    assert GgaXWpbeh(0.11) != GgaXWpbeh(0.0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="omega"):
            GgaXWpbeh(bad)
    # ω enters as a static number: jit with the term as a static argument gives the same values
    # (well-conditioned points: where libxc's formula cancels, XLA's fused rounding differs)
    rho = 10.0 ** np.linspace(-4, 3, 256)
    sigma = (2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho * np.linspace(0.0, 20.0, 256)) ** 2
    f = jax.jit(lambda fn, r, sg: fn(r, sg), static_argnums=0)
    for omega in OMEGAS:
        np.testing.assert_allclose(f(GgaXWpbeh(omega), jnp.asarray(rho), jnp.asarray(sigma)),
                                   GgaXWpbeh(omega)(jnp.asarray(rho), jnp.asarray(sigma)), rtol=1e-13)


@pytest.mark.parametrize("omega", OMEGAS)
def test_libxc_rescaling_jumps_and_the_continuous_variant_does_not(omega):
    """libxc's reduced-gradient rescaling makes its ωPBE energy density jump at s = 1 (by ~1e-4
    relative: the reason finite differences of HSE06 SCF quantities do not converge to the analytic
    derivative); ours reproduces libxc on both sides. The continuous variant has no jump at s = 1
    or 15, and equals libxc's strictly between them."""
    kf = np.cbrt(3.0 * np.pi**2 * 0.1)
    rho = np.full(6, 0.1)
    s = np.array([1.0 - 1e-9, 1.0 + 1e-9, 3.0, 7.0, 15.0 - 1e-9, 15.0 + 1e-9])
    grad = 2.0 * kf * rho * s
    e_libxc = _libxc(rho, grad, omega)[0]
    e_ours = jax_values(GgaXWpbeh(omega), rho, grad)[0]
    e_cont = jax_values(GgaXWpbeh(omega, continuous=True), rho, grad)[0]
    np.testing.assert_allclose(e_ours, e_libxc, rtol=1e-10)
    jump = lambda e, i: abs(e[i + 1] / e[i] - 1.0)  # noqa: E731
    assert jump(e_libxc, 0) > 2e-5 and jump(e_libxc, 4) > 1e-5
    assert jump(e_cont, 0) < 1e-8 and jump(e_cont, 4) < 1e-8
    np.testing.assert_allclose(e_cont[1:5], e_libxc[1:5], rtol=1e-10)
    assert GgaXWpbeh(omega, continuous=True) != GgaXWpbeh(omega)

"""PBE (GGA_X_PBE + GGA_C_PBE) against libxc through PySCF, including small/zero densities and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)
from jaxks.xc import eval_xc, get_xc
from jaxks.xc import registry
from tests.xc.compare import (TERM_PYSCF, assert_close_to_libxc, assert_relative, jax_values,
                              libxc_reference, local_scales, sample_points)

GGA_TERMS = [registry.GGA_X_PBE, registry.GGA_C_PBE]


@pytest.mark.parametrize("term", GGA_TERMS, ids=lambda t: t.libxc_name)
def test_pbe_term_matches_libxc(term):
    rho, grad, s = sample_points(seed=3)
    ref = libxc_reference(TERM_PYSCF[term.libxc_name], True, rho, grad)
    got = jax_values(term.energy_density, rho, grad)
    assert_close_to_libxc(got, ref, rho, grad)
    # away from thresholds and from the t → ∞ cancellation of correlation: plain relative agreement
    assert_relative(got, ref, (rho > 1e-10) & (s <= 10.0))


@pytest.mark.parametrize("name", ["pbe", "PBE,PBE"])
def test_pbe_functional_matches_libxc(name):
    xc = get_xc(name)
    assert xc.family == "gga" and xc.pyscf_xc == "pbe"
    rho, grad, _ = sample_points(seed=4)
    ref = libxc_reference(xc.pyscf_xc, True, rho, grad)
    got = tuple(np.asarray(a) for a in eval_xc(xc, rho, grad * grad))
    assert_close_to_libxc(got, ref, rho, grad)


def test_pbe_small_density_and_gradient_edges():
    """Screening exactly as libxc: exchange zero for ρ ≤ 2e-15, correlation zero for ρ < 1e-12;
    σ = 0 and σ below the floors (1e-40 exchange, 1e-32 correlation) give libxc's values and
    vsigma (libxc evaluates vsigma at the floored σ, so it is not zero there)."""
    rho = np.array([1e-16, 2e-15, 2.0000001e-15, 9.99e-13, 1e-12, 1e-12, 1e-12, 1e-12, 1e-6, 1e-6])
    grad = np.array([0.0, 0.0, 0.0, 1e-10, 0.0, 1e-17, 1e-16, 1e-15, 0.0, 1e-21])
    # libxc 7.1.2's GGA_X_PBE vsigma has relative error ≤ 1.85 ε s² at large s (measured against a
    # 40-digit evaluation of ρ ε_x^LDA μ/(1 + μs²/κ)²/(4k_F²ρ²) at 400 random points, s in [1, 3e6];
    # 7.0.0 and ours: ≤ 1e-15): 2.9e-6 at the point ρ = 9.99e-13, |∇ρ| = 1e-10 (s = 1.6e5) here
    s = np.nan_to_num(grad / (2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho))
    for term in GGA_TERMS:
        ref = libxc_reference(TERM_PYSCF[term.libxc_name], True, rho, grad)
        got = jax_values(term.energy_density, rho, grad)
        noise = 4.0 * np.finfo(float).eps * s**2 if term is registry.GGA_X_PBE else 0.0
        for g, r, extra in zip(got, ref, (0.0, 0.0, noise)):
            np.testing.assert_array_equal(g == 0.0, r == 0.0)
            assert np.all(np.abs(g - r) <= (1e-10 + extra) * np.abs(r)), term.libxc_name
    e_x = jax_values(registry.GGA_X_PBE.energy_density, rho, grad)[0]
    e_c = jax_values(registry.GGA_C_PBE.energy_density, rho, grad)[0]
    assert np.all(e_x[:2] == 0.0) and np.all(e_x[2:] < 0.0)
    assert np.all(e_c[:4] == 0.0) and np.all(e_c[4:] < 0.0)


def test_second_derivatives_match_libxc():
    """Differentiating the autodiff potentials once more reproduces libxc's fxc, per term
    (the sum cancels at σ → 0, so relative comparison of the total would measure noise)."""
    rng = np.random.default_rng(5)
    n = 400
    rho = 10.0 ** rng.uniform(-8, 3, n)
    s = rng.uniform(0.0, 5.0, n)
    grad = 2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho * s
    sigma = jnp.asarray(grad * grad)
    r4 = np.zeros((4, n))
    r4[0], r4[1] = rho, grad
    for term in GGA_TERMS:
        v2rho2, v2rhosigma, v2sigma2 = libxc.eval_xc(TERM_PYSCF[term.libxc_name], r4, spin=0, deriv=2)[2][:3]
        energy = lambda a, b: jnp.sum(term.energy_density(a, b))  # noqa: E731
        pot = jax.grad(energy, argnums=(0, 1))
        ones, zeros = jnp.ones(n), jnp.zeros(n)
        _, (d_rr, d_sr) = jax.jvp(pot, (jnp.asarray(rho), sigma), (ones, zeros))
        _, (d_rs, d_ss) = jax.jvp(pot, (jnp.asarray(rho), sigma), (zeros, ones))
        np.testing.assert_allclose(d_rr, v2rho2, rtol=1e-9)
        np.testing.assert_allclose(d_sr, v2rhosigma, rtol=1e-9)
        np.testing.assert_allclose(d_rs, v2rhosigma, rtol=1e-9)
        np.testing.assert_allclose(d_ss, v2sigma2, rtol=1e-9)


def test_gradients_finite_everywhere_and_jit():
    """jax.grad of the summed energy (and a Hessian) stay finite on screened, zero-gradient and
    extreme points; jit with the functional as a static argument gives the same numbers."""
    xc = get_xc("pbe")
    rho = jnp.asarray([0.0, -1e-13, 1e-16, 2e-15, 1e-13, 1e-12, 1e-12, 1e-6, 1.0, 1.0, 1e3, 1e-4])
    sigma = jnp.asarray([0.0, 0.0, 1e-30, 0.0, 1e-20, 0.0, 1e-50, 1e-50, 0.0, 1e-3, 1e10, 1e2])

    @jax.jit
    def energy(r, sg):
        return jnp.sum(xc.energy_density(r, sg))

    g_rho, g_sigma = jax.grad(energy, argnums=(0, 1))(rho, sigma)
    assert np.all(np.isfinite(g_rho)) and np.all(np.isfinite(g_sigma))
    assert np.all(np.asarray(g_rho)[:4] == 0.0) and np.all(np.asarray(g_sigma)[:4] == 0.0)
    h = jax.hessian(energy, argnums=(0, 1))(rho, sigma)
    assert all(np.all(np.isfinite(b)) for row in h for b in row)
    # at one ordinary point the Hessian is finite and symmetric
    one = jax.hessian(lambda x: xc.energy_density(x[0], x[1]))(jnp.asarray([0.3, 0.05]))
    assert np.all(np.isfinite(one)) and abs(one[0, 1] - one[1, 0]) < 1e-12 * abs(one[0, 1])
    f = jax.jit(eval_xc, static_argnums=0)
    # total vsigma at σ → 0 is a cancellation of the exchange and correlation terms (at ρ = 1e-12
    # each ~4e13, their sum ~6e9), so jit and eager agree only to ~1e-12 of the terms' size
    _, _, vsigma_scale = local_scales(np.asarray(rho), np.sqrt(np.asarray(sigma)))
    for a, b, scale in zip(f(xc, rho, sigma), eval_xc(xc, rho, sigma), (0.0, 0.0, vsigma_scale)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.abs(a - b) <= 1e-12 * np.abs(b) + 1e-15 + 1e-12 * scale)
    np.testing.assert_allclose(g_rho, eval_xc(xc, rho, sigma)[1], rtol=1e-12)

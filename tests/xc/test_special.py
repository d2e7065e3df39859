"""Scaled erfc and exponential integral (jaxks/xc/special.py) against SciPy, with their derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sp

import jaxks  # noqa: F401  (float64)
from jaxks.xc.special import E1_SWITCH, ERFCX_SWITCH, e1_scaled, erfcx


def test_erfcx_matches_scipy_on_both_sides_of_the_switch():
    y = np.concatenate([[0.0, ERFCX_SWITCH, np.nextafter(ERFCX_SWITCH, 0.0)], 10.0 ** np.linspace(-10, 4, 3000)])
    np.testing.assert_allclose(np.asarray(erfcx(y)), sp.erfcx(y), rtol=5e-15, atol=0.0)


def test_e1_scaled_matches_scipy_and_its_asymptotics():
    x = np.concatenate([[E1_SWITCH, np.nextafter(E1_SWITCH, 0.0)], 10.0 ** np.linspace(-300, np.log10(700.0), 3000)])
    ref = np.exp(x) * sp.exp1(x)                 # exp(x) stays finite up to x = 700
    np.testing.assert_allclose(np.asarray(e1_scaled(x)), ref, rtol=1e-14, atol=0.0)
    # beyond 700 (SciPy's unscaled E1 underflows): exp(x)E1(x) = 1/x (1 − 1/x + 2/x² − 6/x³ + O(x⁻⁴))
    big = 10.0 ** np.linspace(5, 12, 50)   # truncation 24/x⁴ < 1e-19
    np.testing.assert_allclose(np.asarray(e1_scaled(big)) * big, 1 - 1 / big + 2 / big**2 - 6 / big**3,
                               rtol=1e-15)


def test_derivatives_are_the_closed_forms_and_finite():
    """First derivatives by autodiff against the closed forms, which central differences of the
    values confirm; second derivatives finite and equal to the differentiated closed form."""
    y = np.r_[0.0, 1e-8, 0.5, 2.9, 3.1, 10.0, 1e3]
    x = np.r_[1e-100, 1e-8, 0.3, 1.99, 2.01, 50.0, 1e6]
    d_erfcx = np.asarray(jax.vmap(jax.grad(erfcx))(jnp.asarray(y)))
    np.testing.assert_allclose(d_erfcx, 2 * y * sp.erfcx(y) - 2 / np.sqrt(np.pi), rtol=1e-13, atol=1e-15)
    d_e1 = np.asarray(jax.vmap(jax.grad(e1_scaled))(jnp.asarray(x)))
    e = np.asarray(e1_scaled(x))
    np.testing.assert_allclose(d_e1, e - 1 / x, rtol=1e-15)
    h = 1e-6
    fd = (np.asarray(erfcx(y[2] + h)) - np.asarray(erfcx(y[2] - h))) / (2 * h)
    np.testing.assert_allclose(d_erfcx[2], fd, rtol=1e-8)
    fd = (np.asarray(e1_scaled(x[2] + h)) - np.asarray(e1_scaled(x[2] - h))) / (2 * h)
    np.testing.assert_allclose(d_e1[2], fd, rtol=1e-8)
    d2 = np.asarray(jax.vmap(jax.hessian(e1_scaled))(jnp.asarray(x)))
    np.testing.assert_allclose(d2, e - 1 / x + 1 / x**2, rtol=1e-12)
    assert np.all(np.isfinite(jax.vmap(jax.hessian(erfcx))(jnp.asarray(y))))

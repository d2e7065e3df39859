"""Scaled special functions for the ωPBE exchange hole, accurate to ~1e-14 relative, in JAX.

libxc evaluates GGA_X_WPBEH with the *scaled* functions

    erfcx(y)    = exp(y²) erfc(y)              (y ≥ 0)
    E1_scaled(x) = exp(x) E₁(x),  E₁(x) = ∫₁^∞ e^(−x t)/t dt   (x > 0)

because exp(x) and erfc/E₁ separately over/underflow for the large arguments (x up to ~1e7 at
tiny densities) that the functional meets. JAX has no scaled versions, so they are built here:
a power series or the unscaled function where the argument is small, and a continued fraction,
evaluated backwards with a fixed number of terms (static shapes, no data-dependent loops), where
it is large. Arguments are dimensionless; all functions are elementwise over arrays of any shape.

Derivatives are given by ``jax.custom_jvp`` from the closed forms

    erfcx'(y)    = 2 y erfcx(y) − 2/√π
    E1_scaled'(x) = E1_scaled(x) − 1/x

(the same expressions libxc's generated derivative code uses), so every order of derivative is
available and no derivative flows through the series, the loops or the unselected branch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: erfcx: exp(y²) erfc(y) below this y (y² ≤ 9: rounding of y² costs < 1e-15 relative),
#: the Laplace continued fraction above it (40 terms: < 1e-15 relative for y ≥ 3).
ERFCX_SWITCH = 3.0
ERFCX_CF_TERMS = 40
#: E1: power series below this x (cancellation ≤ ~1e-14 relative at x → 2), the continued
#: fraction of E₁ at or above it (60 terms: < 1e-15 relative for x ≥ 2).
E1_SWITCH = 2.0
E1_SERIES_TERMS = 30
E1_CF_TERMS = 60

_SQRT_PI = float(np.sqrt(np.pi))


@jax.jit
def _erfcx_value(y):
    y_small = jnp.minimum(y, ERFCX_SWITCH)
    small = jnp.exp(y_small * y_small) * jax.lax.erfc(y_small)
    # erfcx(y) = (1/√π) / (y + (1/2)/(y + (2/2)/(y + (3/2)/(y + ...)))), evaluated from the tail
    y_big = jnp.maximum(y, ERFCX_SWITCH)

    def step(i, t):
        n = (ERFCX_CF_TERMS - i).astype(y_big.dtype)
        return y_big + 0.5 * n / t

    t = jax.lax.fori_loop(0, ERFCX_CF_TERMS, step, y_big)
    return jnp.where(y < ERFCX_SWITCH, small, 1.0 / (_SQRT_PI * t))


@jax.custom_jvp
def erfcx(y):
    """Scaled complementary error function erfcx(y) = exp(y²) erfc(y), for y [...] ≥ 0 (dimensionless)."""
    return _erfcx_value(jnp.asarray(y, dtype=float))


@erfcx.defjvp
def _erfcx_jvp(primals, tangents):
    (y,), (dy,) = primals, tangents
    out = erfcx(y)
    return out, (2.0 * y * out - 2.0 / _SQRT_PI) * dy


def _e1_series_sum(x):
    """S(x) = Σ_{k≥1} (−1)^(k+1) x^k / (k k!), so that E₁(x) = −γ − ln x + S(x); for 0 < x < 2."""
    def step(k, carry):
        term, total = carry
        kf = k.astype(x.dtype)
        term = -term * x / kf
        return term, total - term / kf

    return jax.lax.fori_loop(1, E1_SERIES_TERMS + 1, step, (jnp.ones_like(x), jnp.zeros_like(x)))[1]


def _e1_scaled_cf(x):
    """exp(x) E₁(x) = 1/(x + 1 − 1²/(x + 3 − 2²/(x + 5 − ...))), for x ≥ 2, from the tail."""
    def step(i, t):
        n = (E1_CF_TERMS - i).astype(x.dtype)
        return x + 2.0 * n - 1.0 - n * n / t

    return 1.0 / jax.lax.fori_loop(0, E1_CF_TERMS, step, x + 2.0 * E1_CF_TERMS + 1.0)


def _e1_pieces(x):
    x_small = jnp.clip(x, np.finfo(float).tiny, E1_SWITCH)
    x_big = jnp.maximum(x, E1_SWITCH)
    return x_small, x < E1_SWITCH, _e1_scaled_cf(x_big)


# jit: eager calls (tests, op-by-op autodiff) then compile the loops once per shape, not per call
@jax.jit
def _e1_scaled_value(x):
    xs, small, big = _e1_pieces(x)
    series = jnp.exp(xs) * (-np.euler_gamma - jnp.log(xs) + _e1_series_sum(xs))
    return jnp.where(small, series, big)


@jax.custom_jvp
def e1_scaled(x):
    """exp(x) E₁(x) for x [...] > 0 (dimensionless); ~ −γ − ln x as x → 0, ~ 1/x as x → ∞."""
    return _e1_scaled_value(jnp.asarray(x, dtype=float))


@e1_scaled.defjvp
def _e1_scaled_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    out = e1_scaled(x)
    return out, (out - 1.0 / x) * dx

"""Semilocal parts of the hybrids HSE06 and PBE0 (jaxks/xc/registry.py) against libxc through PySCF.

PySCF evaluates "hse06" / "pbe0" as one libxc id each (HYB_GGA_XC_HSE06, HYB_GGA_XC_PBEH), whose
``eval_xc`` output is the semilocal part only; the exact-exchange fractions come from
``rsh_coeff`` / ``hybrid_coeff``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)
from jaxks.xc import eval_xc, get_xc, registry
from tests.xc.compare import (assert_close_to_libxc, assert_hessians_finite, assert_relative,
                              libxc_reference, local_scales, sample_points, wpbeh_rounding_band)

HSE06_NAMES = ["hse06", "HSE06", "hyb_gga_xc_hse06"]
PBE0_NAMES = ["pbe0", "PBE0", "pbeh", "hyb_gga_xc_pbeh"]


def _terms(xc):
    return [(t.libxc_name, t.weight, getattr(t.energy_density, "omega", None)) for t in xc.terms]


def test_hybrid_coefficients_pinned():
    """Exact-exchange fields and semilocal weights are PySCF's/libxc's (checked with PySCF 2.14 /
    libxc 7.0.0 and PySCF 2.15 / libxc 7.1.2)."""
    assert libxc.parse_xc("hse06") == ((0, 0, 0), ((libxc.XC_CODES["HYB_GGA_XC_HSE06"], 1),))
    assert libxc.parse_xc("pbe0") == ((0, 0, 0), ((libxc.XC_CODES["HYB_GGA_XC_PBEH"], 1),))
    np.testing.assert_array_equal(libxc.rsh_coeff("hse06"), (0.11, 0.0, 0.25))   # ω, α (full), β (SR)
    np.testing.assert_array_equal(libxc.rsh_coeff("pbe0"), (0.0, 0.25, 0.0))
    assert libxc.hybrid_coeff("pbe0") == 0.25
    for name in HSE06_NAMES:
        xc = get_xc(name)
        assert xc.pyscf_xc == "hse06" and xc.family == "gga"
        assert (xc.exact_exchange, xc.sr_exchange, xc.omega) == (0.0, 0.25, 0.11)
        assert _terms(xc) == [("GGA_X_WPBEH", 1.0, 0.0), ("GGA_X_WPBEH", -0.25, 0.11), ("GGA_C_PBE", 1.0, None)]
        ref = libxc.rsh_coeff(xc.pyscf_xc)
        assert (xc.omega, xc.exact_exchange, xc.sr_exchange) == tuple(ref)
    for name in PBE0_NAMES:
        xc = get_xc(name)
        assert xc.pyscf_xc == "pbe0" and xc.family == "gga"
        assert (xc.exact_exchange, xc.sr_exchange, xc.omega) == (0.25, 0.0, 0.0)
        assert _terms(xc) == [("GGA_X_PBE", 0.75, None), ("GGA_C_PBE", 1.0, None)]
        assert xc.exact_exchange == libxc.hybrid_coeff(xc.pyscf_xc)
    assert get_xc("hse06") == registry.hse06("hse06") and hash(get_xc("hse06")) == hash(get_xc("HSE06"))


def test_libxc_hybrids_are_these_semilocal_sums():
    """libxc's own HSE06 / PBEH output equals libxc's sum of the terms we use, with our weights and
    ω (so the decomposition is libxc's, not ours); libxc evaluates it exactly this way (≤ 1e-14)."""
    rho, grad, _ = sample_points(n=2000, seed=21, s_max=100.0)
    for name in ("hse06", "pbe0"):
        xc = get_xc(name)
        parts = [libxc_reference(registry_term_code(t), True, rho, grad,
                                 omega=getattr(t.energy_density, "omega", None) or None) for t in xc.terms]
        total = [sum(t.weight * p[k] for t, p in zip(xc.terms, parts)) for k in range(3)]
        ref = libxc_reference(xc.pyscf_xc, True, rho, grad)
        assert_close_to_libxc(total, ref, rho, grad, rtol=1e-14, floor=1e-15)


def registry_term_code(term):
    return {"GGA_X_WPBEH": "GGA_X_WPBEH", "GGA_X_PBE": "pbe,", "GGA_C_PBE": ",pbe"}[term.libxc_name]


@pytest.mark.parametrize("name", ["hse06", "pbe0"])
def test_semilocal_hybrid_matches_libxc(name):
    """e, vrho, vsigma of the whole semilocal part on ρ in [1e-14, 1e3] (+ edges), s in {0} ∪
    [1e-6, 100]: as for the terms (test_wpbeh.py), 1e-10 relative + 1e-12 of the local scale, plus
    libxc's own rounding band of its WPBEH terms; plain 1e-10 relative where well conditioned."""
    xc = get_xc(name)
    rho, grad, s = sample_points(n=4000, seed=22, s_max=100.0)
    got = tuple(np.asarray(a) for a in eval_xc(xc, rho, grad * grad))
    ref = libxc_reference(xc.pyscf_xc, True, rho, grad)
    band = (0.0, 0.0, 0.0)
    for t in xc.terms:
        if t.libxc_name == "GGA_X_WPBEH":
            b = wpbeh_rounding_band(rho, grad, t.energy_density.omega, t.weight)
            band = tuple(x + y for x, y in zip(band, b))
    assert_close_to_libxc(got, ref, rho, grad, band=band)
    nu = xc.omega / np.cbrt(3.0 * np.pi**2 * np.maximum(rho, 1e-300))
    good = (rho > 1e-10) & (nu <= 2.0)
    # total vsigma: ω=0 WPBEH rounding at s < 0.02 (hse06, see wpbeh_rounding_band);
    # exchange/correlation cancellation at σ → 0 and huge s (both), as for PBE
    good_vsigma = good & (s >= 0.02) & (s <= 10.0)
    assert_relative(got, ref, (good, good, good_vsigma))
    assert good.sum() > 1500 and good_vsigma.sum() > 300


@pytest.mark.parametrize("name", ["hse06", "pbe0"])
def test_hessian_finite_and_jit(name):
    """No NaN/inf in values, first and second derivatives (jax.hessian wrt (ρ, σ)) at ρ → 0, σ = 0,
    screened points, s below every floor, large s; the functional is a valid jit static argument."""
    xc = get_xc(name)
    rho = np.array([0.0, 1e-16, 1e-14, 2.0000001e-14, 1e-12, 1e-8, 1e-6, 1e-3, 1.0, 1.0, 1.0, 1e3, 1e-2])
    s = np.array([0.0, 0.0, 0.0, 1e-3, 0.0, 0.5, 3.0, 1e4, 0.0, 1e-16, 0.08, 20.0, 100.0])
    sigma = (2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho * s) ** 2
    (g_rho, g_sigma), _ = assert_hessians_finite(xc.energy_density, rho, sigma)
    assert np.all(np.asarray(g_rho)[:2] == 0.0) and np.all(np.asarray(g_sigma)[:2] == 0.0)  # screened
    # a valid jit static argument (hashable, equal by value); compiling the functional itself under
    # jit is what the SCF does and costs seconds, so a trivial function stands in for it here
    f = jax.jit(lambda fn, r: fn.omega * r + fn.exact_exchange, static_argnums=0)
    np.testing.assert_allclose(f(xc, jnp.ones(2)), xc.omega + xc.exact_exchange)
    assert f(get_xc(name.upper()), jnp.ones(2)) is not None and hash(xc) == hash(get_xc(name.upper()))


@pytest.mark.slow
def test_semilocal_energy_and_potential_on_a_water_grid(one_openmp_thread):
    """Integrated on a molecular grid (water, def2-SVP, grid level 0, a non-SCF density): the
    semilocal E_xc and V_xc of hse06 and pbe0 from jaxks.numint equal PySCF's ``nr_rks`` with the
    same xc string (which evaluates the hybrids' semilocal part only)."""
    from pyscf import dft

    from jaxks.integrals import integrals_from_pyscf, make_grids
    from jaxks.numint import xc_energy_potential
    from tests import geometries as geo
    from tests.conftest import make_system

    mol = make_system(geo.WATER, basis="def2-svp", grid_level=0).to_pyscf()
    grids = make_grids(mol, 0)
    ints = integrals_from_pyscf(mol, "def2-universal-jkfit", 0, grids=grids)
    dm = dft.RKS(mol).get_init_guess(key="minao")
    for name in ("hse06", "pbe0"):
        _, exc_ref, vxc_ref = dft.numint.NumInt().nr_rks(mol, grids, get_xc(name).pyscf_xc, dm)
        exc, vxc = jax.jit(xc_energy_potential, static_argnums=2)(jnp.asarray(dm), ints, get_xc(name))
        assert abs(float(exc) - exc_ref) < 1e-10, (name, float(exc), exc_ref)
        np.testing.assert_allclose(np.asarray(vxc), vxc_ref, atol=1e-9, rtol=0)

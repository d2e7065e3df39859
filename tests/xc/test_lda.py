"""LDA functionals and terms against libxc through PySCF (``pyscf.dft.libxc.eval_xc``).

Shared helpers (``sample_points``, ``libxc_reference``, ``assert_close_to_libxc`` ...) are imported
by ``test_pbe.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)
from jaxks.xc import XCFunctional, eval_xc, get_xc, known_names
from jaxks.xc import registry

# libxc term → a PySCF xc string that evaluates exactly that term
TERM_PYSCF = {"LDA_X": "lda,", "LDA_C_VWN": ",vwn", "LDA_C_VWN_RPA": ",vwn_rpa", "LDA_C_PW": ",pw",
              "LDA_C_PW_MOD": ",pw_mod", "GGA_X_PBE": "pbe,", "GGA_C_PBE": ",pbe"}
LDA_TERMS = [registry.LDA_X, registry.LDA_C_VWN, registry.LDA_C_VWN_RPA, registry.LDA_C_PW,
             registry.LDA_C_PW_MOD]
LDA_NAMES = [n for n in known_names() if get_xc(n).family == "lda"]

# Around every libxc threshold: ρ < 1e-15 screened; exchange also where ρ/2 ≤ 1e-15;
# GGA_C_PBE screened below 1e-12; σ floors 1e-40 (PBE x) and 1e-32 (PBE c).
EDGE_RHO = np.array([0.0, -1e-10, 1e-16, 1e-15, 1.5e-15, 2e-15, 2.0000001e-15, 1e-14, 5e-13, 1e-12,
                     1.0000001e-12, 1e-9, 1.0, 1.0, 1.0, 1.0, 1e-12, 1e-12, 1e-3])
EDGE_GRAD = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-22, 1e-20, 0.0,
                      1e-17, 1e-21, 0.0, 1e-21, 1e-20, 1e-19, 1e-16, 1e-15, 1e-3])


def sample_points(n=6000, seed=0, s_max=1e3):
    """ρ log-uniform in [1e-14, 1e3] plus the threshold edges; |∇ρ| from the reduced gradient
    s = |∇ρ|/(2 k_F ρ): a quarter exactly 0, the rest log-uniform in [1e-6, s_max].
    Returns rho, grad (= |∇ρ|, fed to PySCF as the x component), s; sigma = grad**2."""
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-14, 3, n)
    s = np.where(rng.random(n) < 0.25, 0.0, 10.0 ** rng.uniform(-6, np.log10(s_max), n))
    grad = 2.0 * np.cbrt(3.0 * np.pi**2 * rho) * rho * s
    rho = np.concatenate([rho, EDGE_RHO])
    grad = np.concatenate([grad, EDGE_GRAD])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s_edge = np.nan_to_num(EDGE_GRAD / (2.0 * np.cbrt(3.0 * np.pi**2 * EDGE_RHO) * EDGE_RHO))
    s = np.concatenate([s, s_edge])
    return rho, grad, s


def libxc_reference(pyscf_xc, gga, rho, grad):
    """(e = ρ ε_xc, vrho, vsigma) from libxc via PySCF (spin=0, deriv=1); vsigma = 0 for an LDA."""
    if gga:
        r = np.zeros((4, rho.size))
        r[0], r[1] = rho, grad
        exc, vxc = libxc.eval_xc(pyscf_xc, r, spin=0, deriv=1)[:2]
        return rho * exc, vxc[0], vxc[1]
    exc, vxc = libxc.eval_xc(pyscf_xc, rho, spin=0, deriv=1)[:2]
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
    """(e, ∂e/∂ρ, ∂e/∂σ) of an energy-density function by autodiff, as NumPy arrays."""
    e, pullback = jax.vjp(energy_density, jnp.asarray(rho), jnp.asarray(grad * grad))
    vrho, vsigma = pullback(jnp.ones_like(e))
    return tuple(np.asarray(a) for a in (e, vrho, vsigma))


def assert_close_to_libxc(got, ref, rho, grad, rtol=1e-10, floor=1e-12):
    """|got − ref| ≤ rtol |ref| + floor × local scale for e, vrho, vsigma; all finite;
    exactly zero wherever libxc screened the point."""
    for label, g, r, scale in zip(("e", "vrho", "vsigma"), got, ref, local_scales(rho, grad)):
        assert np.all(np.isfinite(g)), f"{label}: non-finite values"
        err = np.abs(g - r)
        bad = err > rtol * np.abs(r) + floor * scale
        assert not bad.any(), (f"{label}: {bad.sum()} points off, worst rho={rho[bad][:3]}, "
                               f"grad={grad[bad][:3]}, got={g[bad][:3]}, ref={r[bad][:3]}")
        screened = rho < 1e-15
        assert np.all(g[screened] == 0.0), f"{label}: non-zero where libxc screens (rho < 1e-15)"
        if label == "e":
            np.testing.assert_array_equal(g == 0.0, r == 0.0, err_msg="screened points differ")


def assert_relative(got, ref, mask, rtol=1e-10):
    """Plain relative agreement (no floor) on ``mask``, for the quantities that are not ~0 there."""
    for label, g, r in zip(("e", "vrho", "vsigma"), got, ref):
        m = mask & (r != 0)
        rel = np.abs(g[m] - r[m]) / np.abs(r[m])
        assert rel.max(initial=0.0) < rtol, f"{label}: max relative error {rel.max():.2e}"


def libxc_ids(pyscf_xc):
    """Sorted libxc ids (with weights) that PySCF evaluates for an xc string."""
    hyb, terms = libxc.parse_xc(pyscf_xc)
    assert tuple(hyb) == (0, 0, 0), "no exact exchange expected"
    return sorted((int(i), float(w)) for i, w in terms)


# ---------------------------------------------------------------------------------------------

def test_registry_terms_are_what_pyscf_means():
    """Each registered name's terms are exactly the libxc functionals PySCF uses for its pyscf_xc,
    e.g. PySCF "lda,vwn" = LDA_X + LDA_C_VWN (VWN5, libxc id 7), not VWN_RPA (id 8)."""
    for name in known_names():
        xc = get_xc(name)
        ours = sorted((libxc.XC_CODES[t.libxc_name], t.weight) for t in xc.terms)
        assert ours == libxc_ids(xc.pyscf_xc), name
        assert xc.exact_exchange == 0.0 and xc.omega == 0.0
    assert libxc_ids("lda,vwn") == [(1, 1.0), (7, 1.0)]
    assert libxc.XC_CODES["LDA_C_VWN"] == 7
    assert get_xc("lda").pyscf_xc == "lda,vwn"
    assert [t.libxc_name for t in get_xc("LDA").terms] == ["LDA_X", "LDA_C_VWN"]


@pytest.mark.parametrize("term", LDA_TERMS, ids=lambda t: t.libxc_name)
def test_lda_term_matches_libxc(term):
    rho, grad, _ = sample_points()
    ref = libxc_reference(TERM_PYSCF[term.libxc_name], False, rho, grad)
    got = jax_values(term.energy_density, rho, grad)
    assert_close_to_libxc(got, ref, rho, grad)
    assert_relative(got, ref, rho > 1e-10)
    assert np.all(got[2] == 0.0)


@pytest.mark.parametrize("name", LDA_NAMES)
def test_lda_functional_matches_libxc(name):
    xc = get_xc(name)
    rho, grad, _ = sample_points(seed=1)
    ref = libxc_reference(xc.pyscf_xc, False, rho, grad)
    got = tuple(np.asarray(a) for a in eval_xc(xc, rho, grad * grad))
    assert_close_to_libxc(got, ref, rho, grad)
    assert_relative(got, ref, rho > 1e-10)
    # sigma is optional for an LDA
    e_no_sigma = np.asarray(xc.energy_density(rho))
    np.testing.assert_array_equal(e_no_sigma, got[0])


def test_lda_threshold_edges_exact():
    """Exchange is zero up to ρ = 2e-15 (spin density ≤ 1e-15), correlation down to ρ = 1e-15."""
    rho = np.array([0.0, 1e-16, 1e-15, 2e-15, 2.0000001e-15])
    e_x = np.asarray(registry.LDA_X.energy_density(rho, np.zeros_like(rho)))
    e_c = np.asarray(registry.LDA_C_VWN.energy_density(rho, np.zeros_like(rho)))
    assert np.all(e_x[:4] == 0.0) and e_x[4] < 0.0
    assert np.all(e_c[:2] == 0.0) and np.all(e_c[2:] < 0.0)
    ref_x = libxc_reference("lda,", False, rho, np.zeros_like(rho))[0]
    np.testing.assert_array_equal(ref_x == 0.0, e_x == 0.0)


def test_second_derivatives_match_libxc():
    """d²e/dρ² by differentiating the autodiff potential again, against libxc's fxc (v2rho2)."""
    rng = np.random.default_rng(2)
    rho = 10.0 ** rng.uniform(-8, 3, 500)
    for name in ("lda", "lda,pw"):
        xc = get_xc(name)
        ref = libxc.eval_xc(xc.pyscf_xc, rho, spin=0, deriv=2)[2][0]
        vrho = lambda r: eval_xc(xc, r)[1]  # noqa: E731
        _, v2rho2 = jax.jvp(vrho, (jnp.asarray(rho),), (jnp.ones_like(rho),))
        np.testing.assert_allclose(np.asarray(v2rho2), ref, rtol=1e-10)


def test_gradients_finite_everywhere_and_jit():
    xc = get_xc("lda")
    rho = jnp.asarray(np.r_[0.0, -1e-12, 1e-20, 1e-15, 1.5e-15, 2e-15, 1e-3, 1.0, 1e3])

    @jax.jit
    def energy(r):
        return jnp.sum(xc.energy_density(r))

    g = jax.grad(energy)(rho)
    h = jax.hessian(energy)(rho)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert np.all(np.asarray(g)[:3] == 0.0)  # screened points: zero gradient, not NaN
    np.testing.assert_allclose(g, eval_xc(xc, rho)[1], rtol=1e-12)
    # the functional itself is a valid static argument
    f = jax.jit(eval_xc, static_argnums=0)
    for a, b in zip(f(xc, rho, jnp.zeros_like(rho)), eval_xc(xc, rho)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_get_xc_names_and_errors():
    assert get_xc("LDA,VWN") == get_xc("lda,vwn")
    assert get_xc(" SVWN ").pyscf_xc == "lda,vwn"
    xc = get_xc("lda,pw")
    assert get_xc(xc) is xc
    assert isinstance(xc, XCFunctional) and hash(xc) == hash(get_xc("lda,pw"))
    with pytest.raises(ValueError, match="known:.*pbe"):
        get_xc("b3lyp-ish")
    with pytest.raises(ValueError):
        get_xc(3)

"""LDA functionals and terms against libxc through PySCF (``pyscf.dft.libxc.eval_xc``).

Shared helpers (``sample_points``, ``libxc_reference``, ``assert_close_to_libxc`` ...) live in
``tests/xc/compare.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import jaxks  # noqa: F401  (float64)
from jaxks.xc import XCFunctional, eval_xc, get_xc, known_names
from jaxks.xc import registry
from tests.xc.compare import (TERM_PYSCF, assert_close_to_libxc, assert_relative, jax_values,
                              libxc_reference, sample_points)

LDA_TERMS = [registry.LDA_X, registry.LDA_C_VWN, registry.LDA_C_VWN_RPA, registry.LDA_C_PW,
             registry.LDA_C_PW_MOD]
LDA_NAMES = [n for n in known_names() if get_xc(n).family == "lda"]


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
        if xc.exact_exchange or xc.sr_exchange:
            continue  # hybrids (hse06, pbe0): libxc evaluates them as one id; see test_hse.py
        ours = sorted((libxc.XC_CODES[t.libxc_name], t.weight) for t in xc.terms)
        assert ours == libxc_ids(xc.pyscf_xc), name
        assert xc.omega == 0.0
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

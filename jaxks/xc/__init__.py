"""Exchange-correlation functionals in pure JAX (closed shell), matching libxc as used by PySCF.

    from jaxks.xc import get_xc, eval_xc
    xc = get_xc("pbe")                        # hashable: a valid jit static argument
    e = xc.energy_density(rho, sigma)         # ρ ε_xc, Hartree/Bohr³
    e, vrho, vsigma = eval_xc(xc, rho, sigma) # ∂e/∂ρ, ∂e/∂σ by autodiff

Terms live in :mod:`jaxks.xc.lda`, :mod:`jaxks.xc.pbe` and :mod:`jaxks.xc.wpbeh` (ωPBE short-range
exchange, with its scaled special functions in :mod:`jaxks.xc.special`); names in
:mod:`jaxks.xc.registry`. For hybrids ("hse06", "pbe0") these give the semilocal part only; the
exact-exchange fractions and ω are fields of the functional.
"""

from jaxks.xc.registry import XCFunctional, XCTerm, eval_xc, get_xc, known_names, register

__all__ = ["XCFunctional", "XCTerm", "eval_xc", "get_xc", "known_names", "register"]

"""Exchange-correlation functionals in pure JAX (closed shell), matching libxc as used by PySCF.

    from jaxks.xc import get_xc, eval_xc
    xc = get_xc("pbe")                        # hashable: a valid jit static argument
    e = xc.energy_density(rho, sigma)         # ρ ε_xc, Hartree/Bohr³
    e, vrho, vsigma = eval_xc(xc, rho, sigma) # ∂e/∂ρ, ∂e/∂σ by autodiff

Terms live in :mod:`jaxks.xc.lda` and :mod:`jaxks.xc.pbe`; names in :mod:`jaxks.xc.registry`.
"""

from jaxks.xc.registry import XCFunctional, XCTerm, eval_xc, get_xc, known_names, register

__all__ = ["XCFunctional", "XCTerm", "eval_xc", "get_xc", "known_names", "register"]

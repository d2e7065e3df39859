"""jaxks: differentiable Kohn-Sham DFT in pure JAX.

Importing the package switches JAX to double precision (``jax_enable_x64``) once, for every
device: SCF energies to 1e-8 Eh and finite-difference checks of derivatives are impossible in
float32. Code that really wants float32 must ask for it explicitly with ``dtype=``.

Units inside the package are atomic units (Bohr, Hartree); xyz files are read in Angstrom.

Importing it also turns on a persistent compilation cache in the user's cache directory
(:mod:`jaxks.compile_cache`; ``JAXKS_COMPILE_CACHE=0`` turns it off).
"""

import os
import sys

if ("jax" not in sys.modules and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        and os.environ.get("JAXKS_COMPILE_CACHE", "1").strip().lower() not in ("0", "off", "false",
                                                                                "no")):
    # jaxlib 0.10 logs a spurious C++ error for every executable loaded from the persistent
    # compilation cache on the CPU (tuning flags taken for missing CPU features, jax-ml/jax#38445;
    # the load itself works). Silence XLA's C++ log unless the user configured it; this only
    # takes effect when jaxks is imported before jax.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from jaxks.compile_cache import enable_compile_cache  # noqa: E402

enable_compile_cache()

from jaxks.system import System  # noqa: E402

__all__ = ["System", "__version__"]

"""jaxks: differentiable Kohn-Sham DFT in pure JAX.

Importing the package switches JAX to double precision (``jax_enable_x64``) once, for every
device: SCF energies to 1e-8 Eh and finite-difference checks of derivatives are impossible in
float32. Code that really wants float32 must ask for it explicitly with ``dtype=``.

Units inside the package are atomic units (Bohr, Hartree); xyz files are read in Angstrom.

Importing it also turns on a persistent compilation cache in the user's cache directory
(:mod:`jaxks.compile_cache`; ``JAXKS_COMPILE_CACHE=0`` turns it off).
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from jaxks.compile_cache import enable_compile_cache  # noqa: E402

enable_compile_cache()

from jaxks.system import System  # noqa: E402

__all__ = ["System", "__version__"]

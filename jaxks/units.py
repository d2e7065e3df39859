"""Physical constants and unit conversions (CODATA 2018, the values PySCF uses).

Everything inside jaxks is in atomic units: lengths in Bohr, energies in Hartree, forces in
Hartree/Bohr. Convert at the edges only (file input/output, printing).
"""

from pyscf.data import nist

BOHR_PER_ANGSTROM = 1.0 / nist.BOHR  # nist.BOHR is the Bohr radius in Angstrom
ANGSTROM_PER_BOHR = nist.BOHR
EV_PER_HARTREE = nist.HARTREE2EV
#: Hartree/Bohr -> eV/Angstrom
EV_ANGSTROM_PER_HARTREE_BOHR = nist.HARTREE2EV / nist.BOHR

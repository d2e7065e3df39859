"""An ASE calculator: jaxks energies and forces for ``ase.optimize``, ``ase.md`` and friends.

ASE works in eV and Ångström, jaxks in Hartree and Bohr; the conversion happens here only:

    energy (eV)   = E (Eh) · EV_PER_HARTREE
    forces (eV/Å) = F (Eh/Bohr) · EV_ANGSTROM_PER_HARTREE_BOHR,   F = −dE/dR

Each new geometry costs one PySCF integral build (host), one jit-compiled SCF (compiled once per
shape, then reused) and one force evaluation. The converged density of the previous geometry is
the next SCF's initial guess, which halves the cycles along an optimisation or MD trajectory;
the converged result does not depend on the guess beyond the SCF tolerances.

With ``model=`` (a DeePKS model file or :class:`jaxks.deepks.io.DeePKSModel`) the energy and
forces are those of DeePKS-SCF: base functional + the model's correction, self-consistent, and
the correction's explicit geometry dependence in the forces.

Needs ASE (``pip install ase``); the rest of jaxks does not.
"""

from __future__ import annotations

import os

import numpy as np
from ase.calculators.calculator import Calculator, SCFError, all_changes

from jaxks.scf import SCFOptions
from jaxks.system import DEFAULT_AUXBASIS, DEFAULT_BASIS, DEFAULT_GRID_LEVEL
from jaxks.units import EV_ANGSTROM_PER_HARTREE_BOHR, EV_PER_HARTREE


class JaxksCalculator(Calculator):
    """ASE calculator for restricted Kohn-Sham DFT (or DeePKS-SCF) with jaxks.

    Args:
        xc: functional name (default ``"pbe"``, or the model's base functional).
        model: DeePKS model: a built-in name (``"water"``), a path to a ``model.npz`` written
            by ``jaxks train``, or a loaded
            :class:`jaxks.deepks.io.DeePKSModel`; ``None`` for the plain functional.
        basis, auxbasis, grid_level, charge: as for :class:`jaxks.system.System`.
        options: :class:`jaxks.scf.SCFOptions` (tighten ``e_tol``/``comm_tol`` for MD).
        grid_response: include the motion of the integration grid in the forces, making them
            the exact derivatives of the energy (use it for MD on coarse grids).
        reuse_density: start each SCF from the previous geometry's density (same basis size).

    Results (ASE units): ``energy`` (eV), ``forces`` [natoms, 3] (eV/Å). The last
    :class:`jaxks.scf.SCFResult` (atomic units) is kept as ``calc.scf_result``.

    Raises ``ase.calculators.calculator.SCFError`` when the SCF does not converge.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters = dict(xc=None, basis=DEFAULT_BASIS, auxbasis=DEFAULT_AUXBASIS,
                              grid_level=DEFAULT_GRID_LEVEL, charge=0, grid_response=False,
                              reuse_density=True)

    def __init__(self, *, model=None, options: SCFOptions | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, os.PathLike)):
            from jaxks.models import load_model

            model = load_model(model, base_xc=self.parameters.xc)
        self.model = model
        if model is not None:
            # a model is bound to its training settings: take them unless given; a different
            # value given explicitly is an error (jaxks.models.check_settings)
            from jaxks.models import check_settings, model_settings

            keys = ("basis", "auxbasis", "grid_level")
            check_settings(model, "model", **{k: kwargs[k] for k in keys if k in kwargs})
            trained = model_settings(model)
            for k in keys:
                if k not in kwargs and k in trained:
                    self.parameters[k] = trained[k]
        self.options = options or SCFOptions()
        self.scf_result = None
        self._gamma = None
        self._state = None

    @property
    def xc(self) -> str:
        """The functional the SCF runs: the given one, else the model's base, else PBE."""
        return self.parameters.xc or (self.model.base_xc if self.model is not None else "pbe")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from jaxks.commands.scf import compute_forces
        from jaxks.integrals import compute_integrals, pyscf_system
        from jaxks.scf import run_scf
        from jaxks.system import System

        super().calculate(atoms, properties, system_changes)
        p = self.parameters
        if system_changes or self._state is None:  # new geometry: integrals and SCF
            system = System.from_ase(self.atoms, basis=p.basis, auxbasis=p.auxbasis,
                                     grid_level=p.grid_level, charge=p.charge)
            ints = compute_integrals(system)
            # a periodic Atoms: the cell's lattice-summed projector overlaps at Γ
            term, params = (self.model.prepare(pyscf_system(system)) if self.model is not None
                            else (None, None))
            guess = self._gamma
            if not p.reuse_density or guess is None or guess.shape != ints.S.shape:
                guess = None
            result = run_scf(ints, self.xc, term=term, params=params, options=self.options,
                             guess=guess, warn=False)
            if not bool(result.converged):
                raise SCFError(f"jaxks SCF did not converge in {int(result.cycles)} cycles "
                               f"(|dE| = {float(result.delta_e):.1e} Eh); try SCFOptions with "
                               "level_shift or damping")
            self._gamma = result.gamma
            self.scf_result = result
            self._state = (system, ints)
            self.results["energy"] = self.results["free_energy"] = (
                float(result.energy) * EV_PER_HARTREE)
        if "forces" in properties and "forces" not in self.results:
            system, ints = self._state
            f = compute_forces(system, ints, self.scf_result, self.xc, self.model,
                               p.grid_response)
            self.results["forces"] = np.asarray(f) * EV_ANGSTROM_PER_HARTREE_BOHR

    def reset(self):
        """Forget the results of the last geometry (ASE calls this when the atoms change)."""
        super().reset()
        self._state = None

"""jaxks.numint: the screened grid loop against the unscreened one (energy, potential, forces'
XC term with and without grid response) and the electron count against tr ΓS. The SCF energies
with screening on (the default) are checked against PySCF in tests/test_scf.py."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxks.forces import xc_energy_at
from jaxks.grid_weights import grid_geometry
from jaxks.integrals import integrals_from_pyscf, make_grids
from jaxks.numint import electron_count, xc_energy_potential
from jaxks.xc import get_xc
from tests import geometries as geo
from tests.conftest import make_system

AUX = "def2-universal-jkfit"


def test_screening_changes_energy_potential_and_forces_negligibly():
    system = make_system(geo.water_ring(4), basis="def2-svp", grid_level=0)
    mol = system.to_pyscf()
    grids = make_grids(mol, 0)
    screened = integrals_from_pyscf(mol, AUX, 0, grids=grids)
    assert screened.screen is not None
    assert min(b.n_sig for b in screened.screen.bins) < mol.nao   # the screen drops AOs
    full = dataclasses.replace(screened, screen=None)              # same grid and blocks
    gamma = screened.guess
    xc = get_xc("pbe")
    e_s, v_s = jax.jit(xc_energy_potential, static_argnums=2)(gamma, screened, xc)
    e_f, v_f = jax.jit(xc_energy_potential, static_argnums=2)(gamma, full, xc)
    assert abs(float(e_s - e_f)) < 1e-9
    assert float(jnp.max(jnp.abs(v_s - v_f))) < 1e-9
    geom = grid_geometry(mol, grids)
    for grid in (None, geom):
        def force_xc(ints):
            return jax.jit(jax.grad(lambda r: xc_energy_at(gamma, ints, xc, r, grid)))(
                ints.atom_coords)
        assert float(jnp.max(jnp.abs(force_xc(screened) - force_xc(full)))) < 1e-7


def test_electron_count_is_trace_gamma_s():
    system = make_system(geo.WATER, basis="def2-svp", grid_level=1)
    ints = integrals_from_pyscf(system.to_pyscf(), AUX, 1)
    n = float(electron_count(ints.guess, ints))
    assert abs(n - float(jnp.vdot(ints.guess, ints.S))) < 1e-4

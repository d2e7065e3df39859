"""The public API of ``import jaxks``: every advertised name resolves, is documented, and the
package import stays light (PySCF, Flax and the trainer load on first use only)."""

import subprocess
import sys

import pytest

import jaxks


@pytest.mark.parametrize("name", [n for n in jaxks.__all__ if n != "__version__"])
def test_public_name_resolves_and_is_documented(name):
    if name == "JaxksCalculator":
        pytest.importorskip("ase")
    value = getattr(jaxks, name)
    if callable(value):
        doc = value.__doc__ or ""
        assert len(doc.strip()) > 20, f"jaxks.{name} has no docstring"
        assert value.__module__.startswith("jaxks."), value.__module__
    else:  # a unit constant
        assert isinstance(value, float) and value > 0
    assert name in dir(jaxks)
    assert name in (jaxks.__doc__ or ""), f"jaxks.{name} is not listed in the package docstring"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        jaxks.nonexistent  # noqa: B018


def test_submodules_are_not_shadowed():
    """``jaxks.forces`` and ``jaxks.train`` stay the submodules after the API is used."""
    import types

    import jaxks.forces
    import jaxks.train

    jaxks.scf_forces, jaxks.train_model  # noqa: B018
    assert isinstance(jaxks.forces, types.ModuleType)
    assert isinstance(jaxks.train, types.ModuleType)


def test_import_is_lazy():
    code = ("import sys, jaxks, jax; "
            "print(jax.config.jax_enable_x64, "
            "sorted(m for m in ('pyscf', 'flax', 'optax', 'jaxks.scf', 'jaxks.train') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "True []", out

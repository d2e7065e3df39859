"""jaxks.compile_cache: the cache directory, the switch, and a second process reusing an entry."""

import json
import os
import subprocess
import sys

import pytest

from jaxks import compile_cache

SCRIPT = """
import jaxks, jax, jax.numpy as jnp
from jax import monitoring
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
print(jax.config.jax_compilation_cache_dir)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 1.0)
f(jnp.ones((7, 7))).block_until_ready()
print(len(hits))
"""


def _run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXKS_COMPILE_CACHE", "JAXKS_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    assert "E0000" not in out.stderr and "cpu_aot_loader" not in out.stderr  # no log noise
    return out.stdout.strip().splitlines()


def test_cache_on_by_default_in_user_cache_dir_and_reused(tmp_path):
    cache = tmp_path / "xdg" / "jaxks" / "xla"
    assert _run({}, tmp_path) == [str(cache), "0"]   # compiled, nothing to load yet
    assert any(cache.iterdir())                         # the compiled program was written
    assert _run({}, tmp_path)[1] != "0"                # the second process loads it


def test_cache_switch_and_directory_variables(tmp_path, monkeypatch):
    from jaxks import compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("JAXKS_CACHE_DIR", raising=False)
    assert compile_cache.default_dir() == tmp_path / "xdg" / "jaxks" / "xla"
    monkeypatch.setenv("JAXKS_CACHE_DIR", str(tmp_path / "here"))
    assert compile_cache.default_dir() == tmp_path / "here"
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv("JAXKS_COMPILE_CACHE", off)
        assert not compile_cache.enabled()
    monkeypatch.setenv("JAXKS_COMPILE_CACHE", "1")
    assert compile_cache.enabled()


SCF_SCRIPT = """
import json, os, sys
import jaxks
from jaxks import compile_cache, scf
compile_cache.enable_executable_cache()   # as the jaxks command does, which then os._exit()s
from jaxks.integrals import compute_integrals
from jaxks.system import System
system = System.from_symbols(["O", "H", "H"], [[0, 0, 0.1178], [0, 0.7555, -0.4712],
                             [0, -0.7555, -0.4712]], basis="sto-3g", auxbasis="def2-universal-jkfit",
                             grid_level=0)
result, timings = scf.run_scf(compute_integrals(system), "lda", return_timings=True)
print(json.dumps(dict(energy=float(result.energy), traced=timings["traced"])), flush=True)
os._exit(0)
"""


def _scf_process(tmp_path, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXKS_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(JAXKS_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", **env_extra)
    out = subprocess.run([sys.executable, "-c", SCF_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_scf_loop_without_tracing(tmp_path):
    entries = tmp_path / "cache" / compile_cache.EXECUTABLE_SUBDIR
    first = _scf_process(tmp_path)
    assert first["traced"] == 1
    assert len(list(entries.glob("*.bin"))) == 1
    second = _scf_process(tmp_path)
    assert second["traced"] == 0                        # loaded, never traced
    assert abs(second["energy"] - first["energy"]) < 1e-12
    # a corrupt entry is dropped and the loop compiled as usual, to the same energy (JAX's
    # persistent cache supplies the XLA executable); the entry is written anew from the bytes
    # JAX read, and loads in the next process
    for entry in entries.glob("*.bin"):
        entry.write_bytes(b"not an executable")
    third = _scf_process(tmp_path)
    assert third["traced"] == 1 and abs(third["energy"] - first["energy"]) < 1e-12
    assert [p.read_bytes() != b"not an executable" for p in entries.glob("*.bin")] == [True]
    fourth = _scf_process(tmp_path)
    assert fourth["traced"] == 0 and abs(fourth["energy"] - first["energy"]) < 1e-12
    # the switch turns the executable cache off along with JAX's
    off = _scf_process(tmp_path / "off", JAXKS_COMPILE_CACHE="0")
    assert off["traced"] == 1 and abs(off["energy"] - first["energy"]) < 1e-12
    assert not (tmp_path / "off" / "cache").exists()


def _closure(scale):
    def f(x):
        return scale * x
    return f


def test_stable_tokens(monkeypatch):
    from jaxks.scf import SCFOptions
    from jaxks.xc import get_xc

    token = compile_cache.stable_token
    assert token(get_xc("pbe")) == token(get_xc("pbe")) != token(get_xc("lda"))
    assert token(SCFOptions()) != token(SCFOptions(damping=0.5))
    assert "object at 0x" not in token((get_xc("hse06"), SCFOptions(), None))
    # a factory's functions differ by what they close over (this module standing for jaxks)
    monkeypatch.setattr(compile_cache, "_TOKEN_MODULES", (*compile_cache._TOKEN_MODULES,
                                                          __name__.split(".")[0]))
    assert token(_closure(2.0)) == token(_closure(2.0)) != token(_closure(3.0))
    monkeypatch.undo()
    with pytest.raises(compile_cache._NoToken):      # code outside jaxks: never cached
        token(_closure(2.0))
    with pytest.raises(compile_cache._NoToken):
        token(object())

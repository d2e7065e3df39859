"""jaxks.compile_cache: the cache directory, the switch, and a second process reusing an entry."""

import os
import subprocess
import sys

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

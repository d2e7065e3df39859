"""jaxks.compile_cache: the cache directory, the switch, and a second process reusing an entry."""

import os
import subprocess
import sys

SCRIPT = """
import jax, jax.numpy as jnp, jaxks
print(jax.config.jax_compilation_cache_dir)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 1.0)
f(jnp.ones((7, 7))).block_until_ready()
"""


def _run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXKS_COMPILE_CACHE", "JAXKS_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[0]


def test_cache_on_by_default_in_user_cache_dir_and_reused(tmp_path):
    cache = tmp_path / "xdg" / "jaxks" / "xla"
    assert _run({}, tmp_path) == str(cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries                                  # the compiled program was written
    _run({}, tmp_path)
    assert sorted(p.name for p in cache.iterdir()) == entries   # read back, not written again


def test_cache_switch_and_directory_variables(tmp_path):
    assert _run({"JAXKS_COMPILE_CACHE": "0"}, tmp_path) == "None"
    assert not (tmp_path / "xdg").exists()
    assert _run({"JAXKS_CACHE_DIR": str(tmp_path / "here")}, tmp_path) == str(tmp_path / "here")

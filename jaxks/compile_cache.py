"""A persistent XLA compilation cache in the user's cache directory, on by default.

Compiling the jitted SCF loop takes seconds (more than the SCF of a small molecule); with the cache
a second process that meets the same shapes and settings loads the executable from disk instead.
The directory is ``$JAXKS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jaxks/xla`` (default
``~/.cache/jaxks/xla``); ``JAXKS_COMPILE_CACHE=0`` (or ``off``, ``false``, ``no``) turns it off. A
cache directory configured in JAX itself (``jax_compilation_cache_dir``) is left as it is.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import jax

#: Environment variable that turns the cache off ("0", "off", "false", "no").
ENV_SWITCH = "JAXKS_COMPILE_CACHE"
#: Environment variable naming the cache directory.
ENV_DIR = "JAXKS_CACHE_DIR"
#: Programs compiling faster than this (s) are not cached (loading them would not pay).
MIN_COMPILE_TIME_S = 0.3
#: Size limit of the cache directory (bytes); JAX evicts least recently used entries beyond it
#: (only with the ``filelock`` package installed; otherwise the directory is not bounded).
MAX_SIZE_BYTES = 2 * 1024**3


def default_dir() -> Path:
    """``$JAXKS_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxks/xla``, else ``~/.cache/jaxks/xla``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "jaxks" / "xla"


def enabled() -> bool:
    """False when ``JAXKS_COMPILE_CACHE`` is 0/off/false/no."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def enable_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`default_dir` (unless switched off or
    already configured). Returns the directory in use, or None when the cache is off."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    if not enabled():
        return None
    path = default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # read-only home: run without a cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    if importlib.util.find_spec("filelock") is not None:
        # JAX needs filelock to evict entries; without it the cache must be left unbounded
        jax.config.update("jax_compilation_cache_max_size", MAX_SIZE_BYTES)
    return path

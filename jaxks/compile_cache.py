"""Persistent caches of compiled programs in the user's cache directory, on by default.

Compiling the jitted SCF loop takes seconds (more than the SCF of a small molecule); with the cache
a second process that meets the same shapes and settings loads the executable from disk instead.
The directory is ``$JAXKS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jaxks/xla`` (default
``~/.cache/jaxks/xla``); ``JAXKS_COMPILE_CACHE=0`` (or ``off``, ``false``, ``no``) turns it off. A
cache directory configured in JAX itself (``jax_compilation_cache_dir``) is left as it is.

Two layers share that directory:

* JAX's own persistent compilation cache (:func:`enable_compile_cache`), keyed on the lowered
  program: a hit still pays for tracing and lowering the Python function (~0.7 s for the SCF loop
  of a water molecule on a 2-core CPU), only to compute the key.
* jaxks's executable cache (:func:`executable_key`, :func:`load_executable`,
  :func:`store_executable`, in ``<dir>/jaxks-executables``), keyed on stable data known before
  tracing: library versions, a hash of jaxks's own source files, the backend and host CPU, the
  argument structure, shapes and dtypes, and a token of the static arguments built from their
  values and the module + qualified name of their functions (:func:`stable_token`; never from
  ``hash()``, which differs between processes). A hit loads the serialized executable without
  tracing. Whatever cannot be given a stable token (a function from outside jaxks and the
  libraries it depends on, an object without dataclass fields) is not cached here; a stale,
  corrupt or unloadable entry is deleted and the caller compiles as usual.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import pickle
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

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


# ----------------------------------------------------------------------------- executable cache
#: Sub-directory of the compilation cache directory holding jaxks's serialized executables.
EXECUTABLE_SUBDIR = "jaxks-executables"
#: Entries kept (least recently used beyond this are deleted when a new one is written).
MAX_EXECUTABLES = 64
#: Bumped whenever the entry format or the key's recipe changes.
_FORMAT = 1
#: Modules whose functions may appear in a cached static argument: jaxks's own (its source is
#: hashed into the key) and the libraries whose versions are in the key.
_TOKEN_MODULES = ("jaxks", "jax", "jaxlib", "numpy", "flax", "optax")
#: Everything in the environment that changes what XLA compiles for the same program.
_JAX_FLAGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_debug_nans",
              "jax_debug_infs", "jax_disable_jit", "jax_numpy_rank_promotion")


class _NoToken(Exception):
    """An object without a process-independent token: the executable cache is not used."""


def executable_dir() -> Path | None:
    """``<JAX compilation cache dir>/jaxks-executables``, or None when caching is off."""
    base = jax.config.jax_compilation_cache_dir
    if not base or not enabled():
        return None
    return Path(base) / EXECUTABLE_SUBDIR


def stable_token(obj) -> str:
    """A string that is equal for equal static arguments in any process.

    Numbers, strings, None: their ``repr``; tuples, lists, dicts: their items; frozen dataclass
    instances: class and every field; functions, classes and other named callables from
    :data:`_TOKEN_MODULES`: module and qualified name (plus closure cells, defaults and
    ``functools.partial`` arguments); small NumPy arrays: dtype, shape and bytes. Raises
    :class:`_NoToken` for anything else.
    """
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__}(" + ",".join(stable_token(v) for v in obj) + ")"
    if isinstance(obj, dict):
        items = sorted((stable_token(k), stable_token(v)) for k, v in obj.items())
        return "dict(" + ",".join(f"{k}={v}" for k, v in items) + ")"
    if isinstance(obj, np.ndarray) and obj.nbytes <= 1 << 16:
        return f"ndarray({obj.dtype.str},{obj.shape},{hashlib.sha256(obj.tobytes()).hexdigest()})"
    if isinstance(obj, np.generic):
        return stable_token(obj.item())
    if isinstance(obj, functools.partial):
        return (f"partial({stable_token(obj.func)},{stable_token(obj.args)},"
                f"{stable_token(obj.keywords)})")
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or (
            callable(obj) and hasattr(obj, "__qualname__") and hasattr(obj, "__module__")
            and not dataclasses.is_dataclass(obj)):
        name = _qualified_name(obj)
        if isinstance(obj, types.FunctionType):
            cells = tuple(c.cell_contents for c in obj.__closure__ or ())
            return (f"fn:{name}:{stable_token(cells)}:{stable_token(obj.__defaults__)}:"
                    f"{stable_token(obj.__kwdefaults__)}")
        return f"obj:{name}"
    if dataclasses.is_dataclass(obj):
        cls = _qualified_name(type(obj))
        fields = ",".join(f"{f.name}={stable_token(getattr(obj, f.name))}"
                          for f in dataclasses.fields(obj))
        return f"{cls}({fields})"
    raise _NoToken(type(obj))


def _qualified_name(obj) -> str:
    module = getattr(obj, "__module__", None) or ""
    qualname = getattr(obj, "__qualname__", None)
    if not qualname or module.split(".")[0] not in _TOKEN_MODULES:
        raise _NoToken(obj)
    return f"{module}:{qualname}"


@functools.lru_cache(maxsize=1)
def _environment_token() -> str:
    """Versions, jaxks's source hash, backend, host CPU: the part of a key fixed in a process."""
    import jaxlib

    src = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        src.update(str(path.relative_to(root)).encode())
        src.update(path.read_bytes())
    versions = {name: getattr(sys.modules[name], "__version__", "?")
                for name in ("jax", "numpy", "flax", "optax") if name in sys.modules}
    device = jax.devices()[0]
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:  # the XLA:CPU code targets the host's features
            cpu = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    parts = (_FORMAT, versions, jaxlib.__version__, src.hexdigest(), device.platform,
             device.device_kind, device.client.platform_version, cpu.strip(),
             os.environ.get("XLA_FLAGS", ""),
             tuple(getattr(jax.config, flag, None) for flag in _JAX_FLAGS))
    return repr(parts)


def executable_key(name: str, args, static: dict) -> str | None:
    """Key of the executable of the function ``name`` at the arguments ``args`` (a pytree) and
    static arguments ``static``; None when it has no stable key (then nothing is cached).

    Only the CPU backend is cached, and only arguments that live on the default device (or are
    host arrays): the loaded executable runs there.
    """
    try:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        device = jax.devices()[0]
        if device.platform != "cpu":
            # only the CPU is tested: a GPU executable may need kernels initialised on lowering
            # beyond LAPACK's (a crash there could not fall back)
            return None
        shapes = []
        for v in leaves:
            if isinstance(v, jax.Array) and v.devices() != {device}:
                return None
            weak = isinstance(v, (int, float, complex)) or bool(getattr(v, "weak_type", False))
            shapes.append((np.shape(v), str(jnp.result_type(v)), weak))
        text = repr((name, _environment_token(), str(treedef), shapes,
                     sorted((k, stable_token(v)) for k, v in static.items())))
    except _NoToken:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def load_executable(key: str, args):
    """The compiled executable stored under ``key``, ready to call with ``args``' structure, or
    None when there is none (or it cannot be loaded: then the entry is deleted)."""
    directory = executable_dir()
    if directory is None or key is None:
        return None
    path = directory / f"{key}.bin"
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        from jax.experimental.serialize_executable import deserialize_and_load

        _initialize_custom_calls()
        payload, out_tree = pickle.loads(blob)
        in_tree = jax.tree_util.tree_structure((tuple(args), {}))
        compiled = deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001  (a corrupt or stale entry: compile instead)
        discard_executable(key)
        return None
    try:
        os.utime(path)  # least recently used eviction goes by modification time
    except OSError:
        pass
    return compiled


def _initialize_custom_calls() -> None:
    """Fill in jaxlib's LAPACK kernel table, as lowering an eigh or a solve would.

    jaxlib resolves its LAPACK kernels (eigh, Cholesky, LU: FFI custom calls) only when such an
    operation is lowered; an executable loaded without lowering anything first would call
    null pointers and crash (jax.export does the same before running a deserialized module).
    """
    from jax._src.lax import linalg

    linalg.initialize_lapack()


def store_executable(key: str, compiled) -> bool:
    """Write ``compiled`` (a ``jax.stages.Compiled``) under ``key``; False when it cannot be.

    The caller must only store an executable it compiled itself: jaxlib 0.10 serializes one
    that JAX loaded from its own persistent cache without its code ("Function ... not found"
    when run).
    """
    directory = executable_dir()
    if directory is None or key is None:
        return False
    try:
        from jax.experimental.serialize_executable import serialize

        payload, _, out_tree = serialize(compiled)
        blob = pickle.dumps((payload, out_tree), protocol=pickle.HIGHEST_PROTOCOL)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{key}.{os.getpid()}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, directory / f"{key}.bin")  # atomic: readers never see half a file
        entries = sorted(directory.glob("*.bin"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_EXECUTABLES]:
            old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001  (not serializable, disk full, read-only: no cache)
        return False
    return True


def discard_executable(key: str) -> None:
    """Delete the entry ``key`` (one that failed to load or to run)."""
    directory = executable_dir()
    if directory is not None and key is not None:
        try:
            (directory / f"{key}.bin").unlink(missing_ok=True)
        except OSError:
            pass


_HITS = {"count": 0, "listening": False}


def _count_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS["count"] += 1


def persistent_cache_hits() -> int:
    """Number of JAX persistent-cache hits in this process since the first call of this."""
    if not _HITS["listening"]:
        from jax import monitoring

        monitoring.register_event_listener(_count_hit)
        _HITS["listening"] = True
    return _HITS["count"]

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
  tracing. Used only by processes that enable it (:func:`enable_executable_cache`: the
  ``jaxks scf`` command, which ends with ``os._exit``). Whatever cannot be given a stable token (a function from outside jaxks and the
  libraries it depends on, an object without dataclass fields) is not cached here; a stale,
  corrupt or unloadable entry is deleted and the caller compiles as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
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


_EXECUTABLES = {"on": False}


def enable_executable_cache(on: bool = True) -> None:
    """Let this process use the executable cache (off by default; the ``jaxks`` command turns
    it on for ``jaxks scf``).

    Only for a process that ends with ``os._exit`` (:func:`jaxks.cli.entry`): with jaxlib
    0.10.1 on the CPU, a process that ran an executable loaded this way and then exits
    normally within moments sometimes aborts in the interpreter's teardown ("terminate called
    without an active exception", exit status 134; about 1 exit in 5 for water), after all its
    work is done."""
    _EXECUTABLES["on"] = bool(on)


def executable_dir() -> Path | None:
    """``<JAX compilation cache dir>/jaxks-executables``, or None when caching is off (or the
    executable cache not enabled in this process, :func:`enable_executable_cache`)."""
    base = jax.config.jax_compilation_cache_dir
    if not base or not enabled() or not _EXECUTABLES["on"]:
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
    src = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        src.update(str(path.relative_to(root)).encode())
        src.update(path.read_bytes())
    versions = {}
    for name in _TOKEN_MODULES[1:]:  # installed versions, whether imported yet or not
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device = jax.devices()[0]
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:  # the XLA:CPU code targets the host's features
            cpu = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    parts = (_FORMAT, versions, src.hexdigest(), device.platform,
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


def store_executable(key: str, compiled, seen: "CompileRecord") -> bool:
    """Write ``compiled`` (a ``jax.stages.Compiled``) under ``key``; False when it cannot be.

    ``seen``: what JAX's persistent cache did during that compilation
    (:func:`watch_persistent_cache`). jaxlib 0.10 cannot re-serialize an executable that JAX
    loaded from its persistent cache (the copy lacks its kernels: "Function ... not found" when
    run), so such an executable is stored with the bytes JAX read from its cache instead.
    """
    directory = executable_dir()
    if directory is None or key is None:
        return False
    try:
        if seen.hits == 0:
            from jax.experimental.serialize_executable import serialize

            payload, _, out_tree = serialize(compiled)
        elif seen.hits == 1 and len(seen.read) == 1:
            payload, out_tree = _serialize_with(compiled, seen.read[0])
        else:
            return False
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


def _serialize_with(compiled, xla_bytes: bytes):
    """``jax.experimental.serialize_executable.serialize(compiled)`` with the XLA executable
    given as the bytes it was loaded from (``deserialize_and_load`` reads the result)."""
    import io

    from jax._src.lib import xla_client
    from jax.experimental import serialize_executable

    class Pickler(serialize_executable._JaxPjrtPickler):
        def persistent_id(self, obj):
            if isinstance(obj, xla_client.LoadedExecutable):
                return ("exec", xla_bytes)
            return super().persistent_id(obj)

    unloaded = compiled._executable._unloaded_executable
    args_info_flat, _ = jax.tree_util.tree_flatten(compiled.args_info)
    with io.BytesIO() as f:
        Pickler(f).dump((unloaded, args_info_flat, compiled._no_kwargs))
        return f.getvalue(), compiled.out_tree


@dataclasses.dataclass
class CompileRecord:
    """JAX persistent-cache activity during a compilation: hits, and the serialized XLA
    executables read from the cache."""

    hits: int = 0
    read: list = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def watch_persistent_cache():
    """Record JAX's persistent-cache hits (``jax.monitoring``) and the executables it reads
    (by wrapping ``jax._src.compilation_cache.extract_executable_and_time``, when present)."""
    from jax import monitoring
    from jax._src import compilation_cache

    record = CompileRecord()
    _WATCHERS.append(record)
    if not _LISTENING:
        monitoring.register_event_listener(_count_hit)
        _LISTENING.append(True)
    extract = getattr(compilation_cache, "extract_executable_and_time", None)

    def spy(data):
        out = extract(data)
        record.read.append(out[0])
        return out

    if extract is not None:
        compilation_cache.extract_executable_and_time = spy
    try:
        yield record
    finally:
        if extract is not None:
            compilation_cache.extract_executable_and_time = extract
        _WATCHERS.remove(record)


_WATCHERS: list = []
_LISTENING: list = []


def _count_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        for record in _WATCHERS:
            record.hits += 1


def discard_executable(key: str) -> None:
    """Delete the entry ``key`` (one that failed to load or to run)."""
    directory = executable_dir()
    if directory is not None and key is not None:
        try:
            (directory / f"{key}.bin").unlink(missing_ok=True)
        except OSError:
            pass

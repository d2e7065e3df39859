"""Training configuration: every setting with its default, read from and written to TOML.

A config file needs only the settings that differ from the defaults, e.g.::

    [data]
    train = ["data/w1", "data/w2", "data/w3"]
    test = ["data/w4"]

    [train]
    mode = "scf"          # "scf": end-to-end through the SCF; "fixed": the published scheme
    steps = 200

The complete config (defaults filled in) is written back next to the results as
``config.toml``, so every run records exactly what it did. Units: Hartree, Bohr.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from jaxks.system import InputError
from jaxks.train.losses import LossWeights

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Datasets (folders written by ``jaxks label``)."""

    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    max_frames: int = 0            # 0: all frames of every training set
    skip_unconverged_labels: bool = True


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """The DeePKS network (method.md §3 defaults)."""

    hidden: tuple[int, ...] = (100, 100, 100)
    embedding: str = "none"        # "none" or "thermal"
    element_constants: bool = True
    prefit: bool = True
    ridge_alpha: float = 10.0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class LossSection(LossWeights):
    """λ of each loss term (the fields of :class:`jaxks.train.losses.LossWeights`, with the
    published defaults) and the orbital window (method.md §4)."""

    n_virtual: int = 1             # virtual orbitals in the window (LUMO = 1)
    include_core: bool = False


@dataclasses.dataclass(frozen=True)
class OptimSection:
    """Adam with an exponential learning-rate decay."""

    learning_rate: float = 1e-3
    decay_steps: int = 100
    decay_rate: float = 0.9
    end_learning_rate: float = 1e-5
    clip_norm: float = 1.0


@dataclasses.dataclass(frozen=True)
class SCFSection:
    """SCF and adjoint settings used while training and evaluating."""

    max_cycles: int = 60
    e_tol: float = 1e-10
    comm_tol: float = 1e-6
    level_shift: float = 0.0
    damping: float = 0.0
    adjoint_tol: float = 1e-9


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The loop."""

    mode: str = "scf"              # "scf" (end-to-end) or "fixed" (frozen density)
    steps: int = 100               # gradient steps
    batch_size: int = 4            # frames per step
    seed: int = 0
    refresh_every: int = 10        # fixed mode: steps between SCF refreshes of the frozen Γ
    checkpoint_every: int = 10
    log_every: int = 1
    out: str = "runs/deepks"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelSection = ModelSection()
    loss: LossSection = LossSection()
    optim: OptimSection = OptimSection()
    scf: SCFSection = SCFSection()
    train: TrainSection = TrainSection()

    def __post_init__(self):
        if self.train.mode not in ("scf", "fixed"):
            raise InputError(f"train.mode must be 'scf' or 'fixed', got {self.train.mode!r}")
        if self.model.embedding not in ("none", "thermal"):
            raise InputError(f"model.embedding must be 'none' or 'thermal', got "
                             f"{self.model.embedding!r}")
        if self.train.steps < 0 or self.train.batch_size < 1:
            raise InputError("train.steps must be >= 0 and train.batch_size >= 1")
        checks = [
            (self.data.max_frames >= 0, "data.max_frames must be >= 0 (0: all frames)"),
            (all(h >= 1 for h in self.model.hidden), "model.hidden widths must be >= 1"),
            (self.model.ridge_alpha >= 0, "model.ridge_alpha must be >= 0"),
            (all(getattr(self.loss, k) >= 0 for k in _WEIGHTS),
             "loss weights (" + ", ".join(_WEIGHTS) + ") must be >= 0"),
            (self.loss.n_virtual >= 0, "loss.n_virtual must be >= 0"),
            (self.optim.learning_rate > 0, "optim.learning_rate must be > 0"),
            (self.optim.decay_rate > 0, "optim.decay_rate must be > 0"),
            (self.optim.end_learning_rate >= 0, "optim.end_learning_rate must be >= 0"),
            (self.optim.clip_norm > 0, "optim.clip_norm must be > 0"),
            (self.scf.max_cycles >= 1, "scf.max_cycles must be >= 1"),
            (min(self.scf.e_tol, self.scf.comm_tol, self.scf.adjoint_tol) > 0,
             "scf.e_tol, scf.comm_tol and scf.adjoint_tol must be > 0 (Hartree)"),
            (self.scf.level_shift >= 0, "scf.level_shift must be >= 0 (Hartree)"),
            (0 <= self.scf.damping < 1, "scf.damping must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        sections = {}
        for f in dataclasses.fields(cls):
            section_cls = _SECTIONS[f.name]
            raw = d.get(f.name, {})
            if not isinstance(raw, dict):
                raise InputError(f"{f.name!r} must be a section [{f.name}] of settings, "
                                 f"got {raw!r}")
            known = {g.name: g for g in dataclasses.fields(section_cls)}
            unknown = set(raw) - set(known)
            if unknown:
                raise InputError(f"unknown setting(s) in [{f.name}]: {', '.join(sorted(unknown))}"
                                 f"; known: {', '.join(known)}")
            kwargs = {k: _coerce(f"[{f.name}] {k}", known[k], v) for k, v in raw.items()}
            sections[f.name] = section_cls(**kwargs)
        unknown = set(d) - set(sections)
        if unknown:
            raise InputError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        return cls(**sections)


_WEIGHTS = tuple(f.name for f in dataclasses.fields(LossWeights))
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string in quotes"}


def _scalar(where: str, kind: type, value):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise InputError(f"{where} must be {_KINDS[kind]}, got {value!r}")


def _coerce(where: str, field: dataclasses.Field, value):
    """A value read from TOML, checked against the type of the setting's default (TOML types
    are exact: no silent int(2.5) or bool("no"))."""
    if isinstance(field.default, tuple):
        # element type from the annotation ("tuple[str, ...]" / "tuple[int, ...]")
        kind = str if "str" in str(field.type) else int
        if not isinstance(value, (list, tuple)):
            example = '["data/water"]' if kind is str else "[100, 100]"
            raise InputError(f"{where} must be a list, e.g. {example}, got {value!r}")
        return tuple(_scalar(f"{where} entry", kind, v) for v in value)
    return _scalar(where, type(field.default), value)


_SECTIONS = {"data": DataConfig, "model": ModelSection, "loss": LossSection,
             "optim": OptimSection, "scf": SCFSection, "train": TrainSection}


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a TOML config (missing settings take their defaults).

    Raises:
        InputError: unreadable file, invalid TOML, unknown sections or settings.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise InputError(f"cannot read config file {os.fspath(path)!r}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{os.fspath(path)}: invalid TOML: {err}") from err
    return TrainConfig.from_dict(raw)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_config(config: TrainConfig) -> str:
    """The complete config as TOML text (units: Hartree, Bohr)."""
    lines = ["# jaxks training configuration (complete: every setting, defaults included)",
             "# units: Hartree, Bohr"]
    for section, values in config.to_dict().items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write :func:`dumps_config` atomically."""
    from jaxks.train.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, dumps_config(config).encode())

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

from jaxks.deepks.descriptors import DESCRIPTOR_KINDS, check_pair_shells, radial_counts
from jaxks.integrals.projectors import default_basis
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
    embedding: str = "none"        # "none" or "thermal" (thermal needs descriptor = "eig")
    descriptor: str = "schatten"   # "schatten" (smooth through eigenvalue crossings) or "eig"
    element_constants: bool = True
    prefit: bool = True
    ridge_alpha: float = 10.0
    # one prefit weight vector per element, fitted with the element constants on frame sums
    # divided by their std (ridge_alpha is then dimensionless: 1e-7 ~ least squares); needs
    # element_constants (jaxks.deepks.model.ModelConfig says so when the model is built)
    prefit_per_element: bool = False
    output_scale: float = 100.0    # the network output is divided by this (DeePKS-kit: 100)
    seed: int = 0
    # optional two-centre term on off-site projected blocks (jaxks.deepks.model): radial
    # indices of its shells ([] = off; suggested [6, 7, 8, 9, 10, 11], the diffuse ones),
    # their angular momenta, the pair network's widths and the feature floor τ (electrons)
    pair_radial: tuple[int, ...] = ()
    pair_l: tuple[int, ...] = (0, 1)
    pair_hidden: tuple[int, ...] = (32, 32)
    pair_floor: float = 1e-3


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
    adjoint_tol: float = 1e-7       # relative; training gradients need no more (README)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The loop."""

    mode: str = "scf"              # "scf" (end-to-end) or "fixed" (frozen density)
    steps: int = 100               # gradient steps
    batch_size: int = 4            # frames per step
    seed: int = 0
    refresh_every: int = 10        # fixed mode: steps between SCF refreshes of the frozen Γ
    refresh_cycles: int = 30       # cycles a warm-started refresh SCF may take before its frame
                                   # is run again alone from MINAO (0: scf.max_cycles)
    # Convergence of the fixed-mode refresh SCF (Hartree), looser than [scf]: a fixed-density
    # step evaluates every loss at the refreshed Γ itself, so a density error δΓ changes the
    # energy at second order and the Fock matrix, eigenvalues and forces at first order in δΓ
    # ~ comm_tol; at these values the loss terms of the trained water model move by ≤ 3 % of the
    # targets' scale (eigenvalues ≤ 0.26 meV, forces ≤ 0.13 meV/Å, energy ~1e-6 meV/atom:
    # benchmarks/results/train_timing_cpu.md, run 5) for ~3 cycles fewer per frame, and a
    # refresh re-converges Γ, so the error does not accumulate. Evaluation and end-to-end
    # steps keep [scf].
    refresh_e_tol: float = 1e-7
    refresh_comm_tol: float = 1e-4
    scf_frames_per_vmap: int = 0   # end-to-end mode: frames vmapped together (0: whole batch;
                                   # lowered on a CPU with jaxlib 0.10-0.11: README, Known problems)
    checkpoint_every: int = 10
    log_every: int = 1
    out: str = "runs/deepks"


@dataclasses.dataclass(frozen=True)
class StageSection:
    """One stage of a staged schedule (``[[stages]]`` tables, run in order).

    A value of 0 (or −1 for a loss weight) means "as in [train], [optim] or [loss]"; so a stage
    needs only what differs, e.g. fixed-density pretraining then end-to-end fine-tuning::

        [[stages]]
        mode = "fixed"
        steps = 400

        [[stages]]
        mode = "scf"
        steps = 50
        learning_rate = 1e-4
    """

    mode: str = "fixed"
    steps: int = 100
    batch_size: int = 0
    refresh_every: int = 0
    learning_rate: float = 0.0
    decay_steps: int = 0
    decay_rate: float = 0.0
    energy: float = -1.0
    force: float = -1.0
    hamiltonian: float = -1.0
    valence_hamiltonian: float = -1.0
    eigenvector: float = -1.0
    eigenvalue: float = -1.0
    density: float = -1.0
    gap: float = -1.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelSection = ModelSection()
    loss: LossSection = LossSection()
    optim: OptimSection = OptimSection()
    scf: SCFSection = SCFSection()
    train: TrainSection = TrainSection()
    stages: tuple[StageSection, ...] = ()

    def resolved_stages(self) -> tuple["ResolvedStage", ...]:
        """The stages with every inherited value filled in; without ``[[stages]]``, one stage
        made of [train] mode and steps."""
        stages = self.stages or (StageSection(mode=self.train.mode, steps=self.train.steps),)
        out = []
        for st in stages:
            weights = {k: (getattr(st, k) if getattr(st, k) >= 0 else getattr(self.loss, k))
                       for k in _WEIGHTS}
            out.append(ResolvedStage(
                mode=st.mode, steps=st.steps,
                batch_size=st.batch_size or self.train.batch_size,
                refresh_every=st.refresh_every or self.train.refresh_every,
                learning_rate=st.learning_rate or self.optim.learning_rate,
                decay_steps=st.decay_steps or self.optim.decay_steps,
                decay_rate=st.decay_rate or self.optim.decay_rate,
                weights=LossWeights(**weights)))
        return tuple(out)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.resolved_stages())

    def __post_init__(self):
        if self.train.mode not in ("scf", "fixed"):
            raise InputError(f"train.mode must be 'scf' or 'fixed', got {self.train.mode!r}")
        if self.model.embedding not in ("none", "thermal"):
            raise InputError(f"model.embedding must be 'none' or 'thermal', got "
                             f"{self.model.embedding!r}")
        if self.model.descriptor not in DESCRIPTOR_KINDS:
            raise InputError(f"model.descriptor must be one of {DESCRIPTOR_KINDS}, got "
                             f"{self.model.descriptor!r}")
        if self.model.embedding == "thermal" and self.model.descriptor != "eig":
            raise InputError("model.embedding = 'thermal' works on eigenvalues: set "
                             "model.descriptor = 'eig' with it")
        if self.model.pair_radial:
            # the trainer uses the default projector basis (jaxks.train.initial): check the
            # pair shells against it now, not after the data are loaded
            check_pair_shells(radial_counts(default_basis().shell_structure),
                              self.model.pair_radial, self.model.pair_l)
        if self.train.steps < 0 or self.train.batch_size < 1:
            raise InputError("train.steps must be >= 0 and train.batch_size >= 1")
        checks = [
            (self.data.max_frames >= 0, "data.max_frames must be >= 0 (0: all frames)"),
            (all(h >= 1 for h in self.model.hidden), "model.hidden widths must be >= 1"),
            (self.model.ridge_alpha >= 0, "model.ridge_alpha must be >= 0"),
            (self.model.output_scale > 0, "model.output_scale must be > 0"),
            (all(h >= 1 for h in self.model.pair_hidden), "model.pair_hidden widths must be >= 1"),
            (self.model.pair_floor > 0, "model.pair_floor must be > 0 (electrons)"),
            (all(getattr(self.loss, k) >= 0 for k in _WEIGHTS),
             "loss weights (" + ", ".join(_WEIGHTS) + ") must be >= 0"),
            (self.loss.n_virtual >= 0, "loss.n_virtual must be >= 0"),
            (self.optim.learning_rate > 0, "optim.learning_rate must be > 0"),
            (self.optim.decay_rate > 0, "optim.decay_rate must be > 0"),
            (self.optim.end_learning_rate >= 0, "optim.end_learning_rate must be >= 0"),
            (self.optim.clip_norm > 0, "optim.clip_norm must be > 0"),
            (self.scf.max_cycles >= 1, "scf.max_cycles must be >= 1"),
            (self.train.refresh_cycles >= 0, "train.refresh_cycles must be >= 0 "
             "(0: scf.max_cycles)"),
            (min(self.scf.e_tol, self.scf.comm_tol, self.scf.adjoint_tol) > 0,
             "scf.e_tol, scf.comm_tol and scf.adjoint_tol must be > 0 (Hartree)"),
            (min(self.train.refresh_e_tol, self.train.refresh_comm_tol) > 0,
             "train.refresh_e_tol and train.refresh_comm_tol must be > 0 (Hartree)"),
            (self.scf.level_shift >= 0, "scf.level_shift must be >= 0 (Hartree)"),
            (0 <= self.scf.damping < 1, "scf.damping must be in [0, 1)"),
        ]
        for k, st in enumerate(self.stages):
            where = f"[[stages]] {k + 1}"
            checks += [
                (st.mode in ("scf", "fixed"), f"{where}: mode must be 'scf' or 'fixed', got "
                 f"{st.mode!r}"),
                (st.steps >= 0 and st.batch_size >= 0 and st.refresh_every >= 0
                 and st.decay_steps >= 0, f"{where}: steps, batch_size, refresh_every and "
                 "decay_steps must be >= 0"),
                (st.learning_rate >= 0 and st.decay_rate >= 0,
                 f"{where}: learning_rate and decay_rate must be >= 0 (0: inherit)"),
                (all(getattr(st, w) >= 0 or getattr(st, w) == -1.0 for w in _WEIGHTS),
                 f"{where}: loss weights must be >= 0 (or -1: inherit [loss])"),
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
            if f.name == "stages":
                raw = d.get("stages", [])
                if not isinstance(raw, (list, tuple)) or not all(isinstance(x, dict)
                                                                 for x in raw):
                    raise InputError("stages must be a list of [[stages]] tables, got "
                                     f"{raw!r}")
                sections["stages"] = tuple(_section(StageSection, f"[[stages]] {k + 1}", x)
                                           for k, x in enumerate(raw))
                continue
            raw = d.get(f.name, {})
            if not isinstance(raw, dict):
                raise InputError(f"{f.name!r} must be a section [{f.name}] of settings, "
                                 f"got {raw!r}")
            sections[f.name] = _section(_SECTIONS[f.name], f"[{f.name}]", raw)
        unknown = set(d) - set(sections)
        if unknown:
            raise InputError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        return cls(**sections)


@dataclasses.dataclass(frozen=True)
class ResolvedStage:
    """A stage with nothing left to inherit (see :meth:`TrainConfig.resolved_stages`)."""

    mode: str
    steps: int
    batch_size: int
    refresh_every: int
    learning_rate: float
    decay_steps: int
    decay_rate: float
    weights: LossWeights


def _section(section_cls, where: str, raw: dict):
    known = {g.name: g for g in dataclasses.fields(section_cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise InputError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}"
                         f"; known: {', '.join(known)}")
    return section_cls(**{k: _coerce(f"{where} {k}", known[k], v) for k, v in raw.items()})


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
        if section == "stages":
            for stage in values:
                lines.append("\n[[stages]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in stage.items()]
            continue
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write :func:`dumps_config` atomically."""
    from jaxks.train.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, dumps_config(config).encode())

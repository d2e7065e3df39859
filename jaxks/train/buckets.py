"""Frames grouped into buckets of one composition, stacked along a leading frame axis, and the
seeded schedule of fixed-size batches drawn from them.

A bucket holds every training frame of one composition (same atoms, basis size and padded grid),
so one compiled step serves all its batches: the per-frame arrays become one pytree with a
leading axis [n_frames, ...] and a step gathers its batch from it by index inside ``jit``.

Schedule: epoch e permutes each bucket with ``default_rng([seed, stage, e])``, cuts it into
batches of ``batch_size`` and shuffles the batches of all buckets together with the same
generator, so the batch of any step is a pure function of (seed, stage, step) — what an exact
resume needs. A bucket's last, short batch is filled up with other frames of the bucket at
weight 0 (static shapes; they do not enter the gradient).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Bucket:
    """Frames of one composition.

    Attributes:
        key: composition key (formula and basis size).
        indices: positions of its frames in the training list [n].
        window, n_atoms, n_occ: static sizes shared by every frame of the bucket.
    """

    key: str
    indices: tuple[int, ...]
    window: object
    n_atoms: int
    n_occ: int

    @property
    def size(self) -> int:
        return len(self.indices)


def make_buckets(records) -> list[Bucket]:
    """One bucket per composition key, in sorted key order (deterministic)."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.key, []).append(i)
    out = []
    for key in sorted(groups):
        first = records[groups[key][0]].frame
        out.append(Bucket(key, tuple(groups[key]), first.window, first.n_atoms,
                          first.ints.n_occ))
    return out


def stack(trees: Sequence) -> object:
    """Stack pytrees of identical structure along a new leading axis (None leaves stay None)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


@dataclasses.dataclass(frozen=True)
class Batch:
    """One step's batch: bucket number, frame positions inside the bucket, weights (1 real,
    0 filler)."""

    bucket: int
    positions: np.ndarray
    weights: np.ndarray


def padded_batch_size(batch_size: int, n_devices: int = 1) -> int:
    """``batch_size`` rounded up to a multiple of the device count (the frame axis is sharded)."""
    return -(-batch_size // n_devices) * n_devices


def epoch_batches(buckets: Sequence[Bucket], batch_size: int, seed: int, stage: int,
                  epoch: int, n_devices: int = 1) -> list[Batch]:
    """All batches of one epoch, in their (seeded) order."""
    rng = np.random.default_rng([seed, stage, epoch])
    width = padded_batch_size(batch_size, n_devices)
    out = []
    for b, bucket in enumerate(buckets):
        perm = rng.permutation(bucket.size)
        for start in range(0, bucket.size, batch_size):
            real = perm[start:start + batch_size]
            filler = np.resize(np.concatenate([perm[:start], perm[start + batch_size:]])
                               if bucket.size > len(real) else real, width - len(real))
            pos = np.concatenate([real, filler]).astype(np.int32)
            w = np.concatenate([np.ones(len(real)), np.zeros(width - len(real))])
            out.append(Batch(b, pos, w))
    order = rng.permutation(len(out))
    return [out[k] for k in order]


def batch_at(step: int, buckets: Sequence[Bucket], batch_size: int, seed: int, stage: int = 0,
             n_devices: int = 1) -> Batch:
    """The batch of (stage-local) step ``step``."""
    per_epoch = sum(-(-b.size // batch_size) for b in buckets)
    epoch, k = divmod(step, per_epoch)
    return epoch_batches(buckets, batch_size, seed, stage, epoch, n_devices)[k]

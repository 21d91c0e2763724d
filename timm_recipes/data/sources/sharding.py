"""How an epoch of tar shards is dealt over (rank, worker) pairs: pure functions of the counts and the seed.

The problems this avoids (all reported against streaming readers under DDP): a rank or worker with no shard, so that
its peers wait for it forever; ranks that run different numbers of steps; an epoch length nobody knows; samples
repeated or skipped within an epoch; the same order replayed every epoch when workers persist.

**The guarantee, with known shard lengths** (an ``_info.json`` with ``shard_lengths``, as timm's and
``timm-recipes shard``'s shards have): every epoch the shards are put in the order of a permutation drawn from
``(seed, epoch)`` (the same on every rank) and concatenated into one stream of ``N`` samples. The stream is cut after
``S·W·B`` samples, with ``S = N // (W·B)`` steps for ``W`` ranks and batch ``B`` (the ``N − S·W·B`` left out are the
tail of that epoch's stream, a different set every epoch, exactly what ``drop_last`` leaves out on one process).
Rank ``r`` reads the ``r``-th block of ``S·B`` samples; its workers read consecutive sub-blocks of whole batches.
So every rank runs exactly ``S`` steps, and **every sample is read at most once per epoch**, at most ``W·B − 1``
left out, none repeated, whatever the shard sizes and however few shards there are (a block may start or end
inside a shard; several workers may read different parts of one shard).

**With only a total count** (``data.train_samples`` without shard lengths): every (rank, worker) pair gets whole
shards dealt round-robin from the epoch's permutation (a pair with none gets the shard at its position modulo the
number of shards) and reads them in a loop until it has its quota of whole batches; the quotas are those above, so
every rank still runs exactly ``S`` steps. Within an epoch some samples then repeat and some are left out.

**Evaluation** is exact in both cases: with known lengths rank ``r`` reads the ``r``-th of ``W`` near-equal
contiguous blocks of the (unpermuted) stream; otherwise the pairs read disjoint sets of whole shards. Every
validation sample is counted exactly once (the counts are summed over the ranks; no padding, no collective per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from timm_recipes.data.datasets import _derive_seed

__all__ = ["Piece", "WorkerPlan", "eval_plan", "shard_order", "train_plan", "train_steps"]

_SHARD_ORDER = 0x5A  # stream tag of the shard permutation (distinct from the loader's tags 1, 2, 3)


@dataclass(frozen=True)
class Piece:
    """Samples ``start`` … ``stop − 1`` of shard number ``shard`` (``stop=None``: to the end of the shard)."""

    shard: int
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker of one rank reads in one epoch.

    Attributes:
        pieces: the parts of shards, in reading order.
        quota: how many samples it yields (``None``: all of its pieces, once).
        first_position: position on its rank of its first sample (the key of the per-sample seeding).
        cycle: read the pieces again from the first when they are used up before the quota.
    """

    pieces: tuple[Piece, ...]
    quota: int | None
    first_position: int
    cycle: bool


def shard_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The epoch's permutation of the shards: the same on every rank, a different one every epoch.

    Sorting raw PCG64 outputs (a bit stream NumPy keeps stable across versions and machines).
    """
    keys = np.random.PCG64(_derive_seed(seed, _SHARD_ORDER, epoch)).random_raw(num_shards)
    return np.argsort(keys, kind="stable").tolist()


def train_steps(num_samples: int, world_size: int, batch_size: int) -> int:
    """Steps per epoch on every rank: ``num_samples // (world_size · batch_size)``."""
    return num_samples // (world_size * batch_size)


def _split_batches(steps: int, num_workers: int) -> list[int]:
    # The loader takes batch k from worker k % num_workers: worker w makes the batches w, w + W, ...
    return [len(range(w, steps, num_workers)) for w in range(num_workers)]


def _cut(lengths: Sequence[int], order: Sequence[int], start: int, stop: int) -> tuple[Piece, ...]:
    """The pieces of samples ``start … stop − 1`` of the concatenation of the shards in ``order``."""
    pieces, offset = [], 0
    for shard in order:
        n = lengths[shard]
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(Piece(shard, lo - offset, hi - offset))
        offset += n
        if offset >= stop:
            break
    return tuple(pieces)


def train_plan(
    *,
    num_shards: int,
    num_samples: int,
    lengths: Sequence[int] | None,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    num_workers: int,
    batch_size: int,
) -> list[WorkerPlan]:
    """The training plan of every worker of ``rank`` for ``epoch`` (see the module docstring)."""
    if lengths is not None and (len(lengths) != num_shards or sum(lengths) != num_samples):
        raise ValueError(f"lengths must list {num_shards} shard lengths summing to {num_samples}, got {lengths!r}")
    steps = train_steps(num_samples, world_size, batch_size)
    order = shard_order(num_shards, seed, epoch)
    per_rank = steps * batch_size
    plans, position = [], 0
    for w, batches in enumerate(_split_batches(steps, max(1, num_workers))):
        quota = batches * batch_size
        if lengths is not None:
            begin = rank * per_rank + position
            plan = WorkerPlan(_cut(lengths, order, begin, begin + quota), quota, position, cycle=False)
        else:
            slot, slots = rank * max(1, num_workers) + w, world_size * max(1, num_workers)
            mine = order[slot::slots] or [order[slot % num_shards]]
            plan = WorkerPlan(tuple(Piece(s) for s in mine), quota, position, cycle=True)
        plans.append(plan)
        position += quota
    return plans


def eval_plan(
    *, num_shards: int, num_samples: int, lengths: Sequence[int] | None, rank: int, world_size: int, num_workers: int
) -> list[WorkerPlan]:
    """The evaluation plan of every worker of ``rank``: every sample read by exactly one (rank, worker)."""
    workers = max(1, num_workers)
    plans = []
    if lengths is not None:
        order = list(range(num_shards))
        lo, hi = rank * num_samples // world_size, (rank + 1) * num_samples // world_size
        for w in range(workers):
            a, b = lo + w * (hi - lo) // workers, lo + (w + 1) * (hi - lo) // workers
            plans.append(WorkerPlan(_cut(lengths, order, a, b), b - a, a - lo, cycle=False))
        return plans
    slots = world_size * workers
    for w in range(workers):
        mine = range(rank * workers + w, num_shards, slots)
        plans.append(WorkerPlan(tuple(Piece(s) for s in mine), None, 0, cycle=False))
    return plans

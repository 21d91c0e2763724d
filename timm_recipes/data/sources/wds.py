"""WebDataset tar shards as a data source, read through the ``webdataset`` library.

Shards are given as a directory (with an ``_info.json``, or holding ``*<split>*.tar``), a brace pattern
(``imagenet1k-train-{0000..1023}.tar``, relative to the directory or absolute), ``::``-separated lists, or URLs that
``fsspec`` opens (``s3://``, ``gs://``, ``https://``, ...). Samples are grouped by key as ``webdataset`` does
(``000123.jpg`` + ``000123.cls`` [+ ``000123.json``]); the image is the first present member of
``data.image_key`` (timm's ``jpg;png;webp``), the label the integer text in ``data.label_key`` (``cls``).

Split sizes come from an ``_info.json`` in timm's format (``{"splits": {name: {"name", "num_samples", "filenames",
"shard_lengths"}}}``; timm's ImageNet shards call the validation split ``validation``) or from the recipe
(``data.train_samples``, ...). How the shards are dealt over ranks and workers, and what is guaranteed, is in
:mod:`timm_recipes.data.sources.sharding`.

``webdataset``'s own ``WebDataset`` pipeline is not used as a whole: its shard splitting (``split_by_node``,
``split_by_worker``) and ``with_epoch`` give exactly the failure modes above. Its tar reader (``tar_file_iterator``)
and key rule (``base_plus_ext``) are used as they are; members are grouped into samples as its ``group_by_keys`` does.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import posixpath
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from timm_recipes.data.datasets import (
    _WORKERS,
    CorruptImageError,
    _derive_seed,
    _Key,
    _ReportingCollate,
    _SeededDataset,
)
from timm_recipes.data.sources.base import CorruptSampleError, RawSample, check_label, load_sample
from timm_recipes.data.sources.sharding import WorkerPlan, eval_plan, train_plan, train_steps

__all__ = ["ShardLoader", "ShardSplit", "WdsSource", "load_info", "resolve_shards"]

_LOG = logging.getLogger(__name__)
_BUFFER = 0x5B  # stream tag of the per-worker shuffle buffer
INFO_NAMES = ("_info.json", "info.json")


# ----------------------------------------------------------------------------------------------- where the shards are
def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _join(root: str | None, name: str) -> str:
    if root is None or _is_url(name) or os.path.isabs(name):
        return name
    return posixpath.join(root, name) if _is_url(root) else os.path.join(root, name)


def _open(url: str) -> Any:
    if _is_url(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb", buffering=1 << 20)  # fewer read calls under tarfile's 10 KB reads


def load_info(root: str | None) -> dict[str, Any]:
    """The ``_info.json`` (or ``info.json``) of a shard directory, or ``{}`` when it has none."""
    if root is None:
        return {}
    for name in INFO_NAMES:
        path = _join(root, name)
        try:
            with _open(path) as f:
                info = json.load(f)
        except (FileNotFoundError, IsADirectoryError):
            continue
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the shard info file {path!r}: {err}") from err
        if not isinstance(info, dict) or not isinstance(info.get("splits", {}), dict):
            raise ValueError(f"{path!r} is not an _info.json in timm's format ({{'splits': {{name: {{...}}}}}})")
        return info
    return {}


@dataclass(frozen=True)
class ShardSplit:
    """One split's shards: their URLs, their lengths when known, and the sample count of an epoch."""

    name: str
    urls: tuple[str, ...]
    num_samples: int | None
    lengths: tuple[int, ...] | None


def _expand(pattern: str) -> list[str]:
    from webdataset.shardlists import expand_urls

    return list(expand_urls(pattern))


def resolve_shards(
    root: str | None,
    split: str,
    *,
    pattern: str | None = None,
    num_samples: int | None = None,
    key: str = "data",
) -> ShardSplit:
    """Find one split's shards and sample counts.

    Args:
        root: the shard directory or URL prefix (where ``_info.json`` is).
        split: the split's name in ``_info.json`` (and in shard file names).
        pattern: brace pattern, ``::``-list or URL(s) of the shards (default: the ``_info.json`` file names, else
            ``root/*<split>*.tar``).
        num_samples: the epoch's sample count when no ``_info.json`` gives it.
        key: the recipe key of ``pattern`` / ``num_samples`` (named in errors), e.g. ``data.train``.

    Raises:
        FileNotFoundError: no shard found, or a local shard that does not exist (named).
        ValueError: an ``_info.json`` that contradicts itself.
    """
    info = load_info(root)
    entry = info.get("splits", {}).get(split)
    known: dict[str, int] = {}
    if entry is not None:
        files, counts = list(entry.get("filenames", [])), list(entry.get("shard_lengths", []))
        if counts and len(counts) != len(files):
            raise ValueError(
                f"_info.json of {root!r}: split {split!r} lists {len(files)} files but {len(counts)} lengths"
            )
        known = dict(zip(files, counts))
    if pattern:
        names = _expand(pattern)
    elif entry is not None and entry.get("filenames"):
        names = list(entry["filenames"])
    elif root is not None and not _is_url(root) and os.path.isdir(root):
        names = sorted(p.name for p in Path(root).glob(f"*{split}*.tar"))
    else:
        names = []
    if not names:
        raise FileNotFoundError(
            f"{key}_shards: no shards for split {split!r} in {root!r} (no _info.json entry, no *{split}*.tar file): "
            f"set {key}_shards to a brace pattern such as 'train-{{0000..0099}}.tar'"
        )
    urls = tuple(_join(root, n) for n in names)
    missing = [u for u in urls if not _is_url(u) and not os.path.isfile(u.removeprefix("file://"))]
    if missing:
        raise FileNotFoundError(
            f"{key}_shards: {len(missing)} of {len(urls)} shards do not exist, e.g. {missing[0]!r}"
            + (f" (pattern {pattern!r})" if pattern else "")
        )
    lengths: tuple[int, ...] | None = None
    if known:
        lookup = {**known, **{posixpath.basename(k): v for k, v in known.items()}}
        found = [lookup.get(n, lookup.get(posixpath.basename(n))) for n in names]
        if all(c is not None for c in found):
            lengths = tuple(int(c) for c in found)
    total = num_samples
    if total is None and lengths is not None:
        total = sum(lengths)
    if total is None and entry is not None and entry.get("num_samples") and not pattern:
        total = int(entry["num_samples"])
    if lengths is not None and total != sum(lengths):
        if num_samples is not None:  # the recipe's count wins over per-shard lengths that disagree with it
            lengths = None
        else:
            raise ValueError(f"_info.json of {root!r}: split {split!r} has num_samples != sum(shard_lengths)")
    return ShardSplit(split, urls, total, lengths)


# ----------------------------------------------------------------------------------------------- reading
class _Holder:
    """One sample read from a shard (still encoded), presented to :class:`_SeededDataset` as a one-item map dataset:
    the seeded fetch decodes it and applies the pipeline in one step (:func:`~timm_recipes.data.sources.base.
    load_sample`, which decodes a large JPEG at reduced size where the crop allows it, as for an image folder)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.item: tuple[bytes, int, str, str] = (b"", 0, "", "")

    def __len__(self) -> int:
        return 1

    def fetch(self, index: int) -> tuple[tuple[Any, int], list[str]]:
        data, label, url, key = self.item
        return (load_sample(data, self.transform, shard=url, key=key), label), []


class WdsSource(IterableDataset):
    """One split of WebDataset shards (see the module docstring). Build its loader with :meth:`loader`.

    Args:
        split: the shards (:func:`resolve_shards`).
        classes: class names; labels must lie in ``[0, len(classes))``.
        transform: the Albumentations pipeline.
        image_key: ``;``-separated member extensions tried in order for the image.
        label_key: member extension of the integer label.
        skip_corrupt: skip (count and report) corrupt samples and truncated shards instead of raising.
        shuffle_buffer: samples held by each worker's shuffle buffer when training (0 or 1: no shuffle within a
            worker; the shard order is shuffled every epoch anyway).
    """

    def __init__(
        self,
        split: ShardSplit,
        classes: Sequence[str],
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        image_key: str = "jpg;png;webp",
        label_key: str = "cls",
        skip_corrupt: bool = False,
        shuffle_buffer: int = 1000,
    ) -> None:
        self.split, self.classes, self.transform = split, list(classes), transform
        self.image_keys = [k.strip().lower() for k in image_key.split(";") if k.strip()]
        if not self.image_keys:
            raise ValueError(f"data.image_key must name at least one member extension, got {image_key!r}")
        self.label_key = label_key.strip().lower()
        self.skip_corrupt, self.shuffle_buffer = bool(skip_corrupt), int(shuffle_buffer)
        self.corrupt_files: set[str] = set()
        self.origin = f"{len(split.urls)} WebDataset shards of split {split.name!r}"
        # Set in each loader's copy; the epoch lives in shared memory so that persistent workers see every new epoch.
        self._epoch = multiprocessing.RawValue("q", 0)
        self._seed, self._rank, self._world, self._batch, self._train = 0, 0, 1, 1, False

    def __len__(self) -> int:
        if self.split.num_samples is None:
            raise TypeError(f"the number of samples of {self.origin} is unknown")
        return self.split.num_samples

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.origin}, samples={self.split.num_samples}, classes={len(self.classes)})"

    # ------------------------------------------------------------------------------------------- samples
    def _samples(self, url: str, skip: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(key, members)`` of one shard, in storage order, through webdataset's tar reader, from sample ``skip`` on.

        The tar is read by ``webdataset.tariterators.tar_file_iterator``; its members are grouped into samples as
        webdataset's ``group_by_keys`` does (consecutive members with the same key, extension lower-cased, a repeated
        member an error), without the per-member bookkeeping of its multi-shard pipeline. The members of the first
        ``skip`` samples are passed over unread (``select_files``): a worker whose piece starts inside a shard does not
        extract, join and buffer the samples before it.
        """
        from webdataset.tariterators import base_plus_ext, tar_file_iterator

        try:
            stream = _open(url)
        except OSError as err:
            raise CorruptSampleError(url, "-", f"cannot open the shard ({err})") from err
        select = None
        if skip > 0:
            seen: list[Any] = [None, 0]  # the last key, the samples seen

            def select(name: str) -> bool:
                key = base_plus_ext(name)[0]
                if key is not None and key != seen[0]:  # members of one sample are contiguous
                    seen[0], seen[1] = key, seen[1] + 1
                return seen[1] > skip

        with stream:
            key, sample = None, None
            for member in tar_file_iterator(stream, select_files=select):
                prefix, suffix = base_plus_ext(member["fname"])
                if prefix is None:
                    continue
                if prefix != key:
                    if sample is not None:
                        yield key, sample
                    key, sample = prefix, {"__key__": prefix}
                suffix = suffix.lower()
                if suffix in sample:
                    raise CorruptSampleError(url, prefix, f"member {suffix!r} appears twice")
                sample[suffix] = member["data"]
            if sample is not None:
                yield key, sample

    def _parse(self, url: str, key: str, sample: dict[str, Any]) -> tuple[bytes, int]:
        """The encoded image and the checked label of one sample."""
        image_key = next((k for k in self.image_keys if k in sample), None)
        if image_key is None:
            members = ", ".join(sorted(k for k in sample if not k.startswith("__")))
            raise CorruptSampleError(url, key, f"no {';'.join(self.image_keys)} member (has: {members})")
        if self.label_key not in sample:
            members = ", ".join(sorted(k for k in sample if not k.startswith("__")))
            raise CorruptSampleError(url, key, f"no {self.label_key!r} member (data.label_key; has: {members})")
        label = check_label(sample[self.label_key], len(self.classes), shard=url, key=key,
                            what=f"member {self.label_key!r}")  # fmt: skip
        return sample[image_key], label

    def check_first_sample(self) -> None:
        """Read the first sample of the first shard and check its members and label (before anything is written).

        Raises:
            ValueError: the sample lacks the ``data.image_key`` / ``data.label_key`` member (the members it has are
                named), its label is out of range, or the shard cannot be read.
        """
        url = self.split.urls[0]
        try:
            key, sample = next(iter(self._samples(url)))
        except StopIteration:
            raise ValueError(f"shard {url!r} holds no sample") from None
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"shard {url!r} is not a readable tar file ({err})") from err
        members = sorted(k for k in sample if not k.startswith("__"))
        if not any(k in sample for k in self.image_keys):
            raise ValueError(f"data.image_key={';'.join(self.image_keys)!r}: sample {key!r} of shard {url!r} has no "
                             f"such member (members: {', '.join(members)})")  # fmt: skip
        if self.label_key not in sample:
            raise ValueError(f"data.label_key={self.label_key!r}: sample {key!r} of shard {url!r} has no such member "
                             f"(members: {', '.join(members)})")  # fmt: skip
        self._parse(url, key, sample)

    def iter_raw(self) -> Iterator[RawSample]:
        """``(shard#key, encoded image bytes, label)`` of every sample, shard by shard in the split's order."""
        for url in self.split.urls:
            for key, sample in self._samples(url):
                data, label = self._parse(url, key, sample)
                yield f"{url}#{key}", data, label

    def _read_once(self, plan: WorkerPlan, skipped: list[str]) -> Iterator[tuple[str, str, bytes, int, str]]:
        """One pass over a worker's pieces: ``(shard, key, encoded image, label, image member)``, not decoded yet.

        A missing member or a truncated shard is raised (naming the shard and the sample) or, with
        ``skip_corrupt``, recorded in ``skipped``.
        """
        for piece in plan.pieces:
            url = self.split.urls[piece.shard]
            index = piece.start - 1
            try:
                for index, (key, sample) in enumerate(self._samples(url, piece.start), start=piece.start):
                    if piece.stop is not None and index >= piece.stop:
                        break
                    try:
                        data, label = self._parse(url, key, sample)
                    except CorruptImageError:
                        if not self.skip_corrupt:
                            raise
                        skipped.append(f"{url}#{key}")
                        continue
                    member = next(k for k in self.image_keys if k in sample)
                    yield url, key, data, label, member
            except (tarfile.TarError, EOFError, OSError) as err:  # a truncated or damaged shard
                if not self.skip_corrupt:
                    raise CorruptSampleError(url, f"after sample {index}", f"unreadable tar data ({err})") from err
                skipped.append(f"{url} (unreadable after sample {index})")
                continue
            if piece.stop is not None and index + 1 < piece.stop:  # (tarfile reads a cut at a header as the end)
                if self.skip_corrupt:
                    skipped.append(f"{url} (ends before sample #{index + 1} of {piece.stop})")
                    continue
                raise CorruptSampleError(
                    url, f"#{index + 1}", f"the shard ends before sample #{index + 1}, but its length is given as "
                    f"{piece.stop} (_info.json shard_lengths): truncated?"
                )  # fmt: skip

    def _shuffled(self, items: Iterator[Any], rng: random.Random) -> Iterator[Any]:
        """A shuffle buffer of ``shuffle_buffer`` samples (holding the encoded bytes, not decoded images)."""
        size = self.shuffle_buffer
        if size <= 1:
            yield from items
            return
        buffer: list[Any] = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= size:
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[tuple[Any, list[str]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, seed, rank = int(self._epoch.value), self._seed, self._rank
        common = {
            "num_shards": len(self.split.urls),
            "num_samples": self.split.num_samples,
            "lengths": self.split.lengths,
            "rank": rank,
            "world_size": self._world,
            "num_workers": workers,
        }
        if self._train:
            plans = train_plan(**common, seed=seed, epoch=epoch, batch_size=self._batch)
        else:
            plans = eval_plan(**common)
        plan = plans[worker]
        holder = _Holder(self.transform)
        seeded = _SeededDataset(holder, seed)

        def load(url: str, key: str, data: bytes, label: int, position: int) -> Any:
            """Decode and augment one sample with the pipeline seeded from ``(seed, epoch, rank, position)``."""
            holder.item = (data, label, url, key)
            return seeded[_Key(epoch, rank, position, 0)][0]

        skipped: list[str] = []
        pending = None  # one sample held back, so that skips after the last sample are still reported
        rng = random.Random(_derive_seed(seed, _BUFFER, epoch, rank, worker))
        for sample in self._loaded(plan, skipped, rng, load):
            if pending is not None:
                yield pending, skipped[:]  # the skips since the previous sample travel with this one
                skipped.clear()
            pending = sample
        if pending is not None:
            yield pending, skipped[:]

    def _loaded(
        self, plan: WorkerPlan, skipped: list[str], rng: random.Random, load: Callable[..., Any]
    ) -> Iterator[Any]:
        """The samples of one worker's plan, ``load``-ed (decoded and augmented): exactly its quota (or all its samples
        for evaluation)."""
        accepted, numbered = 0, 0
        # Exactly one pass when nothing is skipped and the plan is exact. Otherwise (samples skipped as corrupt, or
        # whole shards dealt with only a total count known) further passes fill the quota, and stop as soon as it is.
        while plan.quota is None or accepted < plan.quota:
            good_in_pass = 0
            raw = self._read_once(plan, skipped)
            if self._train:
                raw = self._shuffled(raw, rng)
            for url, key, data, label, member in raw:
                # The sample's place in the plan's reading order (before the shuffle buffer) keys its augmentation:
                # it depends on (seed, epoch, rank, that place), not on the buffer or the number of workers.
                position = plan.first_position + numbered
                numbered += 1
                try:
                    sample = load(url, f"{key}.{member}", data, label, position)
                except CorruptImageError:
                    if not self.skip_corrupt:
                        raise
                    skipped.append(f"{url}#{key}")
                    continue
                yield sample
                accepted, good_in_pass = accepted + 1, good_in_pass + 1
                if plan.quota is not None and accepted >= plan.quota:
                    return
            if plan.quota is None:
                return
            if good_in_pass == 0:
                shards = [self.split.urls[p.shard] for p in plan.pieces]
                raise RuntimeError(f"no usable sample in the shards {shards} of one worker: cannot fill its quota of "
                                   f"{plan.quota} samples")  # fmt: skip

    # ------------------------------------------------------------------------------------------- the loader
    def loader(
        self,
        *,
        batch_size: int,
        train: bool,
        num_workers: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> ShardLoader:
        """A loader over this split for ``rank`` of ``world_size`` (training: equal steps on every rank)."""
        return ShardLoader(self, batch_size=batch_size, train=train, num_workers=num_workers, seed=seed, rank=rank,
                           world_size=world_size, collate_fn=collate_fn, pin_memory=pin_memory,
                           persistent_workers=persistent_workers)  # fmt: skip


class ShardLoader:
    """Batches of one epoch of a :class:`WdsSource` on one rank; the counterpart of ``SeededLoader``.

    ``len(loader)`` is the number of batches of an epoch on this rank (with ``train=True`` the same on every rank,
    see :mod:`~timm_recipes.data.sources.sharding`). Call :meth:`set_epoch` before each epoch; without it the epoch
    advances after every complete pass. Skipped corrupt samples are logged per epoch and kept in
    :attr:`epoch_corrupt_files`.
    """

    def __init__(
        self,
        source: WdsSource,
        *,
        batch_size: int,
        train: bool,
        num_workers: int,
        seed: int,
        rank: int,
        world_size: int,
        collate_fn: Callable[[list[Any]], Any] | None,
        pin_memory: bool,
        persistent_workers: bool,
    ) -> None:
        for label, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("seed", seed, 0),
                                  ("world_size", world_size, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        n = source.split.num_samples
        if n is None:
            raise ValueError(
                f"the number of samples of {source.origin} is unknown and the schedule needs it: write an _info.json "
                "next to the shards (timm-recipes shard does) or set data.train_samples / data.val_samples"
            )
        if train and train_steps(n, world_size, batch_size) == 0:
            raise ValueError(
                f"data.batch_size={batch_size} x {world_size} processes = a global batch of {batch_size * world_size} "
                f"images, more than the {n} training samples of {source.origin}; lower data.batch_size"
            )
        # The loader's own view of the source (its rank, batch, epoch), so that several loaders can share a source.
        view = copy.copy(source)
        view._epoch = multiprocessing.RawValue("q", 0)
        view._seed, view._rank, view._world, view._batch, view._train = int(seed), rank, world_size, int(batch_size), \
            bool(train)  # fmt: skip
        self._view = view
        self.source, self.dataset, self.seed, self.epoch = source, source, int(seed), 0
        self.rank, self.world_size, self.train = rank, world_size, bool(train)
        self.epoch_corrupt_files: list[str] = []
        self._generator = torch.Generator()
        self.loader = DataLoader(
            view, batch_size=int(batch_size), num_workers=int(num_workers), drop_last=False,
            collate_fn=_ReportingCollate(collate_fn or default_collate), pin_memory=pin_memory,
            persistent_workers=persistent_workers, generator=self._generator,
        )  # fmt: skip

    sampler = None

    @property
    def batch_size(self) -> int:
        return int(self.loader.batch_size)

    @property
    def num_workers(self) -> int:
        return self.loader.num_workers

    @property
    def drop_last(self) -> bool:
        return self.train

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shard order, shuffle and augmentations the next iteration produces."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def _plans(self) -> list[WorkerPlan]:
        s = self.source.split
        common = {
            "num_shards": len(s.urls),
            "num_samples": s.num_samples,
            "lengths": s.lengths,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": max(1, self.num_workers),
        }
        if self.train:
            return train_plan(**common, seed=self.seed, epoch=self.epoch, batch_size=self.batch_size)
        return eval_plan(**common)

    def __len__(self) -> int:
        s = self.source.split
        if self.train:
            return train_steps(s.num_samples, self.world_size, self.batch_size)
        plans = self._plans()
        if s.lengths is not None:
            return sum(-(-p.quota // self.batch_size) for p in plans)
        share = s.num_samples * len([u for p in plans for u in p.pieces]) / max(1, len(s.urls))
        return max(1, -(-round(share) // self.batch_size))  # an estimate, for progress bars only

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self._view._epoch.value = epoch
        self._generator.manual_seed(_derive_seed(self.seed, _WORKERS, epoch))
        skipped: list[str] = []
        batches = 0
        for batch, files in self.loader:
            skipped.extend(files)
            batches += 1
            yield batch
        if self.train and batches != len(self):
            raise RuntimeError(f"rank {self.rank} produced {batches} batches in epoch {epoch}, planned {len(self)}")
        self.epoch_corrupt_files = sorted(set(skipped))
        if skipped:
            self.source.corrupt_files.update(skipped)
            _LOG.warning("epoch %d: skipped %d corrupt samples: %s", epoch, len(skipped),
                         ", ".join(self.epoch_corrupt_files))  # fmt: skip
        if self.epoch == epoch:
            self.epoch = epoch + 1

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, batch_size={self.batch_size}, rank={self.rank}/"
                f"{self.world_size}, train={self.train}, epoch={self.epoch})")  # fmt: skip

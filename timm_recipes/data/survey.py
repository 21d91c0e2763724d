"""Become one with the data: the raw images of every split, counted, measured, hashed and checked.

The first step of Karpathy's recipe ("A Recipe for Training Neural Networks", http://karpathy.github.io/2019/04/25/
recipe/, the lecture's last slides): before any training, look at the data. :func:`survey_splits` reads every raw
image of every split once and reports

* the number of images per class and split (a class with no image is an error),
* the image sizes and aspect ratios (min / median / max and the most common sizes),
* the per-channel mean and std of the pixels (in [0, 1]) next to the recipe's normalisation,
* the files that cannot be read or decoded,
* exact duplicates by content (SHA-1 of the decoded pixels and their shape), within a split and across splits:
  the same image in train and val (or test) is leakage, and inflates the measured accuracy.

Raw images come from :func:`iter_raw_samples`, a small adapter over the data sources the trainer reads: a source
with its own ``iter_raw()`` (``(key, encoded bytes or uint8 H×W×C image, label)``), an image folder (``samples``
paths), the built-in digits (``image(i)``), or any map-style dataset whose ``transform`` can be switched off.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RawSample", "SplitSummary", "folder_raw_samples", "iter_raw_samples", "survey_splits"]


@dataclass(frozen=True)
class RawSample:
    """One raw image: a key naming it, the decoded uint8 H×W×C RGB array (``None`` if unreadable), its label."""

    key: str
    image: np.ndarray | None
    label: int
    error: str | None = None


def _decode(key: str, payload: Any) -> tuple[np.ndarray | None, str | None]:
    from timm_recipes.data.datasets import CorruptImageError, decode_image

    if isinstance(payload, np.ndarray) and payload.ndim == 3 and payload.dtype == np.uint8:
        return payload, None
    try:
        return decode_image(payload, name=key), None
    except (CorruptImageError, TypeError) as err:
        return None, str(err)


def folder_raw_samples(root: str | os.PathLike[str]) -> tuple[list[str], Iterator[RawSample]]:
    """Classes and raw samples of a ``root/<class>/<image>`` folder, read directly (an empty class is kept)."""
    from timm_recipes.data.datasets import IMAGE_EXTENSIONS

    root = Path(root)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))

    def gen() -> Iterator[RawSample]:
        for label, cls in enumerate(classes):
            for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        path = os.path.join(dirpath, f)
                        image, err = _decode(path, path)
                        yield RawSample(os.path.relpath(path, root), image, label, err)

    return classes, gen()


def _chosen(n: int, limit: int | None) -> Sequence[int]:
    """All of ``range(n)``, or ``limit`` indices spread evenly over it (every class of a sorted folder is seen)."""
    if limit is None or limit >= n:
        return range(n)
    return sorted({int(i) for i in np.linspace(0, n - 1, limit)})


def iter_raw_samples(dataset: Any, limit: int | None = None) -> Iterator[RawSample]:
    """The raw (untransformed) images of ``dataset``, whatever source it is (see the module docstring).

    Args:
        dataset: A dataset of any source the trainer reads.
        limit: At most this many images: spread evenly over a map-style dataset, the first ones of a stream.
    """
    from timm_recipes.train.fixres import with_transform

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 or None, got {limit!r}")
    if callable(getattr(dataset, "iter_raw", None)):
        for n, (key, payload, label) in enumerate(dataset.iter_raw()):
            if limit is not None and n >= limit:
                return
            image, err = _decode(str(key), payload)
            yield RawSample(str(key), image, int(label), err)
        return
    if hasattr(dataset, "samples") and hasattr(dataset, "root"):
        for i in _chosen(len(dataset.samples), limit):
            path, label = dataset.samples[i]
            image, err = _decode(path, path)
            yield RawSample(os.path.relpath(path, dataset.root), image, int(label), err)
        return
    if callable(getattr(dataset, "image", None)) and hasattr(dataset, "targets"):
        ids = getattr(dataset, "indices", range(len(dataset)))
        for i in _chosen(len(dataset), limit):
            yield RawSample(f"digits:{int(ids[i])}", dataset.image(i), int(dataset.targets[i]))
        return
    plain = with_transform(dataset, None)
    for i in _chosen(len(plain), limit):
        image, label = plain[i]
        image = np.asarray(image)
        yield RawSample(str(i), image if image.dtype == np.uint8 and image.ndim == 3 else None, int(label),
                        None if image.dtype == np.uint8 and image.ndim == 3 else "not a uint8 H×W×C image")  # fmt: skip


def _content_hash(image: np.ndarray) -> str:
    h = hashlib.sha1(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


@dataclass
class SplitSummary:
    """What :func:`survey_splits` found in one split."""

    name: str
    count: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)
    mean: list[float] | None = None
    std: list[float] | None = None
    duplicates_within: list[list[str]] = field(default_factory=list)


def survey_splits(
    splits: Mapping[str, tuple[Sequence[str], Iterator[RawSample]]], *, max_listed: int = 10
) -> dict[str, Any]:
    """Counts, sizes, channel statistics, unreadable files and duplicates of every split.

    Args:
        splits: ``{split name: (class names, raw samples)}``.
        max_listed: How many unreadable files and duplicate groups to list per split (all are counted).

    Returns:
        ``{"splits": {name: SplitSummary as dict}, "leaks": [{"splits": [a, b], "count", "examples"}],
        "previews": {name: first raw samples}}``; the caller decides what fails.
    """
    summaries: dict[str, SplitSummary] = {}
    hashes: dict[str, dict[str, list[str]]] = {}
    previews: dict[str, list[RawSample]] = {}
    for name, (classes, samples) in splits.items():
        s = SplitSummary(name, per_class=dict.fromkeys(classes, 0))
        counts: Counter[int] = Counter()
        heights, widths, ratios, shapes = [], [], [], Counter()
        px_sum = px_sq = None
        n_px = 0
        seen: dict[str, list[str]] = {}
        shown: list[RawSample] = []
        for sample in samples:
            s.count += 1
            counts[sample.label] += 1
            if sample.image is None:
                if len(s.unreadable) < max_listed:
                    s.unreadable.append({"key": sample.key, "error": sample.error or "unreadable"})
                s.sizes["unreadable_count"] = s.sizes.get("unreadable_count", 0) + 1
                continue
            img = sample.image
            h, w = img.shape[:2]
            heights.append(h)
            widths.append(w)
            ratios.append(w / h)
            shapes[f"{w}x{h}"] += 1
            x = img.reshape(-1, img.shape[2]).astype(np.float64) / 255.0
            px_sum = x.sum(0) if px_sum is None else px_sum + x.sum(0)
            px_sq = (x * x).sum(0) if px_sq is None else px_sq + (x * x).sum(0)
            n_px += x.shape[0]
            seen.setdefault(_content_hash(img), []).append(sample.key)
            if len(shown) < 16:
                shown.append(sample)
        for label, n in counts.items():
            cname = classes[label] if 0 <= label < len(classes) else str(label)
            s.per_class[cname] = n
        s.sizes.update(
            {
                "height": _spread(heights), "width": _spread(widths), "aspect_ratio": _spread(ratios),
                "most_common": dict(shapes.most_common(5)), "distinct": len(shapes),
            }
        )  # fmt: skip
        s.sizes.setdefault("unreadable_count", 0)
        if n_px:
            mean = px_sum / n_px
            s.mean = [float(v) for v in mean]
            s.std = [float(v) for v in np.sqrt(np.maximum(px_sq / n_px - mean * mean, 0.0))]
        groups = [keys for keys in seen.values() if len(keys) > 1]
        s.duplicates_within = [keys[:5] for keys in groups[:max_listed]]
        s.sizes["duplicate_groups"] = len(groups)
        s.sizes["duplicate_images"] = sum(len(g) - 1 for g in groups)
        summaries[name] = s
        hashes[name] = seen
        previews[name] = shown
    leaks = []
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(hashes[a]) & set(hashes[b]))
            if common:
                examples = [[hashes[a][h][0], hashes[b][h][0]] for h in common[:max_listed]]
                leaks.append({"splits": [a, b], "count": len(common), "examples": examples})
    return {"splits": {k: vars(v) for k, v in summaries.items()}, "leaks": leaks, "previews": previews}

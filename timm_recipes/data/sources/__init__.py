"""Data sources: where a recipe's images come from, behind one small interface (see :mod:`.base`).

``data.dataset`` picks one:

=========  ==============================================================  ==========================================
source     what ``data.root`` is                                           how it shards under DDP
=========  ==============================================================  ==========================================
folder     ``root/{train,val[,test]}/<class>/<image>`` (ImageNet layout)   map-style: the samplers
digits     (unused) scikit-learn's handwritten digits, built in            map-style: the samplers
wds        a directory / URL prefix of WebDataset tar shards                iterable: :mod:`.sharding`
hfds       a local ``datasets`` directory, or a Hub dataset name            map-style: the samplers
=========  ==============================================================  ==========================================

The folder and digits sources are :class:`~timm_recipes.data.datasets.ImageFolderDataset` and
:class:`~timm_recipes.data.datasets.DigitsDataset`; :func:`iter_raw` gives the raw samples of any of the four.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from timm_recipes.data.sources.base import CorruptSampleError, RawSample, Source, check_label, decode_sample

__all__ = [
    "SOURCES",
    "CorruptSampleError",
    "RawSample",
    "Source",
    "build_split",
    "check_label",
    "decode_sample",
    "iter_raw",
    "source_classes",
]

SOURCES = ("folder", "digits", "wds", "hfds")
_ROLES = ("train", "val", "test")
_DEFAULT_SPLITS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}


def iter_raw(dataset: Any) -> Iterator[RawSample]:
    """``(key, encoded bytes or uint8 H×W×3 image, label)`` of every sample of any source, without augmentation."""
    from timm_recipes.data.datasets import DigitsDataset, ImageFolderDataset

    if hasattr(dataset, "iter_raw"):
        yield from dataset.iter_raw()
    elif isinstance(dataset, ImageFolderDataset):
        for path, label in dataset.samples:
            with open(path, "rb") as f:
                yield path, f.read(), int(label)
    elif isinstance(dataset, DigitsDataset):
        for i in range(len(dataset)):
            yield f"digits/{dataset.split}/{int(dataset.indices[i])}", dataset.image(i), int(dataset.targets[i])
    else:
        raise TypeError(f"no raw samples for {type(dataset).__name__}")


def _wds_classes(d: Any, num_classes: int) -> list[str]:
    from timm_recipes.data.sources.wds import load_info

    info = load_info(d.root)
    classes = info.get("classes")
    if isinstance(classes, list) and classes:
        return [str(c) for c in classes]
    return [str(i) for i in range(num_classes)]


def source_classes(recipe: Any) -> list[str] | None:
    """The class names of a ``wds`` / ``hfds`` recipe's data (``None`` for other sources)."""
    d = recipe.data
    if d.dataset == "wds":
        return _wds_classes(d, recipe.model.num_classes)
    if d.dataset == "hfds":
        return list(build_split(recipe, "train", None).classes)
    return None


def build_split(recipe: Any, role: str, transform: Any, *, required: bool = True) -> Any:
    """The ``role`` split (``"train"``, ``"val"`` or ``"test"``) of a ``wds`` or ``hfds`` recipe, with ``transform``.

    Returns ``None`` for an optional split (``required=False``) that the data do not have.

    Raises:
        ValueError: a bad key (named) or data that do not fit the recipe.
        FileNotFoundError: missing shards, directory, dataset or split (named).
    """
    if role not in _ROLES:
        raise ValueError(f"role must be one of {_ROLES}, got {role!r}")
    d = recipe.data
    explicit = getattr(d, f"{role}_split")
    names = (explicit,) if explicit else _DEFAULT_SPLITS[role]
    last: Exception | None = None
    for name in names:
        try:
            if d.dataset == "wds":
                return _wds_split(recipe, role, name, transform)
            if d.dataset == "hfds":
                return _hfds_split(recipe, name, transform)
            raise ValueError(f"data.dataset={d.dataset!r} is not a wds or hfds source")
        except FileNotFoundError as err:
            last = err
    if not required and not explicit:
        return None
    raise FileNotFoundError(
        f"data.{role}_split: {last}" if explicit else f"{last} (tried split names {list(names)}; set data.{role}_split)"
    )


def _wds_split(recipe: Any, role: str, name: str, transform: Any) -> Any:
    from timm_recipes.data.sources.wds import WdsSource, resolve_shards

    d = recipe.data
    pattern, count = getattr(d, f"{role}_shards"), getattr(d, f"{role}_samples")
    split = resolve_shards(d.root, name, pattern=pattern, num_samples=count, key=f"data.{role}")
    if split.num_samples is None:
        raise ValueError(
            f"data.{role}_samples: the number of samples of the {role} shards ({len(split.urls)} shards of split "
            f"{name!r}) is unknown and the schedule needs it: give it as data.{role}_samples=N, or put an _info.json "
            "with the split's num_samples and shard_lengths next to the shards (timm-recipes shard writes one)"
        )
    source = WdsSource(
        split, _wds_classes(d, recipe.model.num_classes), transform, image_key=d.image_key, label_key=d.label_key,
        skip_corrupt=d.skip_corrupt, shuffle_buffer=d.shuffle_buffer,
    )  # fmt: skip
    source.check_first_sample()
    return source


def _hfds_split(recipe: Any, name: str, transform: Any) -> Any:
    from timm_recipes.data.sources.hfds import HfImageDataset, load_hf_split

    d = recipe.data
    ds = load_hf_split(d.root, name)
    return HfImageDataset(
        ds, transform, image_column=d.image_column, label_column=d.label_column,
        num_classes=recipe.model.num_classes, skip_corrupt=d.skip_corrupt, origin=f"{d.root} [{name}]",
    )  # fmt: skip

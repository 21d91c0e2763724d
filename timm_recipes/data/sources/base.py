"""What every data source shares: one decoding helper, the raw-sample view, the errors that name shard and key.

A source is one split of one kind of data (an image folder, the built-in digits, WebDataset shards, a Hugging Face
dataset) behind one small interface:

* ``classes``: the class names, index ``i`` is label ``i`` (they become the export's label names);
* ``len(source)``: the number of samples of an epoch (the schedule needs it);
* ``iter_raw()``: ``(key, encoded bytes or uint8 H×W×3 image, label)`` for every sample in storage order, without
  augmentation, for sanity checks and conversions;
* how it shards under DDP: map-style sources (folder, digits, Hugging Face) are ``torch`` datasets with
  ``fetch(index) -> (sample, skipped)`` and are cut by the samplers of :mod:`timm_recipes.train.distributed`;
  iterable sources (shards) build their own loader and say how they deal their shards over ranks and workers
  (:mod:`timm_recipes.data.sources.sharding`).

Every image of every source is decoded by :func:`decode_sample` (one place, so a faster decoder changes all of them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from timm_recipes.data.datasets import CorruptImageError, decode_image

__all__ = ["CorruptSampleError", "RawSample", "Source", "check_label", "decode_sample", "load_sample"]

RawSample = tuple[str, "bytes | np.ndarray", int]
"""``(key, encoded image bytes or a uint8 H×W×3 RGB array, label)``."""


class CorruptSampleError(CorruptImageError):
    """A sample that cannot be used: undecodable image, missing member or column, truncated shard.

    ``path`` names the shard (or file) and ``key`` the sample in it.
    """

    def __init__(self, path: str, key: str, reason: str) -> None:
        ValueError.__init__(self, f"shard {path!r}, sample {key!r}: {reason}")
        self.path, self.key = path, key


@runtime_checkable
class Source(Protocol):
    """The interface of one split of a data source (see the module docstring)."""

    classes: list[str]

    def __len__(self) -> int: ...

    def iter_raw(self) -> Iterator[RawSample]: ...


def decode_sample(data: bytes | np.ndarray, *, shard: str, key: str) -> np.ndarray:
    """Decode one sample's image (encoded bytes, or an already decoded uint8 array) to uint8 H×W×3 RGB.

    The single decoding helper of all sources: it calls :func:`timm_recipes.data.datasets.decode_image`.

    Raises:
        CorruptSampleError: the bytes are not a decodable image (naming ``shard`` and ``key``).
    """
    if isinstance(data, np.ndarray) and data.ndim == 3:
        if data.dtype != np.uint8 or data.shape[2] != 3:
            raise CorruptSampleError(shard, key, f"expected a uint8 H×W×3 image, got {data.dtype} {data.shape}")
        return np.ascontiguousarray(data)
    try:
        return decode_image(data, name=f"{shard}#{key}")
    except CorruptImageError as err:
        raise CorruptSampleError(shard, key, str(err)) from err


def load_sample(data: bytes | np.ndarray, transform: Any, *, shard: str, key: str) -> Any:
    """Decode one sample and apply its (already seeded) pipeline: encoded bytes go through
    :func:`~timm_recipes.data.decode.decode_and_transform`, which decodes a JPEG at reduced size where the crop
    provably allows it; an already decoded array goes through :func:`decode_sample`.

    Raises:
        CorruptSampleError: the bytes are not a decodable image (naming ``shard`` and ``key``).
    """
    from timm_recipes.data.decode import decode_and_transform

    if isinstance(data, np.ndarray):
        image = decode_sample(data, shard=shard, key=key)
        return image if transform is None else transform(image=image)["image"]
    try:
        return decode_and_transform(bytes(data), transform, f"{shard}#{key}")
    except CorruptImageError as err:
        raise CorruptSampleError(shard, key, str(err)) from err


def check_label(value: Any, num_classes: int, *, shard: str, key: str, what: str) -> int:
    """``value`` as a class index in ``[0, num_classes)``.

    Raises:
        ValueError: not an integer, or out of range (naming the shard, the sample and where the label came from).
    """
    try:
        label = int(value.decode() if isinstance(value, (bytes, bytearray)) else value)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise ValueError(
            f"shard {shard!r}, sample {key!r}: {what} must be an integer class index, got {value!r}"
        ) from None
    if not 0 <= label < num_classes:
        raise ValueError(
            f"shard {shard!r}, sample {key!r}: {what}={label} is outside [0, {num_classes}) ({num_classes} classes)"
        )
    return label

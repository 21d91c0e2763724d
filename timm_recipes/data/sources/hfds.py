"""A Hugging Face ``datasets`` dataset as a data source (map-style: the DDP samplers cut it).

``data.root`` is a local directory that ``datasets.load_dataset`` understands (an ``imagefolder`` layout, parquet or
arrow files, e.g. ``train-*.parquet``), a directory written by ``Dataset.save_to_disk``, or the name of a dataset
repository on the Hub (``org/name``, fetched through ``HF_ENDPOINT``, so a mirror or the test suite's server can
stand in). The image column (``data.image_column``) holds ``datasets.Image`` values or encoded bytes; it is read
undecoded and decoded by :func:`~timm_recipes.data.sources.base.load_sample`, like every other source. The label
column (``data.label_column``) holds class indices; a ``ClassLabel`` feature gives the class names (which become the
export's label names), otherwise the classes are ``"0"`` … ``str(model.num_classes − 1)``. All labels are checked
to lie in range before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from timm_recipes.data.datasets import fetch_skipping_corrupt
from timm_recipes.data.sources.base import CorruptSampleError, RawSample, load_sample

__all__ = ["HfImageDataset", "load_hf_split"]


def _is_saved_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_hf_split(root: str, split: str) -> Any:
    """One split of a local directory or a Hub dataset as a ``datasets.Dataset``.

    Raises:
        FileNotFoundError: no such directory or Hub dataset, or no such split (the available ones are named).
    """
    import datasets

    path = Path(root)
    try:
        if path.is_dir() and _is_saved_to_disk(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise FileNotFoundError(f"data.root {root!r} has no split {split!r} (splits: {sorted(loaded)})")
                return loaded[split]
            return loaded
        if not path.is_dir() and (root.startswith((".", "/", "~")) or os.sep in root.strip("/").replace("/", "", 1)):
            raise FileNotFoundError(f"data.root {root!r} is neither a local directory nor a Hub dataset name org/name")
        return datasets.load_dataset(str(path) if path.is_dir() else root, split=split)
    except ValueError as err:  # datasets: "Unknown split ..."
        if "split" in str(err).lower():
            raise FileNotFoundError(f"data.root {root!r}: {err}") from err
        raise
    except datasets.exceptions.DatasetNotFoundError as err:
        raise FileNotFoundError(f"data.root {root!r}: no such dataset on the Hub ({err})") from err


class HfImageDataset(Dataset):
    """One split of a Hugging Face dataset: decoded images and class indices, with a pipeline.

    Args:
        ds: the ``datasets.Dataset``.
        transform: the Albumentations pipeline.
        image_column: the image column (``datasets.Image`` or bytes).
        label_column: the class-index column (``ClassLabel`` or integers).
        num_classes: the number of classes when the label column is not a ``ClassLabel``.
        skip_corrupt: return the next sample in place of an undecodable one and report it (as
            :class:`~timm_recipes.data.datasets.ImageFolderDataset` does).
        origin: how to name the data in messages.

    Raises:
        ValueError: an unknown column (the existing ones are named) or labels outside ``[0, num_classes)``.
    """

    def __init__(
        self,
        ds: Any,
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        image_column: str = "image",
        label_column: str = "label",
        num_classes: int | None = None,
        skip_corrupt: bool = False,
        origin: str = "Hugging Face dataset",
    ) -> None:
        import datasets

        for key, column in (("data.image_column", image_column), ("data.label_column", label_column)):
            if column not in ds.column_names:
                raise ValueError(f"{key}: {origin} has no column {column!r} (columns: {ds.column_names})")
        feature = ds.features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            classes = list(feature.names)
        elif num_classes is not None:
            classes = [str(i) for i in range(num_classes)]
        else:
            raise ValueError(
                f"data.label_column {label_column!r} is not a ClassLabel: the number of classes is unknown"
            )
        if isinstance(ds.features[image_column], datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))
        labels = np.asarray(ds.data.column(label_column).to_numpy(zero_copy_only=False))
        if labels.dtype.kind not in "iu":
            raise ValueError(f"data.label_column {label_column!r} of {origin} holds {labels.dtype}, not class indices")
        bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
        if bad.size:
            raise ValueError(
                f"data.label_column {label_column!r} of {origin}: {bad.size} labels outside [0, {len(classes)}), "
                f"e.g. row {int(bad[0])} has {int(labels[bad[0]])}"
            )
        self.ds, self.transform, self.classes = ds, transform, classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.image_column, self.label_column = image_column, label_column
        self.targets = labels.astype(np.int64)
        self.skip_corrupt, self.origin = bool(skip_corrupt), origin
        self.corrupt_files: set[str] = set()

    def __len__(self) -> int:
        return len(self.ds)

    def _raw(self, index: int) -> bytes | np.ndarray:
        value = self.ds[index][self.image_column]
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                return value["bytes"]
            if value.get("path"):
                with open(value["path"], "rb") as f:
                    return f.read()
            raise CorruptSampleError(self.origin, f"row {index}", f"column {self.image_column!r} is empty")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if hasattr(value, "convert"):  # a PIL image (a dataset cast by the user)
            return np.asarray(value.convert("RGB"), dtype=np.uint8)
        raise CorruptSampleError(self.origin, f"row {index}", f"column {self.image_column!r} holds {type(value)}")

    def iter_raw(self) -> Iterator[RawSample]:
        """``(row key, encoded bytes or uint8 image, label)`` of every row, in order."""
        for i in range(len(self)):
            yield f"row {i}", self._raw(i), int(self.targets[i])

    def fetch(self, index: int) -> tuple[tuple[Any, int], list[str]]:
        """The sample at ``index`` and the rows skipped as corrupt to produce it."""

        def load(row: int) -> tuple[Any, int]:
            image = load_sample(self._raw(row), self.transform, shard=self.origin, key=f"row {row}")
            return image, int(self.targets[row])

        return fetch_skipping_corrupt(self, index, load, lambda row: f"{self.origin}#row {row}", unit="rows",
                                      where=f"of {self.origin}")  # fmt: skip

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.fetch(index)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.origin}, rows={len(self)}, classes={len(self.classes)})"

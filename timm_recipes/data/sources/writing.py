"""Writing an image folder (ImageNet layout) as WebDataset shards with an ``_info.json`` in timm's format.

``root/{train,val,test}/<class>/<image>`` becomes ``out/<name>-<split>-<NNNNNN>.tar`` (``val`` is named
``validation``, as in timm's ImageNet shards) with, per sample, the file's original encoded bytes (no re-encoding)
under its extension (``jpg`` for ``.jpg``/``.jpeg``) and the class index as text in ``cls``; with
``json_sidecar=True`` also a ``json`` member (``{"filename": "<class>/<file>", "label": i, "class": "<class>"}``).
It is off by default: reading parses one tar header per member in Python, and two members per sample keep shards
close to a folder's speed (``benchmarks/shards.py``). Headers are plain ustar (integer mtime 0: no PAX records).
``out/_info.json`` lists per split its name, ``num_samples``, ``filenames`` and ``shard_lengths``, plus the class
names (``classes``), so that both timm's reader (``timm.data.create_dataset("wds/<name>", root=out,
split="train")``) and ours know every epoch's length exactly.

The samples of each split are written in the order of a permutation drawn from ``seed`` (sorting raw PCG64 outputs,
stable across NumPy versions), so shards mix the classes and the same folder and seed give the same bytes. The
shards go to a temporary sibling folder renamed into place at the end: an interrupted run leaves no partial output,
and an existing non-empty ``out`` is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from timm_recipes.data.datasets import ImageFolderDataset, _derive_seed

__all__ = ["SPLIT_NAMES", "write_shards"]

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
"""Sub-folder → split name in the shards (timm's ImageNet shards call the validation split ``validation``)."""


def _member_ext(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return "jpg" if ext == "jpeg" else ext


def write_shards(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    samples_per_shard: int = 1000,
    seed: int = 0,
    json_sidecar: bool = False,
    progress: bool = True,
) -> dict:
    """Convert the ``train``/``val``/``test`` sub-folders of ``root`` to shards in ``out``.

    Args:
        root: the image folder (``root/train/<class>/...``; ``val`` and ``test`` optional).
        out: the shard folder to create (must not exist, or be empty).
        name: the shard file prefix (default: the name of ``root``).
        samples_per_shard: samples per tar file (the last shard of a split holds the rest).
        seed: the seed of the sample order.
        json_sidecar: also write a ``json`` member per sample (original file name, label, class name).
        progress: show a progress bar.

    Returns:
        The ``_info.json`` written.

    Raises:
        FileNotFoundError: ``root`` has no ``train/`` folder, or a class folder without images.
        ValueError: ``out`` exists and is not empty, bad arguments, or splits whose classes differ.
    """
    import webdataset as wds
    from tqdm import tqdm

    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be an integer >= 1, got {samples_per_shard!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    root, out = Path(root), Path(out)
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"{str(root)!r} has no train/ folder (expected root/train/<class>/<image>)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"the output {str(out)!r} exists and is not empty: refusing to overwrite it")
    name = name or root.resolve().name
    if not name or "/" in name or "." in name:
        raise ValueError(f"name must be a file name prefix without '/' or '.', got {name!r}")
    folders = {split: ImageFolderDataset(root / split) for split in SPLIT_NAMES if (root / split).is_dir()}
    classes = folders["train"].classes
    for split, ds in folders.items():
        if ds.classes != classes:
            raise ValueError(f"the classes of {str(root / split)!r} differ from those of {str(root / 'train')!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    info: dict = {"name": name, "classes": classes, "splits": {}}
    total = sum(len(ds) for ds in folders.values())
    try:
        with tqdm(total=total, unit="img", desc="shard", disable=not progress) as bar:
            for split, ds in folders.items():
                split_name = SPLIT_NAMES[split]
                keys = np.random.PCG64(_derive_seed(seed, 0x5C, list(SPLIT_NAMES).index(split))).random_raw(len(ds))
                order = np.argsort(keys, kind="stable").tolist()
                filenames, lengths = [], []
                for start in range(0, len(order), samples_per_shard):
                    filename = f"{name}-{split_name}-{len(filenames):06d}.tar"
                    chunk = order[start : start + samples_per_shard]
                    with open(tmp / filename, "wb") as f, wds.TarWriter(f, mtime=0) as sink:
                        for pos, index in enumerate(chunk, start):
                            path, label = ds.samples[index]
                            with open(path, "rb") as image:
                                data = image.read()
                            sample = {"__key__": f"{pos:08d}", _member_ext(path): data, "cls": str(int(label))}
                            if json_sidecar:
                                rel = os.path.relpath(path, ds.root).replace(os.sep, "/")
                                sample["json"] = json.dumps({"filename": rel, "label": int(label),
                                                             "class": classes[label]})  # fmt: skip
                            sink.write(sample)
                            bar.update(1)
                    filenames.append(filename)
                    lengths.append(len(chunk))
                info["splits"][split_name] = {"name": split_name, "num_samples": len(ds), "filenames": filenames,
                                              "shard_lengths": lengths}  # fmt: skip
        with open(tmp / "_info.json", "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info

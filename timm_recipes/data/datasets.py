"""Images on disk and the built-in real data, decoded with OpenCV, loaded with seeded augmentations.

* :func:`decode_image` turns a file or its bytes into uint8 H×W×3 RGB (grey, palette, RGBA, CMYK and 16-bit
  inputs are converted; a corrupt file raises :class:`CorruptImageError` naming it).
* :class:`ImageFolderDataset` reads the class-per-sub-folder layout of ImageNet and torchvision's ``ImageFolder``.
* :class:`DigitsDataset` is scikit-learn's handwritten digits (1,797 real 8×8 scans) with fixed splits: real
  data that needs no download, for the demo and the tests. :func:`load_sample_photos` and
  :func:`sample_jpeg_bytes` give scikit-learn's two real photos as arrays and as JPEG bytes.
* :func:`create_loader` wraps ``torch.utils.data.DataLoader`` so that every sample's augmentation is seeded from
  ``(seed, epoch, rank, position)``: distinct across workers and epochs, reproducible, and independent of the
  number of workers. An unseeded ``A.Compose`` is copied into every forked worker with the same random state and
  so repeats the same augmentations in every worker, and again in every epoch when workers are restarted.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, default_collate

from timm_recipes.data.decode import decode_and_transform
from timm_recipes.data.seeding import NumpyRandom, keyed_generator, reseed

__all__ = [
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "DigitsDataset",
    "ImageFolderDataset",
    "SeededLoader",
    "create_loader",
    "decode_image",
    "load_sample_photos",
    "sample_jpeg_bytes",
    "sample_photo_paths",
]

_LOG = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pbm",
)

# OpenCV >= 4.11 decodes straight to RGB; older versions decode BGR and convert.
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


# --------------------------------------------------------------------------------------------------- decoding
class CorruptImageError(ValueError):
    """An image file that cannot be read or decoded. ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot decode image {path!r}: {reason}")
        self.path = path


def _jpeg_truncated(data: bytes) -> bool:
    # A JPEG ends its last scan (SOS, FF DA) with EOI (FF D9). Entropy-coded data byte-stuffs 0xFF, so EOI cannot
    # occur inside a scan. Older OpenCV builds decode a truncated file to a half-grey image without error.
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def decode_image(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray,
    *,
    apply_exif_orientation: bool = False,
    name: str | None = None,
    reduce: int = 1,
) -> np.ndarray:
    """Decode an image file (or its bytes) with OpenCV into a uint8 H×W×3 RGB array.

    Grey and palette images are expanded to RGB, an alpha channel is dropped (as PIL's ``convert("RGB")`` does),
    CMYK JPEGs are converted and 16-bit images are reduced to 8 bits (the high byte).

    Args:
        path_or_bytes: a file path, or the encoded bytes (also as a 1-D uint8 array).
        apply_exif_orientation: rotate by the EXIF orientation tag. Off by default, as in timm's and
            torchvision's loaders, so that training and published evaluation numbers see the same pixels.
        name: how to name the image in error messages when bytes are given.
        reduce: 1, 2, 4 or 8: decode a JPEG at that fraction of its size with libjpeg's DCT scaling (OpenCV
            ``IMREAD_REDUCED_COLOR_*``; other formats are decoded and then reduced by OpenCV). Use it through
            :func:`~timm_recipes.data.decode.decode_and_transform`, which decides when it is safe.

    Returns:
        A C-contiguous uint8 array of shape (H, W, 3), RGB.

    Raises:
        CorruptImageError: the file cannot be read, is truncated, or is not a decodable image.
        TypeError: ``path_or_bytes`` has an unsupported type.
    """
    if isinstance(path_or_bytes, (str, os.PathLike)):
        label = os.fspath(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as f:
                data = f.read()
        except OSError as err:
            raise CorruptImageError(label, f"unreadable ({err.strerror or err})") from err
    elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        label, data = name or "<bytes>", bytes(path_or_bytes)
    elif isinstance(path_or_bytes, np.ndarray) and path_or_bytes.dtype == np.uint8 and path_or_bytes.ndim == 1:
        label, data = name or "<bytes>", path_or_bytes.tobytes()
    else:
        raise TypeError(f"path_or_bytes must be a path, bytes or a 1-D uint8 array, got {type(path_or_bytes).__name__}")
    if not data:
        raise CorruptImageError(label, "empty file")
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        raise CorruptImageError(label, "truncated JPEG (no end-of-image marker after the last scan)")
    flags = cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB
    if reduce != 1:
        if reduce not in _REDUCED:
            raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")
        flags |= _REDUCED[reduce] & ~cv2.IMREAD_COLOR  # the scaling bits only (they combine with RGB output)
    if not apply_exif_orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as err:
        raise CorruptImageError(label, f"OpenCV error: {err}") from err
    if image is None or image.size == 0:
        raise CorruptImageError(label, "not a decodable image (corrupt, truncated or unknown format)")
    if _IMREAD_RGB is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise CorruptImageError(path, f"unreadable ({err.strerror or err})") from err


def fetch_skipping_corrupt(
    dataset: Any,
    index: int,
    load: Callable[[int], tuple[Any, int]],
    name: Callable[[int], str],
    *,
    unit: str,
    where: str,
) -> tuple[tuple[Any, int], list[str]]:
    """``load(index)`` of a map-style dataset, or with ``dataset.skip_corrupt`` the next loadable sample after it.

    The one skip rule of every map-style source: a corrupt sample (``CorruptImageError``) is raised, or skipped for
    the following one (wrapping around), recorded by ``name`` in ``dataset.corrupt_files`` and returned beside the
    sample, so that batches keep their size and the loader can report it.

    Raises:
        IndexError: ``index`` outside ``[-len, len)``.
        RuntimeError: every sample is corrupt.
    """
    n = len(dataset)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} {unit}")
    index %= n
    skipped: list[str] = []
    for attempt in range(n):
        i = (index + attempt) % n
        try:
            return load(i), skipped
        except CorruptImageError:
            if not dataset.skip_corrupt:
                raise
            skipped.append(name(i))
            dataset.corrupt_files.add(skipped[-1])
    raise RuntimeError(f"all {n} images {where} are corrupt")


# ------------------------------------------------------------------------------------------- image folders
class ImageFolderDataset(Dataset):
    """Images in one sub-folder per class, the layout of ImageNet and of torchvision's ``ImageFolder``.

    ``root/<class>/**/<image>``: class names are the sorted names of the sub-folders of ``root`` (hidden ones,
    starting with ".", are ignored) and map to indices 0…C−1 in that order, so a train and a val folder with the
    same classes get the same mapping. Images are found recursively, sorted, by extension (case-insensitive),
    decoded with :func:`decode_image` and passed through ``transform`` (an Albumentations pipeline, called as
    ``transform(image=img)["image"]``).

    Links and special files: symbolic links (to files or folders) are followed only when their target lies inside
    the class folder that holds the link; each real file is counted once (under the first path that reaches it,
    in sorted order) and each real folder visited once, so a loop cannot hang the scan. A link that leaves its class
    folder (to another class, to ``root`` or its parents, anywhere else), dangles or loops is ignored and reported
    in :attr:`skipped_links` and one warning. Two class folders that are the same folder (or nested) are refused.
    Only regular files are images: a FIFO, socket or device named ``*.jpg`` is never opened.

    Corrupt files: by default reading one raises :class:`CorruptImageError` naming the file. With
    ``skip_corrupt=True`` the next sample in index order (wrapping around) is returned in its place, with its own
    label, so batches keep their size; the skipped files are recorded in :attr:`corrupt_files`. Worker processes
    have their own copies of the dataset: :func:`create_loader` carries the skipped files from the workers back
    to this object and logs them at the end of every epoch.

    Attributes:
        classes: sorted class names.
        class_to_idx: class name → index.
        samples: ``(path, class_index)`` per image.
        targets: the class index per image.
        corrupt_files: the files found corrupt so far (this process plus what the loader reported).
        skipped_links: the links that were not followed (see above).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        skip_corrupt: bool = False,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root {str(self.root)!r} does not exist or is not a directory")
        exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        if not exts:
            raise ValueError("extensions must name at least one file extension, got an empty sequence")
        self.transform = transform
        self.skip_corrupt = bool(skip_corrupt)
        self.extensions = exts
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"no class folders in {str(self.root)!r}: expected root/<class>/<image> files")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self._check_distinct_classes()
        self.samples: list[tuple[str, int]] = []
        self.skipped_links: list[str] = []
        for cls in self.classes:
            found = self._find_images(self.root / cls)
            if not found:
                raise FileNotFoundError(
                    f"class folder {str(self.root / cls)!r} contains no image with an extension in {list(exts)}"
                )
            self.samples.extend((path, self.class_to_idx[cls]) for path in found)
        self.targets = [t for _, t in self.samples]
        self.corrupt_files: set[str] = set()
        if self.skipped_links:
            _LOG.warning(
                "image folder %s: ignored %d link(s) that leave their class folder, dangle or loop (e.g. %s)",
                self.root, len(self.skipped_links), self.skipped_links[0],
            )  # fmt: skip

    def _find_images(self, folder: Path) -> list[str]:
        """The image files of one class folder, recursively, sorted; see the class docstring for links."""
        top = folder.resolve()
        found: dict[str, str] = {}  # real path -> the path it was found under (the first in sorted order)
        seen_dirs = {str(top)}
        stack = [(str(folder), top)]
        while stack:
            shown, real_dir = stack.pop()
            try:
                entries = sorted(os.scandir(shown), key=lambda e: e.name)
            except OSError as err:  # unreadable sub-folder: said, not fatal
                _LOG.warning("image folder: cannot list %s (%s); skipped", shown, err.strerror or err)
                continue
            subdirs = []
            for entry in entries:
                if entry.is_symlink():
                    try:
                        real = Path(entry.path).resolve(strict=True)
                    except (OSError, RuntimeError):  # a dangling link or a link loop
                        self.skipped_links.append(entry.path)
                        continue
                    if real != top and top not in real.parents:  # it leaves the class folder: another class, or out
                        self.skipped_links.append(entry.path)
                        continue
                else:
                    real = real_dir / entry.name
                try:
                    mode = os.stat(real).st_mode
                except OSError:
                    continue
                if stat.S_ISDIR(mode):
                    if not entry.name.startswith(".") and str(real) not in seen_dirs:
                        seen_dirs.add(str(real))
                        subdirs.append((entry.path, real))
                elif stat.S_ISREG(mode) and entry.name.lower().endswith(self.extensions):  # FIFOs, sockets: never
                    found.setdefault(str(real), entry.path)
            stack.extend(reversed(subdirs))
        return sorted(found.values())

    def _check_distinct_classes(self) -> None:
        """Two class names must not be the same folder (or one inside the other): an image would get two labels."""
        reals = [(cls, (self.root / cls).resolve()) for cls in self.classes]
        for i, (a, ra) in enumerate(reals):
            for b, rb in reals[i + 1 :]:
                if ra == rb or ra in rb.parents or rb in ra.parents:
                    raise ValueError(
                        f"class folders {a!r} and {b!r} of {str(self.root)!r} are the same folder or nested (links): "
                        "their images would get two labels"
                    )

    @property
    def corrupt_count(self) -> int:
        """How many distinct corrupt files were skipped so far."""
        return len(self.corrupt_files)

    def __len__(self) -> int:
        return len(self.samples)

    def fetch(self, index: int) -> tuple[tuple[Any, int], list[str]]:
        """The sample at ``index`` and the list of corrupt files skipped to produce it (empty almost always)."""

        def load(i: int) -> tuple[Any, int]:
            path, target = self.samples[i]
            return decode_and_transform(_read_file(path), self.transform, path), target

        return fetch_skipping_corrupt(self, index, load, lambda i: self.samples[i][0], unit="images",
                                      where=f"under {str(self.root)!r}")  # fmt: skip

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.fetch(index)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)})"


# ------------------------------------------------------------------------------------------ built-in data
@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 ink levels → 0..255, rounded half up (exact integer arithmetic).
    images = ((bunch.images.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)
    targets = bunch.target.astype(np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def digits_split_indices(
    split: str, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> np.ndarray:
    """Indices into ``sklearn.datasets.load_digits()`` of one split of the fixed stratified train/val/test split.

    Per class c, the n_c scans are shuffled by sorting raw 64-bit outputs of PCG64 seeded with
    ``SeedSequence([seed, c])`` (a stream NumPy keeps stable across versions and machines); the first
    round(n_c·test_fraction) go to test, the next round(n_c·val_fraction) to val, the rest to train (rounding half
    up). The defaults give 1,259 train / 179 val / 359 test scans.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _, targets = _digits()
    chosen = []
    for c in range(10):
        members = np.flatnonzero(targets == c)
        # Order by raw PCG64 outputs: the bit stream is fixed by NumPy's compatibility policy, unlike
        # Generator.permutation, whose algorithm may change between NumPy versions.
        keys = np.random.PCG64(np.random.SeedSequence([int(seed), c])).random_raw(len(members))
        members = members[np.argsort(keys, kind="stable")]
        n_test = _round_half_up(len(members) * test_fraction)
        n_val = _round_half_up(len(members) * val_fraction)
        part = {"test": members[:n_test], "val": members[n_test : n_test + n_val], "train": members[n_test + n_val :]}
        chosen.append(part[split])
    return np.sort(np.concatenate(chosen))


def _first_per_class(indices: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The first ``k`` of ``indices`` per class, in the fixed shuffled order of :func:`digits_split_indices`.

    The order is the same PCG64 raw-output sort (stream ``[seed, c, 1]``), so the subsets are nested in ``k`` and
    machine-independent.
    """
    _, targets = _digits()
    chosen = []
    for c in range(10):
        members = indices[targets[indices] == c]
        if k > len(members):
            raise ValueError(f"train_per_class={k} exceeds the {len(members)} training scans of class {c}")
        keys = np.random.PCG64(np.random.SeedSequence([int(seed), c, 1])).random_raw(len(members))
        chosen.append(members[np.argsort(keys, kind="stable")][:k])
    return np.sort(np.concatenate(chosen))


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits as a small real image-classification data set (no download).

    1,797 real 8×8 scans of handwritten digits (UCI "Optical Recognition of Handwritten Digits",
    https://archive.ics.uci.edu/dataset/80), ten classes. Each scan's 0..16 ink levels are scaled to 0..255
    (bright ink on a black background, like MNIST), resized to ``size``×``size`` with bilinear interpolation
    (``cv2.INTER_LINEAR``; ``cv2.INTER_AREA`` if ``size`` < 8) and repeated over three channels, giving uint8
    H×W×3 RGB images that any pipeline of this package accepts.

    The splits are fixed, stratified and machine-independent (see :func:`digits_split_indices`); with the default
    fractions: train 1,259, val 179, test 359 images.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: side of the square output image in pixels, ≥ 1.
        transform: an Albumentations pipeline applied as ``transform(image=img)["image"]``.
        val_fraction: fraction of each class held out for validation.
        test_fraction: fraction of each class held out for testing.
        seed: the seed of the split permutation (not of the augmentations).
        train_per_class: a data-starved regime: keep only the first K scans of each class of the ``train`` split
            (in the split's fixed shuffled order, so K = 10 is a subset of K = 20); val and test are unchanged.
            ``None`` keeps them all; ignored for the other splits.

    Attributes:
        classes: ``["0", …, "9"]``.
        indices: the indices into ``load_digits()`` of this split's scans.
        targets: the class of each scan (int64 array).
    """

    classes: ClassVar[list[str]] = [str(d) for d in range(10)]

    def __init__(
        self,
        split: str = "train",
        *,
        size: int = 32,
        transform: Callable[..., dict[str, Any]] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        train_per_class: int | None = None,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if train_per_class is not None and (
            isinstance(train_per_class, bool)
            or not isinstance(train_per_class, (int, np.integer))
            or train_per_class < 1
        ):
            raise ValueError(f"train_per_class must be a positive integer or None, got {train_per_class!r}")
        self.split = split
        self.classes = list(type(self).classes)  # the instance's own copy of the class-level constant
        self.size = int(size)
        self.transform = transform
        self.indices = digits_split_indices(split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        if split == "train" and train_per_class is not None:
            self.indices = _first_per_class(self.indices, int(train_per_class), seed)
        images, targets = _digits()
        self._scans = images[self.indices]
        self.targets = targets[self.indices]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> np.ndarray:
        """The untransformed uint8 ``size``×``size``×3 RGB image at ``index``."""
        scan = self._scans[index]
        if self.size != 8:
            interpolation = cv2.INTER_LINEAR if self.size > 8 else cv2.INTER_AREA
            scan = cv2.resize(scan, (self.size, self.size), interpolation=interpolation)
        return np.repeat(scan[:, :, None], 3, axis=2)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.image(index)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return image, int(self.targets[index])

    @classmethod
    def export_folder(
        cls,
        root: str | os.PathLike[str],
        *,
        size: int = 32,
        splits: Sequence[str] = ("train", "val", "test"),
        ext: str = ".png",
        per_class: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> Path:
        """Write the splits as real image files in the ImageNet layout: ``root/<split>/<class>/<index>.png``.

        Args:
            root: output folder (created).
            size: image side in pixels.
            splits: which splits to write.
            ext: ``".png"`` (lossless) or ``".jpg"``.
            per_class: write at most this many images per class and split (the first ones in index order).
            val_fraction: as for the dataset.
            test_fraction: as for the dataset.
            seed: as for the dataset.

        Returns:
            ``root`` as a :class:`~pathlib.Path`.
        """
        if ext.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"ext must be '.png', '.jpg' or '.jpeg', got {ext!r}")
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be a positive integer or None, got {per_class!r}")
        root = Path(root)
        for split in splits:
            ds = cls(split, size=size, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
            written = dict.fromkeys(range(10), 0)
            for i in range(len(ds)):
                target = int(ds.targets[i])
                if per_class is not None and written[target] >= per_class:
                    continue
                folder = root / split / ds.classes[target]
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{int(ds.indices[i]):04d}{ext.lower()}"
                if not cv2.imwrite(str(path), cv2.cvtColor(ds.image(i), cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {str(path)!r}")
                written[target] += 1
        return root


def sample_photo_paths() -> list[Path]:
    """The two real JPEG photos shipped with scikit-learn (china.jpg, flower.jpg; 640×427, CC-BY licensed)."""
    folder = resources.files("sklearn.datasets") / "images"
    return [Path(str(folder / name)) for name in ("china.jpg", "flower.jpg")]


def load_sample_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-learn's two sample photos decoded with OpenCV: ``[(name, uint8 427×640×3 RGB), …]``."""
    return [(path.name, decode_image(path)) for path in sample_photo_paths()]


def sample_jpeg_bytes(size: tuple[int, int] = (500, 375), quality: int = 90) -> list[bytes]:
    """The sample photos re-encoded as JPEG at an ImageNet-like size, for benchmarks and pipeline tests.

    Each photo is centre-cropped to the aspect ratio of ``size`` (no distortion), resized with ``INTER_AREA``
    (antialiased) and encoded by OpenCV.

    Args:
        size: output ``(width, height)`` in pixels; ImageNet's typical photo is about 500×375.
        quality: JPEG quality, 1..100.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be a positive (width, height), got {size!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality!r}")
    out = []
    for _, image in load_sample_photos():
        h, w = image.shape[:2]
        if w * height > h * width:  # too wide: crop the width
            cw, ch = _round_half_up(h * width / height), h
        else:
            cw, ch = w, _round_half_up(w * height / width)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        interpolation = cv2.INTER_AREA if cw >= width else cv2.INTER_CUBIC
        resized = cv2.resize(crop, (width, height), interpolation=interpolation)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a JPEG")
        out.append(buf.tobytes())
    return out


# ------------------------------------------------------------------------------------------------- loading
def _derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, mixed by NumPy's SeedSequence (stable across machines and versions)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


# Stream tags, placed right after the seed: SeedSequence ignores trailing zeros, so streams must differ early.
_SHUFFLE, _WORKERS, _SAMPLES = 1, 2, 3


def _find_transform(dataset: Any) -> Any:
    while getattr(dataset, "transform", None) is None and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # e.g. torch.utils.data.Subset
    return getattr(dataset, "transform", None)


@dataclass(frozen=True)
class _Key:
    """What the sampler sends to a worker for one sample: where it is in which epoch's stream."""

    epoch: int
    rank: int
    position: int
    index: int


class _EpochSampler(Sampler):
    """Yields a :class:`_Key` per sample of the current epoch; wraps the user's sampler or shuffles itself."""

    def __init__(self, num_samples: int, sampler: Sampler | None, shuffle: bool, seed: int) -> None:
        self.num_samples, self.sampler, self.shuffle, self.seed = num_samples, sampler, shuffle, seed
        self.rank = int(getattr(sampler, "rank", 0))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else self.num_samples

    def __iter__(self) -> Iterator[_Key]:
        epoch = self.epoch
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            order: Iterator[int] = iter(self.sampler)
        elif self.shuffle:
            g = torch.Generator().manual_seed(_derive_seed(self.seed, _SHUFFLE, epoch))
            order = iter(torch.randperm(self.num_samples, generator=g).tolist())
        else:
            order = iter(range(self.num_samples))
        for position, index in enumerate(order):
            yield _Key(epoch, self.rank, position, int(index))


class _SeededDataset(Dataset):
    """Seeds the Albumentations pipeline of ``dataset`` from the key, then fetches the sample."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self.transform = _find_transform(dataset)
        self._generator: np.random.Generator | None = None
        self._py_random: NumpyRandom | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def seed_transform(self, key: _Key) -> None:
        """Put the pipeline at the start of the stream keyed by ``(seed, epoch, rank, position)``.

        One generator per process, shared by all the pipeline's transforms and by their ``py_random`` (a
        :class:`NumpyRandom` on the same stream), is installed once; per sample only its state is rewritten
        (:func:`~timm_recipes.data.seeding.reseed`, about 4 µs instead of about 50-90 µs for building a
        SeedSequence, a NumPy generator and a ``random.Random``). (``A.Compose(seed=s)`` would give every transform
        its own generator seeded with the same s, which correlates them: two flips with p=0.5 always agree.)
        """
        transform = self.transform
        if transform is None or not hasattr(transform, "set_random_state"):
            return
        if self._generator is None:
            self._generator = keyed_generator(self.seed)
            self._py_random = NumpyRandom(self._generator)
        if (
            getattr(transform, "random_generator", None) is not self._generator
            or getattr(transform, "py_random", None) is not self._py_random
        ):
            transform.set_random_state(self._generator, self._py_random)
        reseed(self._generator, self.seed, _SAMPLES, key.epoch, key.rank, key.position)

    def __getitem__(self, key: _Key) -> tuple[Any, list[str]]:
        self.seed_transform(key)
        if hasattr(self.dataset, "fetch"):
            return self.dataset.fetch(key.index)
        return self.dataset[key.index], []


class _ReportingCollate:
    """Collates the samples with the user's function and passes the skipped files on beside the batch."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[tuple[Any, list[str]]]) -> tuple[Any, list[str]]:
        return self.collate_fn([sample for sample, _ in items]), [f for _, files in items for f in files]


class SeededLoader:
    """A ``DataLoader`` whose augmentations are a pure function of ``(seed, epoch, rank, position)``.

    Iterating yields the batches of one epoch. Call :meth:`set_epoch` before each epoch, as with a
    ``DistributedSampler``; without it the epoch advances by one after every complete pass, so augmentations never
    silently repeat. Corrupt files skipped by the dataset (``skip_corrupt=True``) are collected from the workers
    and logged at the end of the epoch; they are available as :attr:`epoch_corrupt_files`.
    """

    def __init__(self, loader: DataLoader, sampler: _EpochSampler, dataset: Dataset, seed: int, epoch: int) -> None:
        self.loader = loader
        self.dataset = dataset
        self.seed = seed
        self.epoch = epoch
        self.epoch_corrupt_files: list[str] = []
        self._sampler = sampler
        self._generator = loader.generator

    @property
    def sampler(self) -> Sampler | None:
        """The sampler given to :func:`create_loader` (``None`` when the loader orders the samples itself)."""
        return self._sampler.sampler

    @property
    def batch_size(self) -> int:
        return self.loader.batch_sampler.batch_size

    @property
    def num_workers(self) -> int:
        return self.loader.num_workers

    @property
    def drop_last(self) -> bool:
        return self.loader.batch_sampler.drop_last

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentations the next iteration produces."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self._sampler.epoch = epoch
        # Worker processes seed random, numpy and torch from a base seed drawn from this generator.
        self._generator.manual_seed(_derive_seed(self.seed, _WORKERS, epoch))
        skipped: list[str] = []
        for batch, files in self.loader:
            skipped.extend(files)
            yield batch
        self.epoch_corrupt_files = sorted(set(skipped))
        if skipped:
            if isinstance(getattr(self.dataset, "corrupt_files", None), set):
                self.dataset.corrupt_files.update(skipped)
            _LOG.warning(
                "epoch %d: skipped %d corrupt images: %s", epoch, len(skipped), ", ".join(self.epoch_corrupt_files)
            )
        if self.epoch == epoch:
            self.epoch = epoch + 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dataset={self.dataset!r}, batch_size={self.batch_size}, "
            f"num_workers={self.num_workers}, seed={self.seed}, epoch={self.epoch})"
        )


def create_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> SeededLoader:
    """Build a loader whose shuffle and augmentations are seeded per sample, per worker and per epoch.

    Sample number ``position`` of epoch ``epoch`` on rank ``rank`` is augmented with the dataset's Albumentations
    pipeline reseeded from ``(seed, epoch, rank, position)``: no two workers and no two epochs repeat each
    other's draws, the same ``(seed, epoch)`` gives the same batches, and the result does not depend on
    ``num_workers`` or ``persistent_workers``. The global ``random``/``numpy``/``torch`` generators of the workers
    are seeded from ``(seed, epoch, worker id)`` as well, for code outside the pipeline (with ``persistent_workers``
    only once, from the first epoch: the workers then keep their state). The pipeline is found as
    ``dataset.transform`` (or ``dataset.dataset.transform`` for wrappers such as ``Subset``); anything with
    Albumentations' ``set_random_state`` is reseeded.

    Args:
        dataset: a map-style dataset; datasets with ``fetch(index) -> (sample, skipped_files)`` (like
            :class:`ImageFolderDataset`) report skipped corrupt files.
        batch_size: samples per batch, ≥ 1.
        shuffle: draw a fresh permutation of the dataset every epoch (not allowed with ``sampler``).
        num_workers: worker processes (0: load in the main process).
        seed: the seed of everything random in loading.
        epoch: the epoch of the first iteration.
        collate_fn: how to make a batch from a list of samples (default: ``torch``'s ``default_collate``), e.g. a
            ``MixupCutmixCollator``.
        drop_last: drop the last incomplete batch.
        sampler: e.g. a ``DistributedSampler``; its ``set_epoch`` is called every epoch.
        pin_memory: as for ``DataLoader``.
        persistent_workers: keep the workers between epochs (needs ``num_workers`` > 0).

    Returns:
        A :class:`SeededLoader`.
    """
    for label, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("epoch", epoch, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if sampler is not None and shuffle:
        raise ValueError("shuffle=True cannot be combined with a sampler: let the sampler shuffle")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers=True needs num_workers > 0")
    num_samples = len(dataset)
    if num_samples == 0:
        raise ValueError("dataset is empty")
    per_epoch = len(sampler) if sampler is not None else num_samples
    if drop_last and batch_size > per_epoch:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {per_epoch} samples of an epoch with drop_last=True: "
            "the loader would yield no batch"
        )
    epoch_sampler = _EpochSampler(num_samples, sampler, bool(shuffle), int(seed))
    loader = DataLoader(
        _SeededDataset(dataset, int(seed)),
        batch_sampler=BatchSampler(epoch_sampler, batch_size=int(batch_size), drop_last=drop_last),
        num_workers=int(num_workers),
        collate_fn=_ReportingCollate(collate_fn or default_collate),
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
        generator=torch.Generator(),
    )
    return SeededLoader(loader, epoch_sampler, dataset, int(seed), int(epoch))

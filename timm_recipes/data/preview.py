"""Pictures of what the data pipeline does: N draws of a pipeline on one image, and a mixed batch with its labels.

Both functions lay tiles out on a white grid with OpenCV and write a PNG:

* every tile is ``tile_h × tile_w`` (the largest output of the batch or pipeline), scaled up by an integer factor
  with nearest-neighbour pixels when it is smaller than ``min_tile``, so small images (the 8×8 digits) stay legible
  and their pixels stay exact;
* tiles are ``pad`` pixels apart and from the border, each with a caption strip of ``caption_lines`` text lines
  under it. The grid is therefore ``rows·(tile_h + caption) + (rows + 1)·pad`` high and
  ``cols·tile_w + (cols + 1)·pad`` wide; :class:`PreviewGrid` records where each tile went.

Normalised float tensors are mapped back to pixels with the pipeline's own ``mean``/``std`` (found on its
normalising transform) or the ones given.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PreviewGrid",
    "preview_mixing",
    "preview_pipeline",
    "preview_samples",
    "to_display",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

PAD = 6
LINE_HEIGHT = 16
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.42


@dataclass
class PreviewGrid:
    """A rendered grid: the RGB image written to ``path``, each tile's box ``(y0, y1, x0, x1)`` and caption."""

    image: np.ndarray
    path: Path
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    scale: int = 1


# ------------------------------------------------------------------------------------------- to pixels
def find_normalization(pipeline: Any) -> tuple[tuple[float, ...], tuple[float, ...], float] | None:
    """``(mean, std, max_pixel_value)`` of the normalising transform inside ``pipeline``, or None.

    Recognises albumentations' ``Normalize`` (standard normalisation) and any transform with ``mean``/``std``
    attributes in [0, 1] units (the pipelines' fused tensor conversion); one with ``normalize = False`` does not
    normalise.
    """
    stack = [pipeline]
    while stack:
        t = stack.pop(0)
        if getattr(t, "normalize", True) is not False and getattr(t, "normalization", "standard") == "standard":
            mean, std = getattr(t, "mean", None), getattr(t, "std", None)
            if mean is not None and std is not None and np.size(mean) in (1, 3) and np.size(std) in (1, 3):
                max_pixel = float(getattr(t, "max_pixel_value", None) or 255.0)
                mean_t = tuple(float(v) for v in np.broadcast_to(np.asarray(mean, np.float64), (3,)))
                std_t = tuple(float(v) for v in np.broadcast_to(np.asarray(std, np.float64), (3,)))
                return mean_t, std_t, max_pixel
        stack.extend(getattr(t, "transforms", None) or [])
    return None


def to_display(
    image: np.ndarray | torch.Tensor,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    max_pixel_value: float = 255.0,
) -> np.ndarray:
    """Turn a pipeline output into uint8 H×W×3 RGB for display.

    Accepts H×W×C arrays, C×H×W tensors and C×H×W arrays that cannot be read as H×W×C (C = 1 or 3). uint8 is
    kept as is; floating point values are denormalised as ``x · std · max_pixel_value + mean · max_pixel_value``,
    rounded and clipped to 0..255.
    """
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu().numpy()
        channels_first = arr.ndim == 3
    else:
        arr = np.asarray(image)
        channels_first = arr.ndim == 3 and arr.shape[2] not in (1, 3) and arr.shape[0] in (1, 3)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and channels_first:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"image must be H×W×C or C×H×W with C in (1, 3), got shape {tuple(image.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"image must be uint8 or floating point, got {arr.dtype}")
        m = np.asarray(mean, np.float64) * max_pixel_value
        s = np.asarray(std, np.float64) * max_pixel_value
        arr = np.clip(np.floor(arr.astype(np.float64) * s + m + 0.5), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------------- layout
def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` scaled (aspect kept, antialiased when shrinking) to fit ``height × width``; unchanged if it fits."""
    h, w = image.shape[:2]
    if h <= height and w <= width:
        return image
    s = min(height / h, width / w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _put_caption(canvas: np.ndarray, text: str, x0: int, y0: int, width: int) -> None:
    scale = _FONT_SCALE
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > width:
        scale *= width / tw
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    org = (x0 + max(0, (width - tw) // 2), y0 + (LINE_HEIGHT + th) // 2)
    cv2.putText(canvas, text, org, _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _render(
    tiles: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    path: str | os.PathLike[str],
    *,
    cols: int | None,
    min_tile: int,
    caption_lines: int,
) -> PreviewGrid:
    tile_h = max(t.shape[0] for t in tiles)
    tile_w = max(t.shape[1] for t in tiles)
    scale = max(1, math.ceil(min_tile / max(tile_h, tile_w))) if min_tile > 0 else 1
    tile_h, tile_w = tile_h * scale, tile_w * scale
    cols = cols or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    cell_h = tile_h + caption_lines * LINE_HEIGHT
    canvas = np.full((rows * cell_h + (rows + 1) * PAD, cols * tile_w + (cols + 1) * PAD, 3), 255, np.uint8)
    grid = PreviewGrid(image=canvas, path=Path(path), scale=scale)
    for k, (tile, lines) in enumerate(zip(tiles, captions, strict=True)):
        if scale > 1:
            tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
        r, c = divmod(k, cols)
        y0 = PAD + r * (cell_h + PAD) + (tile_h - tile.shape[0]) // 2
        x0 = PAD + c * (tile_w + PAD) + (tile_w - tile.shape[1]) // 2
        canvas[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] = tile
        grid.boxes.append((y0, y0 + tile.shape[0], x0, x0 + tile.shape[1]))
        grid.captions.append("\n".join(lines))
        for i, line in enumerate(lines):
            _put_caption(
                canvas, line, PAD + c * (tile_w + PAD), PAD + r * (cell_h + PAD) + tile_h + i * LINE_HEIGHT, tile_w
            )
    grid.path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(grid.path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write the preview to {str(grid.path)!r}")
    return grid


def _check_count(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------- previews
def preview_pipeline(
    image: np.ndarray | str | os.PathLike[str],
    pipeline: Callable[..., dict[str, Any]],
    n: int = 8,
    path: str | os.PathLike[str] = "preview.png",
    *,
    cols: int | None = None,
    seed: int | None = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    min_tile: int = 128,
) -> PreviewGrid:
    """Write a PNG grid of the original image followed by ``n`` draws of ``pipeline`` on it.

    The original comes first, scaled down (aspect kept) if it is larger than the pipeline's outputs; draws are
    shown at their output size. Float outputs are denormalised with the pipeline's normalisation (or ``mean`` /
    ``std``, in [0, 1] units).

    Args:
        image: uint8 H×W×3 RGB, or an image file.
        pipeline: an Albumentations pipeline, called as ``pipeline(image=image)["image"]``.
        n: number of draws, >= 1.
        path: the PNG to write.
        cols: tiles per row (default: a near-square grid).
        seed: reseeds the pipeline's generator (shared by all its transforms) for a reproducible picture; None
            keeps its current state.
        mean: per-channel mean for denormalising, overriding the pipeline's.
        std: per-channel std for denormalising, overriding the pipeline's.
        min_tile: tiles smaller than this are enlarged by an integer factor (nearest neighbour).

    Returns:
        The :class:`PreviewGrid` written to ``path``.
    """
    n = _check_count("n", n, 1)
    if cols is not None:
        cols = _check_count("cols", cols, 1)
    min_tile = _check_count("min_tile", min_tile, 0)
    if isinstance(image, (str, os.PathLike)):
        from timm_recipes.data.datasets import decode_image

        image = decode_image(image)
    original = to_display(image)
    if seed is not None and hasattr(pipeline, "set_random_state"):
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    found = find_normalization(pipeline)
    norm = {
        "mean": tuple(mean) if mean is not None else (found[0] if found else IMAGENET_MEAN),
        "std": tuple(std) if std is not None else (found[1] if found else IMAGENET_STD),
        "max_pixel_value": found[2] if found else 255.0,
    }
    draws = [to_display(pipeline(image=image)["image"], **norm) for _ in range(n)]
    tile_h, tile_w = max(d.shape[0] for d in draws), max(d.shape[1] for d in draws)
    tiles = [_fit(original, tile_h, tile_w), *draws]
    captions = [[f"original {original.shape[1]}x{original.shape[0]}"]] + [
        [f"#{i + 1}  {d.shape[1]}x{d.shape[0]}"] for i, d in enumerate(draws)
    ]
    return _render(tiles, captions, path, cols=cols, min_tile=min_tile, caption_lines=1)


def preview_samples(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | os.PathLike[str] = "samples.png",
    *,
    cols: int | None = None,
    min_tile: int = 96,
) -> PreviewGrid:
    """Write a PNG grid of raw images (uint8 H×W×3, any sizes: larger ones are scaled down), one caption each."""
    if not images or len(images) != len(captions):
        raise ValueError(f"give one caption per image and at least one image, got {len(images)} and {len(captions)}")
    if cols is not None:
        cols = _check_count("cols", cols, 1)
    tiles = [to_display(im) for im in images]
    side = min(max(max(t.shape[:2]) for t in tiles), 160)
    tiles = [_fit(t, side, side) for t in tiles]
    return _render(tiles, [[c] for c in captions], path, cols=cols, min_tile=min_tile, caption_lines=1)


def _top2(row: np.ndarray, class_names: Sequence[str]) -> list[str]:
    order = np.argsort(-row, kind="stable")[:2]
    return [f"{class_names[i]} {row[i]:.2f}" for i in order if row[i] > 0.005 or i == order[0]]


def preview_mixing(
    images: torch.Tensor,
    targets: torch.Tensor,
    mixer: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    path: str | os.PathLike[str] = "mix.png",
    class_names: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    min_tile: int = 128,
) -> PreviewGrid:
    """Mix a batch with ``mixer`` and write a PNG grid of the result, each tile captioned with its soft label.

    The caption lists the two largest entries of the tile's soft-target row as ``"<class> <weight>"`` (one line
    each; the second is left out when it is zero).

    Args:
        images: ``N × C × H × W`` uint8 or float tensor (float: normalised with ``mean``/``std``).
        targets: integer classes ``(N,)``.
        mixer: e.g. a ``MixupCutmix``, called as ``mixer(images, targets) -> (images, soft_targets)``.
        path: the PNG to write.
        class_names: a name per class (default: the class indices).
        cols: tiles per row (default: a near-square grid).
        mean: per-channel mean of float images, in [0, 1] units.
        std: per-channel std of float images, in [0, 1] units.
        min_tile: tiles smaller than this are enlarged by an integer factor (nearest neighbour).

    Returns:
        The :class:`PreviewGrid` written to ``path``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be an N×C×H×W tensor, got {getattr(images, 'shape', type(images).__name__)}")
    if cols is not None:
        cols = _check_count("cols", cols, 1)
    min_tile = _check_count("min_tile", min_tile, 0)
    mixed, soft = mixer(images, targets)
    soft_np = soft.detach().float().cpu().numpy()
    names = list(class_names) if class_names is not None else [str(i) for i in range(soft_np.shape[1])]
    if len(names) != soft_np.shape[1]:
        raise ValueError(f"class_names must name all {soft_np.shape[1]} classes, got {len(names)}")
    tiles = [to_display(m, mean=mean, std=std) for m in mixed]
    captions = [_top2(row, names) for row in soft_np]
    for lines in captions:
        lines.extend([""] * (2 - len(lines)))
    return _render(tiles, captions, path, cols=cols, min_tile=min_tile, caption_lines=2)

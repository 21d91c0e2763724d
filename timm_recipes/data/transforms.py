"""Albumentations transforms behind the pipeline builders: crop the window first, resample only the window.

The ResNet/VGG multi-scale crop and the Inception crop are both "pick a window of the source image, resample it to
the output size". Resizing the whole image and then cropping (what a chain of ``A.SmallestMaxSize`` +
``A.RandomCrop`` does) resamples pixels that are thrown away a moment later; here the window is computed in source
coordinates and only the window is resampled, so the work stays at the output size.

Resampling (:func:`resample`) is antialiased in every downscale: ``"bilinear"`` and ``"bicubic"`` use the filters
of PIL (the support of the kernel grows with the scale factor, as in timm's and torchvision's PIL pipelines),
computed by torch's SIMD ``uint8`` kernel (``F.interpolate(..., antialias=True)``), which agrees with PIL within
one grey level on all but < 0.1 % of pixels; ``"area"`` uses OpenCV's ``INTER_AREA`` for shrinking and
``INTER_LINEAR`` for enlarging. Why not ``INTER_AREA`` by default: at the fractional factors of these crops it cost
0.5-1 ms per 224×224 output here against about 0.2 ms for torch's kernel, and PIL's filters keep training,
evaluation and timm's reference pipelines resampling alike.

Every random draw of a transform happens in ``get_params_dependent_on_data`` from the generator albumentations
hands the transform; ``apply`` is a pure function of the image and those parameters, so a test can call it with
injected parameters and rebuild the output pixel by pixel. :class:`RecipeCompose` makes all transforms of a
pipeline share one generator (plain ``A.Compose(seed=s)`` seeds every transform with the same ``s``, so two
transforms with the same draw pattern, e.g. two flips, make identical decisions).

Cutout: DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
https://arxiv.org/abs/1708.04552, and Zhong et al., "Random Erasing Data Augmentation", https://arxiv.org/abs/1708.04896.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from albumentations.core.transforms_interface import ImageOnlyTransform
from torch.utils.data import get_worker_info

__all__ = [
    "INTERPOLATIONS",
    "Cutout",
    "EnsureRGB",
    "InceptionCrop",
    "MultiScaleCrop",
    "RecipeCompose",
    "ResizeCenterCrop",
    "ToTensorNormalize",
    "resample",
]

INTERPOLATIONS = ("bilinear", "bicubic", "area")
_WORKER_STREAM = 0x776F726B  # tags the per-worker stream of RecipeCompose ("work")
CROP_MODES = ("center", "squash", "border")


# --------------------------------------------------------------------------------------------------- validation
def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as ``int`` if it is an integer >= ``minimum``; otherwise raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as ``float`` if it is a number in [0, 1]; otherwise raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


def check_interpolation(name: str, value: Any) -> str:
    if value not in INTERPOLATIONS:
        raise ValueError(f"{name} must be one of {INTERPOLATIONS}, got {value!r}")
    return str(value)


def check_pair(name: str, value: Any, *, low: float, integer: bool = False) -> tuple[Any, Any]:
    """A ``(min, max)`` pair with ``low <= min <= max``, as a tuple; otherwise raise naming ``name``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair, got {value!r}")
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if any(isinstance(v, bool) or not isinstance(v, kinds) for v in value):
        raise TypeError(f"{name} must hold {'ints' if integer else 'numbers'}, got {value!r}")
    lo, hi = (int(v) for v in value) if integer else (float(v) for v in value)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got {value!r}")
    return lo, hi


def check_rgb_uint8(img: Any, name: str = "image") -> np.ndarray:
    """The contract of a pipeline's input: a ``uint8`` array, H×W, H×W×1, H×W×3 or H×W×4."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"{name} must have dtype uint8 (decoded 8-bit image), got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"{name} must be H×W or H×W×C, got shape {img.shape}")
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must have 1 (grey), 3 (RGB) or 4 (RGBA) channels, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {img.shape}")
    return img


# --------------------------------------------------------------------------------------------------- resampling
def _cv2_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (height <= h) == (width <= w):  # both axes shrink (area) or both enlarge (linear)
        flag = cv2.INTER_AREA if height <= h else cv2.INTER_LINEAR
        return cv2.resize(img, (width, height), interpolation=flag)
    # one axis shrinks, the other grows: shrink with area first, then enlarge with linear
    if height < h:
        return cv2.resize(cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA), (width, height))
    return cv2.resize(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA), (width, height))


def resample(img: np.ndarray, height: int, width: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resample a ``uint8`` H×W×3 image (or a window view of one) to ``height`` × ``width``, antialiased.

    ``"bilinear"``/``"bicubic"``: PIL's filters (triangle / Keys cubic with a = -0.5, support scaled with the
    reduction factor), via torch's ``uint8`` kernel; a pure bilinear enlargement is plain bilinear interpolation
    in PIL too and goes to OpenCV's faster ``INTER_LINEAR`` (same result within one grey level).
    ``"area"``: OpenCV ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging.
    Returns ``img`` itself when the size already matches.
    """
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    if interpolation == "area":
        return _cv2_area(img, height, width)
    if interpolation == "bilinear" and h <= height and w <= width:
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    if not img.flags.writeable:  # torch.from_numpy cannot wrap read-only memory
        img = img.copy()
    # 1×C×H×W with channels-last strides: torch's uint8 kernel then writes channels-last, i.e. a contiguous H×W×C
    t = torch.from_numpy(img).unsqueeze(0).permute(0, 3, 1, 2)
    out = F.interpolate(t, size=(height, width), mode=interpolation, antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _hflip_output(out: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Mirror ``out`` left-right, in place when it is fresh memory (not a view of the caller's ``src``)."""
    if np.shares_memory(out, src):
        return cv2.flip(out, 1)
    return cv2.flip(out, 1, dst=out)


def _center_crop_or_pad(img: np.ndarray, height: int, width: int, fill: Sequence[int]) -> np.ndarray:
    """torchvision's ``center_crop`` rounding (pads symmetric, with ``fill``, when the image is smaller)."""
    h, w = img.shape[:2]
    if height > h or width > w:
        top, left = max(height - h, 0) // 2, max(width - w, 0) // 2
        bottom, right = max(height - h, 0) - top, max(width - w, 0) - left
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=tuple(fill))
        h, w = img.shape[:2]
    y0, x0 = round((h - height) / 2.0), round((w - width) / 2.0)
    return img[y0 : y0 + height, x0 : x0 + width]


# --------------------------------------------------------------------------------------------------- composition
class RecipeCompose(A.Compose):
    """``A.Compose`` whose transforms all draw from the compose's own generator.

    Albumentations seeds every transform of ``A.Compose(seed=s)`` with the same ``s``: transforms with the same
    pattern of draws then make identical decisions (two ``p=0.5`` transforms fire together every time). Sharing
    one generator keeps the draws independent and still reproducible; ``set_random_seed`` (what a data loader
    calls per worker and epoch) keeps the sharing. Serialises like ``A.Compose`` (the seed is not serialised by
    albumentations: call ``set_random_seed`` after ``A.from_dict``).

    Safe in any ``DataLoader``: in a worker process, a generator that came from ``seed`` (or from fresh entropy) is
    re-keyed from ``(seed, torch.initial_seed())`` (see :meth:`__call__`), so workers and epochs never repeat each
    other's augmentations; generators set explicitly with ``set_random_state`` are used as given.
    """

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(seed)
        self.set_random_state(self.random_generator, self.py_random)
        # A generator made from a seed (or from fresh entropy) follows DataLoader workers: see __call__.
        self._follow_workers = True
        self._base_seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy)
        self._worker_seed: int | None = None

    def set_random_state(self, random_generator: np.random.Generator, py_random: Any) -> None:
        """Use the given generators as they are (an explicit generator is never re-keyed per worker)."""
        super().set_random_state(random_generator, py_random)
        self._follow_workers = False

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        """Apply the pipeline. Inside a ``torch.utils.data.DataLoader`` worker, a pipeline whose generator came from
        ``seed`` (or from fresh entropy) first re-keys it from ``(seed, torch.initial_seed())``: the DataLoader gives
        every worker of every epoch its own initial seed, so no two workers or epochs repeat each other's
        augmentations in any loader, and a seeded DataLoader (``generator=``) stays reproducible. Generators given
        through ``set_random_state`` (as :func:`~timm_recipes.data.datasets.create_loader` does per sample) are
        used unchanged."""
        if getattr(self, "_follow_workers", False) and get_worker_info() is not None:
            worker_seed = torch.initial_seed()
            if worker_seed != self._worker_seed:
                self._worker_seed = worker_seed
                generator = np.random.default_rng([self._base_seed, _WORKER_STREAM, worker_seed])
                super().set_random_state(generator, random.Random(int(generator.integers(2**63))))
        return super().__call__(*args, force_apply=force_apply, **data)


# --------------------------------------------------------------------------------------------------- transforms
class EnsureRGB(ImageOnlyTransform):
    """Validate a decoded ``uint8`` image and make it H×W×3 RGB: grey is replicated, RGBA loses its alpha.

    The conversions are those of PIL's ``Image.convert("RGB")``; an RGB input passes through without a copy.
    Wrong dtype → ``TypeError``; wrong rank or channel count → ``ValueError``.
    """

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=check_probability("p", p))

    def __call__(self, *args: Any, force_apply: bool = False, **kwargs: Any) -> Any:
        # The first transform of every pipeline: a wrong ``image`` is named here, before albumentations reads
        # ``image.shape`` (an AttributeError from deep inside for None or a list).
        if "image" in kwargs and not isinstance(kwargs["image"], np.ndarray):
            got = kwargs["image"]
            raise TypeError(
                f"image must be a NumPy uint8 array (H×W, H×W×1, H×W×3 or H×W×4, e.g. from cv2.imread or "
                f"np.asarray(PIL.Image)), got {type(got).__name__}"
            )
        return super().__call__(*args, force_apply=force_apply, **kwargs)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        img = check_rgb_uint8(img)
        if img.ndim == 3 and img.shape[2] == 3:
            return img
        if img.ndim == 2 or img.shape[2] == 1:
            return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(img[..., :3])


def _drawn_shape(params: dict[str, Any], data: dict[str, Any]) -> tuple[int, int]:
    """The (height, width) the crop is drawn on: ``source_shape`` when the image was decoded at reduced size
    (see :mod:`timm_recipes.data.decode`), else the image's own shape."""
    source = data.get("source_shape")
    return (int(source[0]), int(source[1])) if source is not None else tuple(params["shape"][:2])  # type: ignore


def _to_image(
    window: tuple[int, int, int, int], drawn: tuple[int, int], actual: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A window ``(x0, y0, x1, y1)`` drawn on ``drawn`` (height, width) in the pixels of the ``actual`` image: the
    same region of the scene, rounded to whole pixels of the reduced image (at least one pixel wide)."""
    if drawn == actual:
        return window
    fy, fx = actual[0] / drawn[0], actual[1] / drawn[1]
    x0, y0, x1, y1 = window
    rx0, ry0 = min(round(x0 * fx), actual[1] - 1), min(round(y0 * fy), actual[0] - 1)
    rx1, ry1 = max(min(round(x1 * fx), actual[1]), rx0 + 1), max(min(round(y1 * fy), actual[0]), ry0 + 1)
    return rx0, ry0, rx1, ry1


class MultiScaleCrop(ImageOnlyTransform):
    """ResNet/VGG multi-scale training crop, computed on the source window (Simonyan & Zisserman 2015,
    https://arxiv.org/abs/1409.1556; He et al. 2016, https://arxiv.org/abs/1512.03385).

    Draw an integer ``S`` uniformly in ``[S_min, S_max]``, rescale isotropically so that the short side is ``S``,
    take a random ``crop_size`` × ``crop_size`` patch. Equivalently, and without resampling discarded pixels: the
    patch covers a square source window of side ``win = round(crop_size · short / S)`` (clipped to the short
    side) at a uniform integer offset, and only that window is resampled to ``crop_size``. The effective scale
    ``crop_size / win`` equals ``S / short`` up to the half-pixel rounding of ``win``. When ``S < crop_size`` the
    image is enlarged so that its short side is ``crop_size`` (the crop then spans the short side): small images
    are resized up, never rejected.

    The horizontal flip of the recipe is drawn here too (``hflip``) and applied in place on the fresh output,
    which saves a separate transform and a copy per image.

    Params drawn per call: ``short_side`` (the sampled ``S``), ``crop_coords`` (``x0, y0, x1, y1`` in source
    pixels, end exclusive) and ``flip`` (bool).

    Args:
        crop_size: side of the output patch in pixels.
        scale_range: ``(S_min, S_max)``, integers with ``1 <= S_min <= S_max``.
        hflip: probability of mirroring the patch left-right.
        interpolation: one of :data:`INTERPOLATIONS` (antialiased whenever the window shrinks).
        p: probability of applying (1 for a training pipeline).
    """

    def __init__(
        self,
        crop_size: int = 224,
        scale_range: tuple[int, int] = (256, 480),
        hflip: float = 0.0,
        interpolation: str = "bilinear",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=check_probability("p", p))
        self.crop_size = check_int("crop_size", crop_size)
        self.scale_range = check_pair("scale_range", scale_range, low=1, integer=True)
        self.hflip = check_probability("hflip", hflip)
        self.interpolation = check_interpolation("interpolation", interpolation)

    def window_side(self, short: int, short_side: int) -> int:
        """Source window side for an image with short side ``short`` rescaled to ``short_side``."""
        target = max(short_side, self.crop_size)
        return max(1, min(short, round(self.crop_size * short / target)))

    def min_window_side(self, h: int, w: int) -> int:
        """The smallest window side any draw can give on an ``h`` × ``w`` image (at ``S = S_max``)."""
        return self.window_side(min(h, w), self.scale_range[1])

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = _drawn_shape(params, data)
        s = int(self.random_generator.integers(self.scale_range[0], self.scale_range[1] + 1))
        win = self.window_side(min(h, w), s)
        y0 = int(self.random_generator.integers(0, h - win + 1))
        x0 = int(self.random_generator.integers(0, w - win + 1))
        flip = bool(self.random_generator.random() < self.hflip)
        coords = _to_image((x0, y0, x0 + win, y0 + win), (h, w), tuple(params["shape"][:2]))
        return {"short_side": s, "crop_coords": coords, "flip": flip}

    def apply(
        self, img: np.ndarray, crop_coords: tuple[int, int, int, int], flip: bool = False, **params: Any
    ) -> np.ndarray:
        x0, y0, x1, y1 = crop_coords
        out = resample(img[y0:y1, x0:x1], self.crop_size, self.crop_size, self.interpolation)
        return _hflip_output(out, img) if flip else out


class InceptionCrop(ImageOnlyTransform):
    """Inception-style random-resized crop (Szegedy et al. 2015, https://arxiv.org/abs/1409.4842), crop first.

    The window is drawn exactly as torchvision's ``RandomResizedCrop.get_params`` does (10 tries of an area
    fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, then a centre crop with the ratio
    clamped), and only the window is resampled to ``size`` × ``size``; ``hflip`` as in :class:`MultiScaleCrop`.

    Params drawn per call: ``crop_coords`` (``x0, y0, x1, y1``, end exclusive) and ``flip`` (bool).

    Args:
        size: output side in pixels.
        scale: range of the window's area as a fraction of the image, ``0 < min <= max <= 1``.
        ratio: range of the window's aspect ratio (width / height), ``0 < min <= max``.
        hflip: probability of mirroring the patch left-right.
        interpolation: one of :data:`INTERPOLATIONS`.
        p: probability of applying.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.0,
        interpolation: str = "bilinear",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=check_probability("p", p))
        self.size = check_int("size", size)
        self.hflip = check_probability("hflip", hflip)
        self.scale = check_pair("scale", scale, low=0.0)
        if self.scale[0] <= 0 or self.scale[1] > 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
        self.ratio = check_pair("ratio", ratio, low=0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio!r}")
        self.interpolation = check_interpolation("interpolation", interpolation)

    def min_window_side(self, h: int, w: int) -> int:
        """A lower bound on the shorter side of any window drawn on an ``h`` × ``w`` image: a try has area
        ``≥ scale_min · h w`` and aspect in ``ratio``; the fallback centre crop is larger."""
        side = math.sqrt(h * w * self.scale[0] * min(self.ratio[0], 1.0 / self.ratio[1]))
        return max(1, min(h, w, math.floor(side - 0.5)))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        drawn = _drawn_shape(params, data)
        coords = _to_image(self.window(*drawn), drawn, tuple(params["shape"][:2]))
        return {"crop_coords": coords, "flip": bool(self.random_generator.random() < self.hflip)}

    def window(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Draw the crop window ``(x0, y0, x1, y1)`` for an ``h`` × ``w`` image (torchvision's algorithm)."""
        rng = self.random_generator
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            cw = round(math.sqrt(target_area * aspect))
            ch = round(math.sqrt(target_area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                y0 = int(rng.integers(0, h - ch + 1))
                x0 = int(rng.integers(0, w - cw + 1))
                return x0, y0, x0 + cw, y0 + ch
        in_ratio = w / h  # fallback: centre crop at the nearest allowed ratio
        if in_ratio < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            cw, ch = round(h * self.ratio[1]), h
        else:
            cw, ch = w, h
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return x0, y0, x0 + cw, y0 + ch

    def apply(
        self, img: np.ndarray, crop_coords: tuple[int, int, int, int], flip: bool = False, **params: Any
    ) -> np.ndarray:
        x0, y0, x1, y1 = crop_coords
        out = resample(img[y0:y1, x0:x1], self.size, self.size, self.interpolation)
        return _hflip_output(out, img) if flip else out


class ResizeCenterCrop(ImageOnlyTransform):
    """timm's evaluation geometry: resize to ``input_size / crop_pct``, then centre-crop ``input_size``.

    Same rounding as ``timm.data.transforms_factory.transforms_imagenet_eval``: the scale size is
    ``floor(side / crop_pct)``; ``"center"`` resizes the short side to it (torchvision's ``Resize(int)``: the
    long side becomes ``int(scale · long / short)``; for a non-square ``input_size`` timm's ``ResizeKeepRatio``),
    ``"squash"`` resizes both sides to it, ``"border"`` fits the long side and pads with ``fill``; then
    torchvision's ``center_crop`` rounding. Deterministic.

    Args:
        input_size: output ``(height, width)``.
        crop_pct: fraction of the resized image kept by the crop, in (0, 1].
        crop_mode: one of ``"center"``, ``"squash"``, ``"border"``.
        interpolation: one of :data:`INTERPOLATIONS`.
        fill: ``uint8`` RGB padding colour (``"border"`` mode only).
        p: probability of applying.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (224, 224),
        crop_pct: float = 0.875,
        crop_mode: str = "center",
        interpolation: str = "bicubic",
        fill: tuple[int, int, int] = (0, 0, 0),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=check_probability("p", p))
        if not isinstance(input_size, Sequence) or len(input_size) != 2:
            raise TypeError(f"input_size must be a (height, width) pair, got {input_size!r}")
        self.input_size = (check_int("input_size[0]", input_size[0]), check_int("input_size[1]", input_size[1]))
        if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be a number in (0, 1], got {crop_pct!r}")
        self.crop_pct = float(crop_pct)
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        self.crop_mode = crop_mode
        self.interpolation = check_interpolation("interpolation", interpolation)
        if len(fill) != 3:
            raise ValueError(f"fill must be an RGB triple, got {fill!r}")
        self.fill = tuple(int(v) for v in fill)

    def resized_shape(self, h: int, w: int) -> tuple[int, int]:
        """Size (height, width) of the image before the centre crop."""
        th, tw = (math.floor(s / self.crop_pct) for s in self.input_size)
        if self.crop_mode == "squash":
            return th, tw
        if self.crop_mode == "center" and th == tw:  # torchvision Resize(int): short side exact, long truncated
            return (th, int(th * w / h)) if h <= w else (int(th * h / w), th)
        ratios = (h / th, w / tw)  # timm ResizeKeepRatio: longest=0 for "center", 1 for "border"
        ratio = max(ratios) if self.crop_mode == "border" else min(ratios)
        return round(h / ratio), round(w / ratio)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        rh, rw = self.resized_shape(*img.shape[:2])
        out = resample(img, rh, rw, self.interpolation)
        fill = self.fill if self.crop_mode == "border" else (0, 0, 0)
        return _center_crop_or_pad(out, *self.input_size, fill)


class Cutout(ImageOnlyTransform):
    """Cutout / random erasing (DeVries & Taylor 2017, https://arxiv.org/abs/1708.04552): erase square holes.

    With probability ``p``, erase ``num_holes`` squares. Each square's centre is uniform over the image's pixels
    and the square is clipped at the border (as in DeVries & Taylor, so every pixel can be covered); its side is
    ``size`` pixels (an ``int``) or ``size`` × the image's short side (a ``float`` in (0, 1]), or drawn uniformly
    from a ``(min, max)`` range of either kind. Holes are filled with a constant ``uint8`` colour or, with
    ``fill="random"``, with uniform noise (Zhong et al.'s random erasing). Runs on the ``uint8`` image; the input
    array is never modified.

    Params drawn per call: ``holes`` (list of ``(x0, y0, x1, y1)``, end exclusive) and ``noise`` (list of
    ``uint8`` arrays, only for ``fill="random"``).

    Args:
        num_holes: number of squares, an int >= 1 or a ``(min, max)`` range.
        size: side of each square (see above).
        fill: ``uint8`` value, RGB triple, or ``"random"``.
        p: probability of erasing (0.5 in the lecture's recipe).
    """

    def __init__(
        self,
        num_holes: int | tuple[int, int] = 1,
        size: float | int | tuple[float, float] | tuple[int, int] = 0.5,
        fill: float | tuple[float, ...] | str = 0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=check_probability("p", p))
        self.num_holes = _count_range(num_holes)
        self.size = _size_range(size)
        self.fill = _fill_value(fill)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shape = params["shape"]
        h, w = shape[:2]
        rng = self.random_generator
        lo, hi = self.size
        holes = []
        for _ in range(int(rng.integers(self.num_holes[0], self.num_holes[1] + 1))):
            if isinstance(lo, int):
                side = int(rng.integers(lo, hi + 1))
            else:
                side = max(1, round(rng.uniform(lo, hi) * min(h, w)))
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            y0, x0 = cy - side // 2, cx - side // 2
            holes.append((max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)))
        noise = []
        if self.fill == "random":
            channels = tuple(shape[2:3])
            noise = [
                rng.integers(0, 256, size=(y1 - y0, x1 - x0, *channels), dtype=np.uint8) for x0, y0, x1, y1 in holes
            ]
        return {"holes": holes, "noise": noise}

    def apply(
        self, img: np.ndarray, holes: Sequence[tuple[int, int, int, int]], noise: list[np.ndarray], **params: Any
    ) -> np.ndarray:
        out = img.copy()
        for k, (x0, y0, x1, y1) in enumerate(holes):
            if self.fill == "random":
                out[y0:y1, x0:x1] = noise[k]
            elif x1 > x0 and y1 > y0:  # cv2.rectangle: a SIMD fill, 5x faster than numpy's broadcast assignment
                color = self.fill if isinstance(self.fill, tuple) else (self.fill,) * 4
                cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, thickness=-1)
        return out


class ToTensorNormalize(ImageOnlyTransform):
    """``uint8`` H×W×3 → torch C×H×W: ``float32`` ``(x / 255 − mean) / std`` or, with ``normalize=False``,
    ``uint8`` unchanged (normalise later on the GPU).

    Fuses albumentations' ``Normalize`` + ``ToTensorV2``: one ``cv2.split`` into a contiguous C×H×W buffer and
    one fused multiply-subtract (``x · 1/(255·std) − mean/std``, float32, within 5e-7 of the exact value).
    The output tensor is contiguous and owns fresh memory.

    Args:
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units, > 0.
        normalize: if False, return the ``uint8`` tensor.
        p: probability of applying (keep 1).
    """

    def __init__(
        self,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        normalize: bool = True,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=check_probability("p", p))
        self.mean = _triple("mean", mean)
        self.std = _triple("std", std)
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0 per channel, got {std!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {normalize!r}")
        self.normalize = normalize
        std255 = np.asarray(self.std, np.float64) * 255.0
        self._scale = (1.0 / std255).astype(np.float32).reshape(3, 1, 1)
        self._shift = (np.asarray(self.mean, np.float64) * 255.0 / std255).astype(np.float32).reshape(3, 1, 1)

    def apply(self, img: np.ndarray, **params: Any) -> torch.Tensor:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise TypeError(f"image must be uint8 H×W×3 here, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        planes = np.empty((3, h, w), np.uint8)
        cv2.split(img, [planes[0], planes[1], planes[2]])
        if not self.normalize:
            return torch.from_numpy(planes)
        out = np.empty((3, h, w), np.float32)
        np.multiply(planes, self._scale, out=out, casting="unsafe")
        out -= self._shift
        return torch.from_numpy(out)


# --------------------------------------------------------------------------------------------------- helpers
def _triple(name: str, value: Any) -> tuple[float, float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise ValueError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in value):
        raise TypeError(f"{name} must hold numbers, got {value!r}")
    if not all(math.isfinite(float(v)) for v in value):
        raise ValueError(f"{name} must be 3 finite numbers (no NaN or infinity), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _count_range(value: Any) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return check_pair("num_holes", value, low=1, integer=True)
    n = check_int("num_holes", value)
    return n, n


def _size_range(value: Any) -> tuple[int, int] | tuple[float, float]:
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair):
        raise TypeError(f"size must be an int, a float or a (min, max) pair of either, got {value!r}")
    if all(isinstance(v, int) for v in pair):
        return check_pair("size", pair, low=1, integer=True)
    if not all(isinstance(v, float) for v in pair):
        raise TypeError(f"size must be all ints (pixels) or all floats (fractions), got {value!r}")
    lo, hi = check_pair("size", pair, low=0.0)
    if lo <= 0 or hi > 1:
        raise ValueError(f"size as a fraction of the short side must be in (0, 1], got {value!r}")
    return lo, hi


def _fill_value(value: Any) -> int | tuple[int, ...] | str:
    if value == "random":
        return "random"
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    if len(values) not in (1, 3) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise TypeError(f"fill must be a uint8 value, an RGB triple or 'random', got {value!r}")
    if any(not 0 <= v <= 255 for v in values):
        raise ValueError(f"fill must be in [0, 255] (uint8 image values), got {value!r}")
    ints = tuple(round(v) for v in values)
    return ints[0] if len(ints) == 1 else ints

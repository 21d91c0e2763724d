"""Albumentations pipeline builders: the lecture's training crops, Cutout, and timm's evaluation transform.

Each builder takes keyword-only arguments and returns an ``A.Compose`` (a :class:`~timm_recipes.data.transforms.
RecipeCompose`) that

* accepts a decoded ``uint8`` image, H×W×3 RGB; grey (H×W, H×W×1) is replicated and RGBA loses its alpha;
* ends in a normalised ``float32`` C×H×W torch tensor, or with ``normalize=False`` a ``uint8`` C×H×W tensor
  (normalise on the GPU);
* round-trips through ``A.to_dict`` / ``A.from_dict`` (albumentations does not store the seed: call
  ``set_random_seed`` on the restored pipeline).

Usage::

    from timm_recipes.data import CutoutConfig, multiscale_crop_pipeline, eval_pipeline
    train_tf = multiscale_crop_pipeline(crop_size=224, scale_range=(256, 480), cutout=CutoutConfig())
    x = train_tf(image=rgb_uint8)["image"]          # torch.float32, 3×224×224
    eval_tf = eval_pipeline.from_model(model)        # reads model.pretrained_cfg (FixRes test size included)

The training crops resample only the crop window (see :mod:`timm_recipes.data.transforms`), antialiased with
PIL's filters, so training and evaluation resample alike and match timm's PIL pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config

from timm_recipes.data.transforms import (
    CROP_MODES,
    Cutout,
    EnsureRGB,
    InceptionCrop,
    MultiScaleCrop,
    RecipeCompose,
    ResizeCenterCrop,
    ToTensorNormalize,
    _count_range,
    _fill_value,
    _size_range,
    _triple,
    check_int,
    check_interpolation,
    check_probability,
)

__all__ = [
    "CutoutConfig",
    "eval_pipeline",
    "eval_pipeline_from_model",
    "multiscale_crop_pipeline",
    "random_resized_crop_pipeline",
]


@dataclass(frozen=True)
class CutoutConfig:
    """Cutout as the lecture defines it: with probability ``p`` erase one random square of the input.

    DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
    https://arxiv.org/abs/1708.04552 (Zhong et al.'s random erasing, https://arxiv.org/abs/1708.04896, is the
    ``fill="random"`` variant).

    Attributes:
        p: probability that an image is erased at all (0.5 in the lecture).
        num_holes: squares per erased image: an int >= 1 or a ``(min, max)`` range (uniform integer).
        size: side of a square: a float in (0, 1] is a fraction of the image's short side, an int is pixels; a
            ``(min, max)`` pair of either kind draws the side uniformly. Default 0.5 (DeVries & Taylor's 16 px on
            32 px CIFAR-10 images). The centre is uniform over the image and the square is clipped at the border.
        fill: ``"mean"`` (the normalisation mean, i.e. 0 after normalising), ``"random"`` (uniform noise), or a
            ``uint8`` value / RGB triple.
    """

    p: float = 0.5
    num_holes: int | tuple[int, int] = 1
    size: float | int | tuple[float, float] | tuple[int, int] = 0.5
    fill: float | tuple[float, float, float] | str = "mean"

    def __post_init__(self) -> None:
        check_probability("cutout.p", self.p)
        _count_range(self.num_holes)
        _size_range(self.size)
        if self.fill != "mean":
            _fill_value(self.fill)

    def build(self, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN) -> Cutout:
        """The albumentations transform; ``mean`` (in [0, 1] units) resolves ``fill="mean"``."""
        fill = tuple(round(255 * m) for m in mean) if self.fill == "mean" else self.fill
        return Cutout(num_holes=self.num_holes, size=self.size, fill=fill, p=self.p)


def multiscale_crop_pipeline(
    *,
    crop_size: int = 224,
    scale_range: tuple[int, int] = (256, 480),
    hflip: float = 0.5,
    cutout: CutoutConfig | None = None,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    normalize: bool = True,
    interpolation: str = "bilinear",
    seed: int | None = None,
) -> A.Compose:
    """ResNet/VGG multi-scale training: ``S ~ U{S_min..S_max}``, short side → ``S``, random square crop, flip.

    He et al., "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385 (Sec. 3.4), after
    Simonyan & Zisserman, https://arxiv.org/abs/1409.1556. Only the crop window is resampled (antialiased); if
    ``S < crop_size`` the short side is enlarged to ``crop_size`` instead (small images are resized up).

    Args:
        crop_size: output side in pixels (224).
        scale_range: ``(S_min, S_max)`` for the short side, integers with ``1 <= S_min <= S_max``.
        hflip: probability of a horizontal flip (drawn and applied by the crop itself, in place on its output).
        cutout: erase a random square (:class:`CutoutConfig`), or None.
        mean: normalisation mean per RGB channel, [0, 1] units.
        std: normalisation standard deviation per RGB channel.
        normalize: False keeps ``uint8`` (C×H×W tensor) for normalising on the GPU.
        interpolation: ``"bilinear"``, ``"bicubic"`` (PIL filters, antialiased) or ``"area"`` (OpenCV).
        seed: seed of the pipeline's generator (None: fresh entropy).

    Returns:
        The pipeline; call it as ``pipeline(image=rgb_uint8)["image"]``.
    """
    crop = MultiScaleCrop(crop_size=crop_size, scale_range=scale_range, hflip=hflip, interpolation=interpolation)
    return _training_pipeline(crop, cutout, mean, std, normalize, seed)


def random_resized_crop_pipeline(
    *,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    cutout: CutoutConfig | None = None,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    normalize: bool = True,
    interpolation: str = "bilinear",
    seed: int | None = None,
) -> A.Compose:
    """Inception-style random-resized crop (area fraction ``scale``, aspect ``ratio``), flip, optional Cutout.

    Szegedy et al., "Going Deeper with Convolutions", https://arxiv.org/abs/1409.4842. The window is drawn as in
    torchvision's ``RandomResizedCrop``; only the window is resampled (antialiased).

    Args:
        size: output side in pixels.
        scale: range of the window's area fraction, ``0 < min <= max <= 1``.
        ratio: range of the window's aspect ratio (width / height), ``0 < min <= max``.
        hflip, cutout, mean, std, normalize, interpolation, seed: as in :func:`multiscale_crop_pipeline`.

    Returns:
        The pipeline.
    """
    crop = InceptionCrop(size=size, scale=scale, ratio=ratio, hflip=hflip, interpolation=interpolation)
    return _training_pipeline(crop, cutout, mean, std, normalize, seed)


def eval_pipeline(
    *,
    input_size: int | tuple[int, int] | tuple[int, int, int] = 224,
    crop_pct: float = 0.875,
    crop_mode: str = "center",
    interpolation: str = "bicubic",
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    normalize: bool = True,
) -> A.Compose:
    """timm's evaluation transform: resize the short side to ``floor(input_size / crop_pct)``, centre-crop.

    Same geometry and rounding as ``timm.data.create_transform(..., is_training=False)`` (torchvision's
    ``Resize(int)`` then ``CenterCrop``; ``"squash"`` and ``"border"`` crop modes as in timm). Resampling uses
    PIL's antialiased filters through torch's ``uint8`` kernel. Measured on the two real photos of
    ``sklearn.datasets.load_sample_images`` (427×640) with ``resnet50``'s config (224 px / crop_pct 0.95 and the
    FixRes test size 288 px / 1.0, bicubic), against ``create_transform(**resolve_data_config(model=m))`` on PIL:
    mean absolute difference 0.00004-0.00011 and maximum 0.0175 in normalised units, i.e. at most one grey level
    (1 / (255 · std) = 0.0171-0.0175). With ``interpolation="area"`` (OpenCV ``INTER_AREA``) the gap to PIL's
    bicubic filter is the OpenCV-vs-PIL resampling difference: mean 0.009-0.025, maximum 0.27-0.36.

    ``eval_pipeline.from_model(model)`` is :func:`eval_pipeline_from_model`.

    Args:
        input_size: output side, ``(height, width)``, or timm's ``(3, height, width)``.
        crop_pct: fraction of the resized image kept, in (0, 1].
        crop_mode: ``"center"`` (default), ``"squash"`` or ``"border"``, as timm's ``crop_mode``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"area"``.
        mean: normalisation mean per RGB channel.
        std: normalisation standard deviation per RGB channel.
        normalize: False keeps ``uint8``.

    Returns:
        The (deterministic) pipeline.
    """
    size = _input_size(input_size)
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    interpolation = check_interpolation("interpolation", interpolation)
    fill = tuple(round(255 * m) for m in _triple("mean", mean))
    transforms = [
        EnsureRGB(),
        ResizeCenterCrop(
            input_size=size, crop_pct=crop_pct, crop_mode=crop_mode, interpolation=interpolation, fill=fill
        ),
        ToTensorNormalize(mean=mean, std=std, normalize=normalize),
    ]
    return RecipeCompose(transforms, seed=0, is_check_shapes=False)


def eval_pipeline_from_model(model: Any, *, use_test_size: bool = True, normalize: bool = True) -> A.Compose:
    """:func:`eval_pipeline` configured from ``model.pretrained_cfg``, like ``resolve_data_config(model=model)``.

    Reads ``input_size``, ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``, ``std``; with
    ``use_test_size`` (default) the FixRes ``test_input_size`` / ``test_crop_pct`` take precedence when present
    (Touvron et al., "Fixing the train-test resolution discrepancy", https://arxiv.org/abs/1906.06423).
    A wrapper with ``.module`` (DDP) is unwrapped.

    Args:
        model: a timm model (anything carrying a ``pretrained_cfg`` dict).
        use_test_size: prefer the test resolution of the config.
        normalize: False keeps ``uint8``.

    Returns:
        The evaluation pipeline.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None and hasattr(model, "module"):
        cfg = getattr(model.module, "pretrained_cfg", None)
    if hasattr(cfg, "to_dict"):  # a timm PretrainedCfg dataclass
        cfg = cfg.to_dict()
    if not isinstance(cfg, dict):
        raise TypeError(f"model must carry a timm pretrained_cfg dict, got {type(model).__name__} without one")
    config = resolve_data_config(pretrained_cfg=cfg, use_test_size=use_test_size)
    return eval_pipeline(
        input_size=tuple(config["input_size"]),
        crop_pct=config["crop_pct"],
        crop_mode=config.get("crop_mode") or "center",
        interpolation=config["interpolation"],
        mean=config["mean"],
        std=config["std"],
        normalize=normalize,
    )


eval_pipeline.from_model = eval_pipeline_from_model  # type: ignore[attr-defined]


def _training_pipeline(
    crop: A.BasicTransform,
    cutout: CutoutConfig | None,
    mean: Sequence[float],
    std: Sequence[float],
    normalize: bool,
    seed: int | None,
) -> A.Compose:
    """(RGB) → crop + flip → Cutout → tensor, all drawing from one generator."""
    if cutout is not None and not isinstance(cutout, CutoutConfig):
        raise TypeError(f"cutout must be a CutoutConfig or None, got {type(cutout).__name__}")
    if seed is not None:
        check_int("seed", seed, minimum=0)
    mean = _triple("mean", mean)
    transforms: list[A.BasicTransform] = [EnsureRGB(), crop]
    if cutout is not None:
        transforms.append(cutout.build(mean))
    transforms.append(ToTensorNormalize(mean=mean, std=std, normalize=normalize))
    return RecipeCompose(transforms, seed=seed, is_check_shapes=False)  # one image: nothing to check


def _input_size(value: Any) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 3:
            if value[0] != 3:
                raise ValueError(f"input_size must have 3 channels (RGB), got {value!r}")
            value = value[1:]
        if len(value) != 2:
            raise ValueError(f"input_size must be an int, (height, width) or (3, height, width), got {value!r}")
        return check_int("input_size", value[0]), check_int("input_size", value[1])
    side = check_int("input_size", value)
    return side, side

"""The recipe: one typed, frozen configuration for a whole training run.

A :class:`Recipe` nests one small frozen dataclass per concern (model, data, augmentation, mixing, optimizer,
schedule, EMA, FixRes, Hub, run). It is loaded from and saved to YAML, converted to and from plain dicts, and
changed on the command line with ``--set a.b=value`` overrides.

Everything is driven by the type hints: one generic converter checks and coerces every field (``int``, ``float``,
``bool``, ``str``, ``Literal`` choices, ``X | None``, tuples, nested sections), and one generic range check reads
the bounds stored in each field's metadata. Errors are :class:`RecipeError` (a ``ValueError``) naming the dotted
key, e.g. ``optim.lr: expected float, got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from timm_recipes._files import apply_umask

__all__ = [
    "AUG_DEFAULTS",
    "AugConfig",
    "DataConfig",
    "EmaConfig",
    "FixResConfig",
    "HubConfig",
    "MixConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "RecipeError",
    "RunConfig",
    "ScheduleConfig",
    "apply_overrides",
    "read_recipe_file",
    "read_recipe_yaml",
    "recipe_from_dict",
    "recipe_from_file_data",
    "recipe_summary",
    "recipe_to_dict",
    "recipe_to_yaml",
    "save_recipe",
]


class RecipeError(ValueError):
    """A recipe value is wrong. ``key`` is the dotted key it belongs to (``""`` for the recipe as a whole)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}" if key else reason)

    def under(self, parent: str) -> RecipeError:
        """The same error seen from the enclosing section ``parent``."""
        if not parent:
            return self
        key = f"{parent}.{self.key}" if self.key and not self.key.startswith("[") else f"{parent}{self.key}"
        return RecipeError(key, self.reason)


Bound = float | None


def _f(default: Any, *, ge: Bound = None, gt: Bound = None, le: Bound = None, lt: Bound = None) -> Any:
    """A field with bounds (applied to the value, or to every element of a tuple; ``None`` is never bounded)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt})


# --------------------------------------------------------------------------------------------------------------
# The generic converter
# --------------------------------------------------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields (ClassVars left out)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        return "list of " + _type_name(args[0]) if args[-1] is Ellipsis else f"list of {len(args)} values"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form (floats, tuples, sections)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise RecipeError(key, f"expected {_type_name(tp)}, got None (this key cannot be null)")
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, key)
        raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a programming error, not bad input
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise RecipeError(key, f"expected a mapping of {tp.__name__} fields, got {value!r}")
        known = {f.name for f in dataclasses.fields(tp)}
        for name in value:
            if name not in known:
                raise RecipeError(f"{key}.{name}" if key else str(name), f"unknown key (known: {', '.join(known)})")
        try:
            return tp(**value)
        except RecipeError as err:
            raise err.under(key) from None
    if origin is Literal:
        if value in args and isinstance(value, str):
            return value
        raise RecipeError(key, f"expected one of {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(key, f"expected a {_type_name(tp)}, got {value!r}")
        if args[-1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise RecipeError(key, f"expected a {_type_name(tp)}, got {len(value)} values: {list(value)!r}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported annotation {tp!r} for {key}")
    raise RecipeError(key, f"expected {_type_name(tp)}, got {value!r}")


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for i, v in enumerate(values):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        key = f"{name}[{i}]" if isinstance(value, tuple) else name
        if isinstance(v, float) and not math.isfinite(v):
            raise RecipeError(key, f"must be a finite number, got {v!r}")
        for op, bound, ok in (
            (">=", meta.get("ge"), lambda a, b: a >= b),
            (">", meta.get("gt"), lambda a, b: a > b),
            ("<=", meta.get("le"), lambda a, b: a <= b),
            ("<", meta.get("lt"), lambda a, b: a < b),
        ):
            if bound is not None and not ok(v, bound):
                raise RecipeError(key, f"must be {op} {bound}, got {v!r}")


class _Section:
    """Mixin: on construction every field is type-checked, coerced and range-checked, then ``_check`` runs."""

    __slots__ = ()

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _convert(hints[f.name], getattr(self, f.name), f.name)
            _check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Cross-field rules of the section (raise :class:`RecipeError` naming the field)."""


def _ordered(key: str, pair: tuple[float, float]) -> None:
    if pair[0] > pair[1]:
        raise RecipeError(key, f"expected (low, high) with low <= high, got {pair!r}")


# --------------------------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelConfig(_Section):
    """The network: any timm model name (``recipe_*`` registered by this package) and its regularisation."""

    name: str = "recipe_resnet50"
    num_classes: int | None = _f(1000, ge=1)  # None: the data's class count (the train/ folder's sub-folders)
    drop_rate: float | None = _f(None, ge=0.0, lt=1.0)  # None: the model's default
    drop_path_rate: float | None = _f(None, ge=0.0, lt=1.0)
    stochastic_depth_mode: Literal["batch", "row"] | None = None
    in_chans: int = _f(3, ge=1)
    # Fine-tuning (timm_recipes.train.weights): the starting weights. None: random; "pretrained": the model's default
    # tag; a tag ("tv2_in1k"); "hf-hub:org/name"; "local-dir:PATH"; an export folder; a run folder or checkpoint.
    init: str | None = None
    init_weights: Literal["auto", "ema", "raw"] = "auto"  # of a run / checkpoint: auto = EMA when it was saved
    freeze_bn: bool = False  # keep every BatchNorm's running statistics as loaded (affine weights still train)

    def _check(self) -> None:
        if not self.name:
            raise RecipeError("name", "must be a model name, got ''")
        if self.init is not None and not self.init.strip():
            raise RecipeError(
                "init", "must be null, 'pretrained', a tag, 'hf-hub:org/name', 'local-dir:PATH' or a path"
            )


@dataclass(frozen=True, slots=True)
class DataConfig(_Section):
    """Where the images come from. ``batch_size`` is per process (the global batch is ``world_size`` times it)."""

    # folder: root/train, root/val[, root/test] (ImageNet layout); wds: tar shards in or under root (WebDataset);
    # hfds: a Hugging Face dataset (local directory or Hub name in root). See timm_recipes.data.sources.
    dataset: Literal["folder", "digits", "wds", "hfds"] = "folder"
    root: str | None = None
    image_size: int = _f(32, ge=8)  # digits only: side of the rendered digits
    train_per_class: int | None = _f(None, ge=1)  # digits only: K training scans per class (val, test unchanged)
    batch_size: int = _f(128, ge=1)
    num_workers: int = _f(4, ge=0)
    skip_corrupt: bool = False
    pin_memory: bool = True
    persistent_workers: bool = False  # keep the loader's worker processes between epochs (num_workers > 0)
    # wds / hfds: split names (None: "train"; "validation" or "val"; "test" when present).
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    # wds: shard patterns ('train-{0000..1023}.tar', '::'-lists, fsspec URLs; relative to root). None: _info.json.
    train_shards: str | None = None
    val_shards: str | None = None
    test_shards: str | None = None
    # wds: samples per split when no _info.json gives them (the schedule needs the training count).
    train_samples: int | None = _f(None, ge=1)
    val_samples: int | None = _f(None, ge=1)
    test_samples: int | None = _f(None, ge=1)
    image_key: str = "jpg;png;webp"  # wds: member extensions tried in order for the image
    label_key: str = "cls"  # wds: member extension of the integer label
    shuffle_buffer: int = _f(1000, ge=0)  # wds: samples in each worker's shuffle buffer (training)
    image_column: str = "image"  # hfds
    label_column: str = "label"  # hfds

    def _check(self) -> None:
        if self.dataset == "folder" and self.root is not None and not self.root:
            raise RecipeError("root", "must be a folder path or null, got ''")
        if self.dataset in ("wds", "hfds") and not self.root and not (self.dataset == "wds" and self.train_shards):
            where = "the shard directory or URL prefix" if self.dataset == "wds" else "a local directory or Hub name"
            raise RecipeError("root", f"data.dataset={self.dataset!r} needs data.root: {where}")
        if not [k for k in self.image_key.split(";") if k.strip()]:
            raise RecipeError("image_key", f"must name member extensions such as 'jpg;png', got {self.image_key!r}")
        for key in ("label_key", "image_column", "label_column"):
            if not getattr(self, key).strip():
                raise RecipeError(key, "must not be empty")
        if self.train_per_class is not None and self.dataset != "digits":
            raise RecipeError("train_per_class", f"applies to the built-in digits only, got dataset={self.dataset!r}")


AUG_DEFAULTS: dict[str, Any] = {"interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
"""Preprocessing of a recipe that sets neither it nor ``model.init`` (the values these keys always had)."""


@dataclass(frozen=True, slots=True)
class AugConfig(_Section):
    """Per-sample augmentation (train) and preprocessing (test). Cutout is the lecture's random erasing."""

    train_pipeline: Literal["rrc", "multiscale"] = "rrc"
    train_size: int = _f(224, ge=1)
    scale_range: tuple[int, int] = _f((256, 480), ge=1)  # multiscale: short side S ~ U{S_min..S_max}
    rrc_scale: tuple[float, float] = _f((0.08, 1.0), gt=0.0, le=1.0)
    rrc_ratio: tuple[float, float] = _f((3 / 4, 4 / 3), gt=0.0)
    hflip: float = _f(0.5, ge=0.0, le=1.0)
    cutout_p: float = _f(0.0, ge=0.0, le=1.0)  # 0 disables; the lecture's 0.5 when on
    cutout_size: float = _f(0.5, gt=0.0, le=1.0)  # side of the square as a fraction of the crop
    cutout_holes: int = _f(1, ge=1)
    test_size: int = _f(224, ge=1)
    test_crop_pct: float = _f(0.875, gt=0.0, le=1.0)
    # None (unset): the pretrained_cfg of model.init's weights, or AUG_DEFAULTS without model.init (filled in by Recipe)
    interpolation: Literal["nearest", "bilinear", "bicubic", "area", "lanczos"] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = _f(None, gt=0.0)

    def _check(self) -> None:
        _ordered("scale_range", self.scale_range)
        _ordered("rrc_scale", self.rrc_scale)
        _ordered("rrc_ratio", self.rrc_ratio)


@dataclass(frozen=True, slots=True)
class MixConfig(_Section):
    """Mixup / CutMix (https://arxiv.org/abs/1710.09412, https://arxiv.org/abs/1905.04899); alphas 0 = off."""

    mixup_alpha: float = _f(0.0, ge=0.0)
    cutmix_alpha: float = _f(0.0, ge=0.0)
    prob: float = _f(1.0, ge=0.0, le=1.0)  # probability that a batch is mixed at all
    switch_prob: float = _f(0.5, ge=0.0, le=1.0)  # with both on: probability of CutMix rather than Mixup
    mode: Literal["batch", "pair", "elem"] = "batch"

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass(frozen=True, slots=True)
class OptimConfig(_Section):
    """Optimizer (any :func:`timm.optim.create_optimizer_v2` name), weight decay and the loss's label smoothing.

    ``lr`` is for the global batch as given; with ``lr_base_batch = B`` the effective lr is
    ``lr * global_batch / B`` (the "lr per 256 images" rule with B = 256).
    """

    name: str = "sgd"  # timm: "sgd" = Nesterov momentum SGD, "momentum" = plain momentum, "adamw", "lamb", ...
    lr: float = _f(0.5, ge=0.0)
    lr_base_batch: int | None = _f(None, ge=1)
    momentum: float = _f(0.9, ge=0.0, lt=1.0)
    eps: float | None = _f(None, gt=0.0)  # the optimizer's epsilon (None: timm's default for that optimizer)
    weight_decay: float = _f(2e-5, ge=0.0)
    decay_norm_and_bias: bool = False
    label_smoothing: float = _f(0.1, ge=0.0, lt=1.0)
    grad_clip: float | None = _f(None, gt=0.0)
    accum_steps: int = _f(1, ge=1)
    # Fine-tuning: lr x head_lr_scale for the classifier; layer-wise lr decay (lr x layer_decay ** (L - l) over timm's
    # group_matcher blocks, BEiT https://arxiv.org/abs/2106.08254); only the classifier trains for the first
    # freeze_backbone_epochs epochs (the backbone, its BatchNorm statistics included, stays bit-identical).
    head_lr_scale: float = _f(1.0, gt=0.0)
    layer_decay: float | None = _f(None, gt=0.0, le=1.0)
    freeze_backbone_epochs: int = _f(0, ge=0)

    def _check(self) -> None:
        from timm.optim import list_optimizers  # (timm.optim is only needed here)

        if self.name.lower() not in list_optimizers():
            raise RecipeError("name", f"unknown optimizer {self.name!r} (see timm.optim.list_optimizers())")


@dataclass(frozen=True, slots=True)
class ScheduleConfig(_Section):
    """Learning-rate schedule over ``epochs``, stepped per iteration, after a linear warm-up."""

    name: Literal["step", "cosine", "linear", "one_cycle", "constant"] = "cosine"
    epochs: int = _f(600, ge=1)
    warmup_epochs: float = _f(5.0, ge=0.0)
    warmup_lr: float = _f(0.0, ge=0.0)  # absolute lr at step 0 of the warm-up
    min_lr: float = _f(0.0, ge=0.0)
    step_size_epochs: float = _f(30.0, gt=0.0)  # may be fractional (EfficientNet: 2.4); steps = round(x * per epoch)
    gamma: float = _f(0.1, gt=0.0)
    milestones_epochs: tuple[int, ...] = _f((), ge=1)
    pct_start: float = _f(0.3, gt=0.0, lt=1.0)
    max_lr: float | None = _f(None, ge=0.0)  # one_cycle peak (None: the optimizer's lr)
    cycle_shape: Literal["linear", "cosine"] = "linear"

    def _check(self) -> None:
        if self.warmup_epochs >= self.epochs:
            raise RecipeError("warmup_epochs", f"must be < schedule.epochs = {self.epochs}, got {self.warmup_epochs}")
        if list(self.milestones_epochs) != sorted(set(self.milestones_epochs)):
            raise RecipeError("milestones_epochs", f"must be strictly increasing, got {self.milestones_epochs!r}")


@dataclass(frozen=True, slots=True)
class EmaConfig(_Section):
    """Weight EMA (the lecture's Polyak average), updated every ``every_k`` optimizer steps.

    ``decay`` is NOT used as it is: like torchvision's ``references/classification/train.py`` (``--model-ema-decay``),
    it is rescaled to the run's batch, processes, ``every_k`` and length before use, so that the EMA horizon does
    not depend on them. The ρ applied at each EMA update is::

        alpha = min(1, (1 - decay) * world_size * batch_size * accum_steps * every_k / schedule.epochs)
        ρ = 1 - alpha

    (:func:`timm_recipes.train.ema.adjust_ema_decay`; ``fit`` prints the effective ρ). Examples: ``decay=0.99``,
    batch 32, ``every_k=32``, one process: ρ = 0.98293 at 600 epochs, but ρ = 0 at 2 epochs (alpha clipped to 1:
    the EMA is then a copy of the raw weights at each update); the default 0.99998 with torchvision's 8 x 128 images
    over 600 epochs gives ρ = 0.99891. When the EMA weights of the best checkpoint end up clearly worse
    than its raw weights on val, ``fit`` says so and ``export`` (weights ``auto``) exports the raw ones.
    """

    enabled: bool = True
    decay: float = _f(0.99998, ge=0.0, le=1.0)
    every_k: int = _f(32, ge=1)
    warmup: bool = False
    eval: bool = True


@dataclass(frozen=True, slots=True)
class FixResConfig(_Section):
    """FixRes fine-tuning at the test resolution (https://arxiv.org/abs/1906.06423)."""

    enabled: bool = False
    test_sizes: tuple[int, ...] = _f((), ge=1)
    test_crop_pcts: tuple[float, ...] = _f((1.0,), gt=0.0, le=1.0)
    epochs: int = _f(2, ge=1)
    lr: float = _f(1e-3, ge=0.0)
    holdout_fraction: float = _f(0.1, gt=0.0, lt=1.0)
    from_ema: bool = True

    def _check(self) -> None:
        if not self.test_crop_pcts:
            raise RecipeError("test_crop_pcts", "must list at least one crop fraction")


@dataclass(frozen=True, slots=True)
class HubConfig(_Section):
    """Where ``timm-recipes publish`` puts the weights on the Hugging Face Hub."""

    repo_id: str | None = None
    tag: str | None = None
    private: bool = False
    license: str = "apache-2.0"

    def _check(self) -> None:
        if self.repo_id is not None and self.repo_id.count("/") != 1:
            raise RecipeError("repo_id", f"expected 'owner/name', got {self.repo_id!r}")


@dataclass(frozen=True, slots=True)
class RunConfig(_Section):
    """Where and how the run executes. ``output_dir`` may use ``{name}`` (the recipe's name)."""

    output_dir: str = "runs/{name}"
    seed: int = _f(0, ge=0)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    patience: int | None = _f(None, ge=1)  # early stopping; None = off
    monitor: Literal["ema", "raw"] = "ema"
    deterministic: bool = False
    log_interval: int = _f(50, ge=1)
    sync_bn: bool = False
    progress: bool = True
    sanity_check: bool = False  # the lecture's checks (data, initial loss, overfit one batch) before a new run

    def _check(self) -> None:
        if not self.output_dir:
            raise RecipeError("output_dir", "must be a folder path, got ''")
        try:
            self.output_dir.format(name="recipe")
        except (KeyError, IndexError, ValueError) as err:
            raise RecipeError(
                "output_dir",
                f"may use only the placeholder {{name}} (write {{{{ }}}} for a brace), got "
                f"{self.output_dir!r} ({type(err).__name__}: {err})",
            ) from None


@dataclass(frozen=True, slots=True)
class Recipe(_Section):
    """A complete training recipe. Sections may be given as dicts; missing keys take the defaults."""

    name: str = "custom"
    source: str = ""  # where the numbers come from (paper, blog post, reference script)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    fixres: FixResConfig = field(default_factory=FixResConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    run: RunConfig = field(default_factory=RunConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = (
        "model",
        "data",
        "aug",
        "mix",
        "optim",
        "schedule",
        "ema",
        "fixres",
        "hub",
        "run",
    )

    def _check(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name in (".", ".."):
            raise RecipeError("name", f"must be a non-empty name without path separators, got {self.name!r}")
        if self.model.init is None:  # random weights: unset preprocessing takes the ImageNet defaults
            unset = {k: v for k, v in AUG_DEFAULTS.items() if getattr(self.aug, k) is None}
            if unset:
                object.__setattr__(self, "aug", dataclasses.replace(self.aug, **unset))
        if self.optim.freeze_backbone_epochs >= self.schedule.epochs:
            raise RecipeError(
                "optim.freeze_backbone_epochs",
                f"must be < schedule.epochs = {self.schedule.epochs}, got {self.optim.freeze_backbone_epochs}",
            )
        if self.data.dataset == "digits" and self.model.num_classes is None:
            object.__setattr__(self, "model", dataclasses.replace(self.model, num_classes=10))
        if self.data.dataset == "digits" and self.model.num_classes != 10:
            raise RecipeError("model.num_classes", f"the digits data set has 10 classes, got {self.model.num_classes}")
        if self.aug.train_pipeline == "multiscale" and self.aug.scale_range[0] < self.aug.train_size:
            raise RecipeError(
                "aug.scale_range",
                f"the shortest side S_min = {self.aug.scale_range[0]} must be >= aug.train_size = "
                f"{self.aug.train_size} (a multi-scale crop is taken from the resized image)",
            )

    def replace(self, **changes: Any) -> Recipe:
        """A copy with top-level fields replaced (``recipe.replace(name="x")``); see also :func:`apply_overrides`."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------------------------
# Dicts, YAML, overrides
# --------------------------------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as nested plain dicts (tuples become lists), ready for YAML or JSON."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe: expected a Recipe, got {type(recipe).__name__}")
    return _to_plain(recipe)


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Build and validate a :class:`Recipe` from nested dicts; missing keys take the defaults.

    Raises:
        RecipeError: an unknown key, a wrong type or a value out of range, naming the dotted key.
    """
    if not isinstance(data, Mapping):
        raise RecipeError("", f"a recipe must be a mapping of sections, got {type(data).__name__}")
    return _convert(Recipe, data, "")


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``scale_range: [256, 480]``)."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The whole resolved recipe as YAML text, as :func:`save_recipe` writes it (and ``train --print-recipe``)."""
    text = yaml.dump(recipe_to_dict(recipe), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return f"# timm-recipes recipe {recipe.name!r}\n{text}"


def save_recipe(recipe: Recipe, path: str | os.PathLike[str]) -> Path:
    """Write ``recipe`` as YAML, atomically (temp file + rename): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = recipe_to_yaml(recipe)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_recipe_yaml(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML of a recipe file (safe loader: no Python tags), not yet checked as a recipe.

    Raises:
        FileNotFoundError: no such file.
        RecipeError: the file is not valid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe: no file {str(path)!r}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError("", f"{path}: not valid YAML: {err}") from None


def recipe_from_file_data(data: Any, path: str | os.PathLike[str]) -> Recipe:
    """:func:`recipe_from_dict` of a file's parsed YAML (empty file: the defaults); errors name the file."""
    try:
        return recipe_from_dict(data if data is not None else {})
    except RecipeError as err:
        raise RecipeError(err.key, f"{err.reason} (in {path})") from None


def read_recipe_file(path: str | os.PathLike[str]) -> Recipe:
    """Load a recipe from a YAML file (a preset by name: :func:`timm_recipes.recipes.load_recipe`).

    Raises:
        FileNotFoundError: no such file.
        RecipeError: the file is not valid YAML or not a valid recipe (the message names the key).
    """
    return recipe_from_file_data(read_recipe_yaml(path), path)


def _parse_override_value(tp: Any, text: str) -> Any:
    """A command-line string read as a YAML scalar/list, with two conveniences for the annotation ``tp``."""
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional and text.strip() in ("None", "none"):
        return None
    value = yaml.safe_load(text) if text.strip() else ("" if not optional else None)
    inner = [a for a in args if a is not type(None)] if optional else [tp]
    if len(inner) == 1 and typing.get_origin(inner[0]) is tuple and isinstance(value, (str, int, float)):
        parts = [p for p in str(value).split(",") if p.strip()] if isinstance(value, str) else [value]
        value = [yaml.safe_load(p) if isinstance(p, str) else p for p in parts]  # "160,224" -> [160, 224]
    if isinstance(value, (int, float, bool)) and _is_str_type(tp):
        value = text  # a name such as "1" or "yes" stays a string where the field is a string
    return value


def _is_str_type(tp: Any) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return all(a is str for a in args)


def _field_type(key: str) -> Any:
    """The annotation of the dotted ``key`` (``RecipeError`` if there is no such key)."""
    tp: Any = Recipe
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            raise RecipeError(".".join(parts[:depth]), f"is not a section, cannot set {key!r}")
        hints = _hints(tp)
        if part not in hints:
            raise RecipeError(".".join(parts[: depth + 1]), f"unknown key (known: {', '.join(hints)})")
        tp = hints[part]
    return tp


def apply_overrides(recipe: Recipe, overrides: Iterable[str] | Mapping[str, Any]) -> Recipe:
    """A copy of ``recipe`` with dotted keys changed: ``["optim.lr=0.1", "aug.scale_range=[256, 480]"]``.

    Strings are parsed as YAML scalars or flow lists (``null``/``None`` for an optional key, ``160,224`` for a
    tuple); a mapping ``{"optim.lr": 0.1}`` is taken as it is. Every value is type-checked like a YAML file.

    Raises:
        RecipeError: a malformed override, an unknown key, a wrong type or a value out of range.
    """
    if isinstance(overrides, Mapping):
        items = [(str(k), v, False) for k, v in overrides.items()]
    else:
        if isinstance(overrides, str):
            raise TypeError("overrides: expected a list of 'key=value' strings or a mapping, got a single string")
        items = []
        for item in overrides:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise RecipeError("", f"override {item!r}: expected 'section.key=value'")
            items.append((key.strip(), text, True))
    data = recipe_to_dict(recipe)
    for key, value, from_text in items:
        tp = _field_type(key)
        if from_text:
            try:
                value = _parse_override_value(tp, value)
            except yaml.YAMLError as err:
                raise RecipeError(key, f"cannot parse {value!r}: {err}") from None
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node[p]
        if isinstance(node.get(leaf), dict) and isinstance(value, Mapping):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value
    return recipe_from_dict(data)


# --------------------------------------------------------------------------------------------------------------
# A human summary (model cards, the demo's printout)
# --------------------------------------------------------------------------------------------------------------
def _g(x: float) -> str:
    return f"{x:g}"


def _optional(value: float | None, default: str = "model default") -> str:
    return default if value is None else _g(value)


def recipe_summary(recipe: Recipe) -> list[tuple[str, str]]:
    """The recipe's ingredients as ``(ingredient, setting)`` rows, for tables in model cards and printouts."""
    m, a, x, o, s, e = recipe.model, recipe.aug, recipe.mix, recipe.optim, recipe.schedule, recipe.ema
    per = f"per {o.lr_base_batch} images" if o.lr_base_batch else "for the global batch"
    momentum = f", momentum {_g(o.momentum)}" if o.name in ("sgd", "momentum", "nesterov", "rmsproptf") else ""
    schedule = s.name + (f", {_g(s.warmup_epochs)} warm-up epochs" if s.warmup_epochs else "")
    if s.name == "step":
        when = (
            f"at epochs {list(s.milestones_epochs)}"
            if s.milestones_epochs
            else f"every {_g(s.step_size_epochs)} epochs"
        )
        schedule += f", x{_g(s.gamma)} {when}"
    if a.train_pipeline == "multiscale":
        crops = f"multi-scale: short side in [{a.scale_range[0]}, {a.scale_range[1]}], crop {a.train_size}"
    else:
        crops = f"random resized crop {a.train_size}, area {list(a.rrc_scale)}"
    if a.hflip:
        crops += f", flip {_g(a.hflip)}"
    cutout = f"p {_g(a.cutout_p)}, {a.cutout_holes} x {_g(a.cutout_size)} of the side" if a.cutout_p else "off"
    mix = f"alpha {_g(x.mixup_alpha)} / {_g(x.cutmix_alpha)}, p {_g(x.prob)}" if x.enabled else "off"
    depth = _optional(m.drop_path_rate) + (f" ({m.stochastic_depth_mode})" if m.stochastic_depth_mode else "")
    batch = str(recipe.data.batch_size) + (f" x {o.accum_steps} accumulated" if o.accum_steps > 1 else "")
    rows = [
        ("model", f"{m.name} ({m.num_classes if m.num_classes is not None else 'as many as the data'} classes)"),
        ("data", recipe.data.dataset + (f" ({recipe.data.root})" if recipe.data.root else "")),
        ("epochs", str(s.epochs)),
        ("batch size per process", batch),
        ("optimizer", f"{o.name}, lr {_g(o.lr)} {per}{momentum}"),
        ("weight decay", _g(o.weight_decay) + ("" if o.decay_norm_and_bias else " (not on norms and biases)")),
        ("schedule", schedule),
        ("label smoothing", _g(o.label_smoothing)),
        ("train crops", crops),
        ("Cutout", cutout),
        ("Mixup / CutMix", mix),
        ("dropout", _optional(m.drop_rate)),
        ("stochastic depth", depth),
        ("EMA", f"decay {_g(e.decay)} every {e.every_k} steps" if e.enabled else "off"),
        ("train / test size", f"{a.train_size} / {a.test_size} (resize {math.floor(a.test_size / a.test_crop_pct)})"),
    ]
    if o.grad_clip is not None:
        rows.append(("gradient clipping", _g(o.grad_clip)))
    if m.init is not None:  # fine-tuning (a local path is not shown: it means nothing on another machine)
        local = not m.init.startswith("hf-hub:") and ("/" in m.init or m.init.startswith(("local-dir:", ".", "~")))
        rows.append(("initial weights", "local weights" if local else m.init))
        tuning = [
            f"classifier lr x{_g(o.head_lr_scale)}" if o.head_lr_scale != 1 else "",
            f"layer-wise lr decay {_g(o.layer_decay)}" if o.layer_decay is not None else "",
            f"backbone frozen for {o.freeze_backbone_epochs} epochs" if o.freeze_backbone_epochs else "",
            "BatchNorm statistics frozen" if m.freeze_bn else "",
        ]
        if any(tuning):
            rows.append(("fine-tuning", ", ".join(t for t in tuning if t)))
    if recipe.fixres.enabled:
        fr = recipe.fixres
        rows.append(("FixRes", f"fine-tune {fr.epochs} epochs at lr {_g(fr.lr)}, test sizes {list(fr.test_sizes)}"))
    if recipe.source:
        rows.append(("source", recipe.source))
    return rows

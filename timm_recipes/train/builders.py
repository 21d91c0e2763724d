"""Recipe → objects: the builders that :func:`~timm_recipes.train.trainer.fit`, FixRes, evaluation, search, the
journey and the sanity checks share, so that none of them re-derives a dataset, a loader, a model, a schedule or an
EMA from a recipe on its own.

Each builder is a function of the recipe (and of what it needs from the run: the process group, the device); none
writes anything.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.data import Dataset

from timm_recipes.config import Recipe, recipe_from_dict
from timm_recipes.train.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from timm_recipes.train.distributed import Distributed
from timm_recipes.train.ema import WeightEma, adjust_ema_decay
from timm_recipes.train.schedules import LRScheduler, create_scheduler

__all__ = [
    "DataSplits",
    "build_datasets",
    "build_eval_dataset",
    "create_ema",
    "create_eval_loader",
    "create_mixing",
    "create_recipe_model",
    "create_schedule",
    "create_train_loader",
    "eval_pipeline_for",
    "load_checkpoint_model",
    "resolve_init",
    "resolve_monitor",
    "train_pipeline",
    "with_data_classes",
    "with_init_preprocessing",
]


# ================================================================================================ data
@dataclass(frozen=True)
class DataSplits:
    """The datasets of a recipe: train, val and (if present) test, with their pipelines attached."""

    train: Dataset
    val: Dataset
    test: Dataset | None
    num_classes: int
    classes: list[str]
    origin: str


def train_pipeline(recipe: Recipe) -> Any:
    from timm_recipes.data.pipelines import CutoutConfig, multiscale_crop_pipeline, random_resized_crop_pipeline

    aug = with_init_preprocessing(recipe).aug
    cutout = CutoutConfig(p=aug.cutout_p, num_holes=aug.cutout_holes, size=aug.cutout_size) if aug.cutout_p else None
    common = {
        "hflip": aug.hflip,
        "cutout": cutout,
        "mean": aug.mean,
        "std": aug.std,
        "interpolation": aug.interpolation,
    }
    if aug.train_pipeline == "multiscale":
        return multiscale_crop_pipeline(crop_size=aug.train_size, scale_range=aug.scale_range, **common)
    return random_resized_crop_pipeline(size=aug.train_size, scale=aug.rrc_scale, ratio=aug.rrc_ratio, **common)


def eval_pipeline_for(recipe: Recipe) -> Any:
    from timm_recipes.data.pipelines import eval_pipeline

    aug = with_init_preprocessing(recipe).aug
    return eval_pipeline(
        input_size=aug.test_size,
        crop_pct=aug.test_crop_pct,
        interpolation=aug.interpolation,
        mean=aug.mean,
        std=aug.std,
    )


def build_datasets(recipe: Recipe) -> DataSplits:
    """The recipe's datasets: the built-in digits, ``data.root/{train,val[,test]}`` image folders, WebDataset
    shards or a Hugging Face dataset (:mod:`timm_recipes.data.sources`).

    Raises:
        ValueError: ``data.root`` unset, class lists that differ between splits, or a class count that is not
            ``model.num_classes``.
        FileNotFoundError: A missing folder or a class folder without images (named).
    """
    from timm_recipes.data.datasets import DigitsDataset, ImageFolderDataset

    d = recipe.data
    train_tf, eval_tf = train_pipeline(recipe), eval_pipeline_for(recipe)
    if d.dataset in ("wds", "hfds"):  # timm_recipes.data.sources
        from timm_recipes.data.sources import build_split

        splits = [build_split(recipe, "train", train_tf), build_split(recipe, "val", eval_tf)]
        test = build_split(recipe, "test", eval_tf, required=False)
        classes, origin = list(splits[0].classes), f"{d.root or d.train_shards} ({d.dataset})"
    elif d.dataset == "digits":
        size = d.image_size
        k = d.train_per_class
        splits = [
            DigitsDataset("train", size=size, transform=train_tf, train_per_class=k),
            DigitsDataset("val", size=size, transform=eval_tf),
        ]
        test = DigitsDataset("test", size=size, transform=eval_tf)
        classes, origin = list(DigitsDataset.classes), f"built-in digits at {size} px"
        if k is not None:
            origin += f", {k} training images per class"
    else:
        if d.root is None:
            raise ValueError("data.root must name a folder with train/ and val/ sub-folders when data.dataset='folder'")
        root = Path(d.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root {str(root)!r} does not exist or is not a folder")
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise FileNotFoundError(
                    f"data.root {str(root)!r} has no {split}/ folder (expected root/{split}/<class>/)"
                )
        splits = [
            ImageFolderDataset(root / "train", train_tf, skip_corrupt=d.skip_corrupt),
            ImageFolderDataset(root / "val", eval_tf, skip_corrupt=d.skip_corrupt),
        ]
        test = (
            ImageFolderDataset(root / "test", eval_tf, skip_corrupt=d.skip_corrupt)
            if (root / "test").is_dir()
            else None
        )
        classes, origin = list(splits[0].classes), str(root)
        for other in [splits[1], *([test] if test is not None else [])]:
            if other.classes != classes:
                raise ValueError(f"the classes of {other.root} differ from those of {root / 'train'}: {other.classes}")
    if len(classes) != recipe.model.num_classes:
        raise ValueError(
            f"model.num_classes={recipe.model.num_classes} but the data ({origin}) has {len(classes)} classes"
        )
    return DataSplits(splits[0], splits[1], test, len(classes), classes, origin)


def with_data_classes(recipe: Recipe) -> Recipe:
    """``recipe`` with ``model.num_classes = None`` replaced by the class count of ``data.root/train``."""
    import dataclasses

    if recipe.model.num_classes is not None:
        return recipe
    train = Path(recipe.data.root or "") / "train"
    if recipe.data.root is None or not train.is_dir():
        raise ValueError(
            f"model.num_classes is null (take it from the data) but data.root={recipe.data.root!r} has no train/ "
            f"folder; set data.root to a folder with train/<class>/ sub-folders, or set model.num_classes"
        )
    count = sum(1 for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
    if count < 1:
        raise FileNotFoundError(f"data.root {recipe.data.root!r}: train/ holds no class folders")
    return recipe.replace(model=dataclasses.replace(recipe.model, num_classes=count))


def build_eval_dataset(recipe: Recipe, split: str) -> Dataset:
    """One evaluation split (``"val"`` or ``"test"``) of the recipe's data, with the recipe's eval pipeline."""
    from timm_recipes.data.datasets import DigitsDataset, ImageFolderDataset

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    d = recipe.data
    if d.dataset in ("wds", "hfds"):
        from timm_recipes.data.sources import build_split

        return build_split(recipe, split, eval_pipeline_for(recipe))
    if d.dataset == "digits":
        return DigitsDataset(split, size=d.image_size, transform=eval_pipeline_for(recipe))
    if d.root is None:
        raise ValueError("data.root must name a folder when data.dataset='folder'")
    folder = Path(d.root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root {d.root!r} has no {split}/ folder")
    return ImageFolderDataset(folder, eval_pipeline_for(recipe), skip_corrupt=d.skip_corrupt)


def create_mixing(
    recipe: Recipe, num_classes: int, device: torch.device, generator: torch.Generator
) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None]:
    """Mixup/CutMix as ``(collate_fn, batch_transform)``: at most one of them is set.

    On the CPU the batch is mixed by the loader's collate function (in the workers, beside the augmentations). On a
    GPU it is mixed after the copy, in place, as timm's training loop does: microseconds there instead of CPU time
    on the critical path. The draws come from ``generator`` (reseeded every epoch) either way.
    """
    from timm_recipes.data.mixing import MixupCutmix, MixupCutmixCollator

    mix = recipe.mix
    if not mix.enabled:
        return None, None
    kwargs = {
        "mixup_alpha": mix.mixup_alpha, "cutmix_alpha": mix.cutmix_alpha, "prob": mix.prob,
        "switch_prob": mix.switch_prob, "mode": mix.mode, "label_smoothing": recipe.optim.label_smoothing,
        "generator": generator,
    }  # fmt: skip
    if device.type == "cuda":
        return None, functools.partial(MixupCutmix(num_classes, **kwargs), inplace=True)
    return MixupCutmixCollator(num_classes, **kwargs), None


def create_train_loader(
    recipe: Recipe,
    data: DataSplits,
    dist: Distributed,
    device: torch.device,
    collate: Callable[..., Any] | None,
    batch_transform: Callable[..., Any] | None = None,
) -> Any:
    """The training loader. On CUDA the workers emit uint8 and a :class:`~timm_recipes.data.prefetch.
    DevicePrefetcher` normalises on the GPU and applies ``batch_transform`` (Mixup/CutMix) there; it then has
    ``applies_batch_transform = True`` and the caller must not apply ``batch_transform`` again."""
    from timm_recipes.data.datasets import create_loader
    from timm_recipes.data.prefetch import uint8_dataset

    d = recipe.data
    cuda = device.type == "cuda"
    dataset, mean, std = uint8_dataset(data.train) if cuda else (data.train, None, None)
    if hasattr(dataset, "loader"):  # an iterable source (shards) deals itself over ranks and workers
        loader = dataset.loader(
            batch_size=d.batch_size, train=True, num_workers=d.num_workers, seed=recipe.run.seed, rank=dist.rank,
            world_size=dist.world_size, collate_fn=collate, pin_memory=d.pin_memory and cuda,
            persistent_workers=_persistent(recipe),
        )  # fmt: skip
        return _on_device(loader, recipe, device, mean, std, batch_transform)
    sampler = dist.train_sampler(data.train, seed=recipe.run.seed, batch_size=d.batch_size)
    per_epoch = len(sampler) if sampler is not None else len(data.train)
    if sampler is not None and per_epoch == 0:
        raise ValueError(
            f"data.batch_size={d.batch_size} x {dist.world_size} processes = a global batch of "
            f"{d.batch_size * dist.world_size} images, more than the {len(data.train)} training images of "
            f"{data.origin}; lower data.batch_size or the number of processes"
        )
    if d.batch_size > per_epoch:
        raise ValueError(
            f"data.batch_size={d.batch_size} is larger than the {per_epoch} training images of {data.origin} "
            f"(per process); lower data.batch_size"
        )
    loader = create_loader(
        dataset, batch_size=d.batch_size, shuffle=sampler is None, num_workers=d.num_workers, seed=recipe.run.seed,
        collate_fn=collate, drop_last=True, sampler=sampler, pin_memory=d.pin_memory and cuda,
        persistent_workers=_persistent(recipe),
    )  # fmt: skip
    return _on_device(loader, recipe, device, mean, std, batch_transform)


def _persistent(recipe: Recipe) -> bool:
    """``data.persistent_workers``, which applies only to worker processes (there are none with num_workers=0)."""
    return recipe.data.persistent_workers and recipe.data.num_workers > 0


def _on_device(
    loader: Any,
    recipe: Recipe,
    device: torch.device | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    batch_transform: Callable[..., Any] | None = None,
) -> Any:
    """On CUDA: ``loader`` behind a :class:`~timm_recipes.data.prefetch.DevicePrefetcher`; elsewhere as it is."""
    from timm_recipes.data.prefetch import DevicePrefetcher

    if device is None or device.type != "cuda":
        return loader
    return DevicePrefetcher(
        loader, device, mean=mean, std=std, channels_last=recipe.run.channels_last, batch_transform=batch_transform
    )


def create_eval_loader(
    recipe: Recipe, dataset: Dataset, dist: Distributed | None = None, device: torch.device | None = None
) -> Any:
    """A loader over ``dataset`` in its order (no shuffle, no drop), with the recipe's batch size and workers (on
    CUDA: uint8 workers and GPU normalisation, as in :func:`create_train_loader`)."""
    from timm_recipes.data.datasets import create_loader
    from timm_recipes.data.prefetch import uint8_dataset

    d = recipe.data
    cuda = device is not None and device.type == "cuda"
    source, mean, std = uint8_dataset(dataset) if cuda else (dataset, None, None)
    if hasattr(source, "loader"):  # an iterable source: every sample on exactly one (rank, worker)
        rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        loader = source.loader(batch_size=d.batch_size, train=False, num_workers=d.num_workers, seed=recipe.run.seed,
                               rank=rank, world_size=world, pin_memory=d.pin_memory and cuda,
                               persistent_workers=_persistent(recipe))  # fmt: skip
    else:
        sampler = dist.eval_sampler(dataset) if dist is not None else None
        loader = create_loader(
            source, batch_size=d.batch_size, shuffle=False, num_workers=d.num_workers, seed=recipe.run.seed,
            sampler=sampler, pin_memory=d.pin_memory and cuda, persistent_workers=_persistent(recipe),
        )  # fmt: skip
    return _on_device(loader, recipe, device, mean, std)


# ================================================================================================ model
def resolve_init(recipe: Recipe) -> Any:
    """The :class:`~timm_recipes.train.weights.WeightsSource` of ``model.init`` (``None``: random weights)."""
    from timm_recipes.train.weights import resolve_weights

    m = recipe.model
    return None if m.init is None else resolve_weights(m.init, m.name, which=m.init_weights)


def with_init_preprocessing(recipe: Recipe, source: Any = None) -> Recipe:
    """``recipe`` with unset ``aug.mean`` / ``std`` / ``interpolation`` filled from ``model.init``'s weights."""
    from timm_recipes.train.weights import with_source_preprocessing

    if all(getattr(recipe.aug, k) is not None for k in ("mean", "std", "interpolation")):
        return recipe
    return with_source_preprocessing(recipe, source if source is not None else resolve_init(recipe))


def create_recipe_model(recipe: Recipe, *, num_classes: int | None = None, source: Any = None) -> nn.Module:
    """``timm.create_model`` with the recipe's model section (``None`` values keep the model's defaults).

    With ``source`` (:func:`resolve_init`), its weights are loaded: everything but a classifier of another class
    count must fit exactly (:func:`~timm_recipes.train.weights.load_source_into`).
    """
    import timm_recipes  # noqa: F401  (registers the recipe_* models)

    m = recipe.model
    kwargs: dict[str, Any] = {"num_classes": num_classes or m.num_classes, "in_chans": m.in_chans}
    for key in ("drop_rate", "drop_path_rate", "stochastic_depth_mode"):
        if getattr(m, key) is not None:
            kwargs[key] = getattr(m, key)
    if not timm.is_model(m.name):
        raise ValueError(f"model.name: unknown timm model {m.name!r}")
    model = timm.create_model(m.name, **kwargs)
    if source is not None:
        from timm_recipes.train.weights import load_source_into

        load_source_into(model, source)
    return model


# ================================================================================================ schedule, EMA
def create_schedule(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int, lr: float) -> LRScheduler:
    s = recipe.schedule
    total = s.epochs * steps_per_epoch
    warmup = round(s.warmup_epochs * steps_per_epoch)
    if total <= warmup:
        raise ValueError(
            f"schedule.warmup_epochs={s.warmup_epochs} gives {warmup} warm-up steps, not fewer than the {total} steps "
            f"of schedule.epochs={s.epochs} x {steps_per_epoch} steps per epoch"
        )
    return create_scheduler(
        s.name, optimizer, total, warmup, warmup_lr=s.warmup_lr, min_lr=s.min_lr,
        step_size=max(1, round(s.step_size_epochs * steps_per_epoch)), gamma=s.gamma,
        milestones=[m * steps_per_epoch for m in s.milestones_epochs] or None, pct_start=s.pct_start,
        max_lr=s.max_lr if s.max_lr is not None else lr, cycle_shape=s.cycle_shape,
    )  # fmt: skip


def create_ema(recipe: Recipe, model: nn.Module, dist: Distributed) -> WeightEma | None:
    e = recipe.ema
    if not e.enabled:
        return None
    per_step_batch = recipe.data.batch_size * recipe.optim.accum_steps
    decay = adjust_ema_decay(
        e.decay, batch_size=per_step_batch, epochs=recipe.schedule.epochs, every_k=e.every_k, world_size=dist.world_size
    )
    return WeightEma(model, decay=decay, every_k=e.every_k, warmup=e.warmup)


def resolve_monitor(recipe: Recipe, ema: WeightEma | None) -> str:
    if recipe.run.monitor == "ema" and (ema is None or not recipe.ema.eval):
        warnings.warn(
            "run.monitor='ema' but EMA weights are not evaluated (ema.enabled or ema.eval is false): "
            "monitoring the raw weights instead",
            stacklevel=3,
        )
        return "raw"
    return recipe.run.monitor


# ================================================================================================ checkpoints
def load_checkpoint_model(
    path: str | os.PathLike[str], *, which: str = "auto", tag: str = "best", device: str | torch.device = "cpu"
) -> tuple[nn.Module, Recipe, Checkpoint]:
    """Rebuild a trained model from a checkpoint: its recipe, then the chosen weights (checked to fit).

    Args:
        path: A checkpoint folder, tag file, ``checkpoints/`` folder or run folder.
        which: ``"ema"``, ``"raw"``, or ``"auto"`` (EMA when the checkpoint has it).
        tag: ``"best"`` or ``"last"`` for a run or ``checkpoints/`` folder.
        device: Where to put the model.

    Returns:
        ``(model in eval mode, recipe, checkpoint)``.
    """
    if which not in ("auto", "ema", "raw"):
        raise ValueError(f"which must be 'auto', 'ema' or 'raw', got {which!r}")
    from timm_recipes.train.weights import checkpoint_source, load_source_into

    checkpoint = open_checkpoint(path, tag=tag)
    recipe = recipe_from_dict(checkpoint.recipe())
    model = create_recipe_model(recipe, num_classes=checkpoint.num_classes)
    use_ema = which == "ema" or (which == "auto" and checkpoint.has_ema)
    source = checkpoint_source(checkpoint, "ema" if use_ema else "raw")
    try:  # the one loader (every key, exactly); a classifier that does not fit is an error here, not a new head
        fresh = load_source_into(model, source, what=f"checkpoint {checkpoint.path}")
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if fresh:
        raise CheckpointError(f"checkpoint {checkpoint.path}: its classifier does not fit {recipe.model.name}: {fresh}")
    return model.to(device).eval(), recipe, checkpoint

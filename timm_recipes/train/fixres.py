"""FixRes: choose the test resolution, then fine-tune the classifier and the last BatchNorm at that resolution.

Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019, https://arxiv.org/abs/1906.06423.
Random training crops make objects look larger than the test-time centre crop does, so a network is best
evaluated at a *higher* resolution than it was trained at; but a larger input also shifts the statistics of the
features that reach global average pooling. FixRes fixes both:

(a) :func:`select_test_resolution` evaluates candidate test sizes and crop fractions on a held-out split of the
    training data (never the test split) and keeps the best one;
(b) :func:`fixres_finetune` fine-tunes at that resolution only the classifier and the last BatchNorm before
    pooling (found by :func:`find_last_batchnorm`), everything else frozen; that BatchNorm runs in train mode and
    re-estimates its statistics while every other one stays in eval mode. Training images go through the
    *test-time* pipeline (``eval_pipeline`` at the test size), as in the paper.

The chosen ``test_input_size`` / ``test_crop_pct`` are written into the model's ``pretrained_cfg``, where timm's
``resolve_data_config(use_test_size=True)`` and this package's ``eval_pipeline_from_model`` read them.
:func:`run_fixres` does (a) and (b) for a training run's checkpoint (EMA weights by default) and measures the
accuracy at the train size and at the chosen size before and after fine-tuning.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset, Subset

from timm_recipes._files import apply_umask, check_writable
from timm_recipes.train.engine import evaluate
from timm_recipes.train.optim import create_optimizer
from timm_recipes.train.schedules import create_scheduler

__all__ = [
    "FixResResult",
    "best_candidate",
    "evaluate_candidates",
    "find_last_batchnorm",
    "fixres_finetune",
    "fixres_train_mode",
    "freeze_for_fixres",
    "open_run_checkpoint",
    "run_fixres",
    "save_fixres",
    "select_test_resolution",
    "set_test_resolution",
    "with_transform",
]

_LOG = logging.getLogger("timm_recipes.fixres")

#: Candidate test sizes as multiples of the train size when a recipe lists none (the paper's best test size for
#: 224-pixel RandomResizedCrop training is 288, a factor of about 1.29).
DEFAULT_SIZE_FACTORS = (1.0, 1.125, 1.25, 1.375, 1.5)


# ------------------------------------------------------------------------------------------------ the model side
def find_last_batchnorm(model: nn.Module, *, probe_size: int = 64) -> tuple[str, _BatchNorm]:
    """The last BatchNorm module that runs in ``forward_features``, i.e. the last one before global pooling.

    Found by running ``forward_features`` once on a zero image (in eval mode, without gradients) with a hook on
    every BatchNorm, so it follows the forward order rather than the order of registration: ``layer4[-1].bn3``
    (Bottleneck) or ``layer4[-1].bn2`` (BasicBlock) of a ResNet, ``bn2`` after ``conv_head`` of an EfficientNet.

    Args:
        model: A timm-style model with ``forward_features`` (else its ``forward`` is used).
        probe_size: Side of the probe image.

    Returns:
        The module's qualified name and the module.

    Raises:
        ValueError: The model has no BatchNorm, or none runs in its feature extractor.
    """
    names = {module: name for name, module in model.named_modules() if isinstance(module, _BatchNorm)}
    if not names:
        raise ValueError("model has no BatchNorm layer: FixRes fine-tunes the last BatchNorm before pooling")
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _inp, _out: calls.append(mod)) for m in names]
    was_training = model.training
    ref = next(model.parameters())
    in_chans = int((getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3,))[0])
    try:
        model.eval()
        with torch.no_grad():
            probe = torch.zeros(1, in_chans, probe_size, probe_size, device=ref.device, dtype=ref.dtype)
            getattr(model, "forward_features", model)(probe)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if not calls:
        raise ValueError("no BatchNorm layer runs in the model's forward_features")
    return names[calls[-1]], calls[-1]  # type: ignore[return-value]


def freeze_for_fixres(model: nn.Module, bn_name: str | None = None) -> tuple[str, list[nn.Parameter]]:
    """Freeze every parameter except those of the classifier and of the last BatchNorm before pooling.

    Args:
        model: A timm model (``get_classifier()`` names its classifier).
        bn_name: The BatchNorm to tune; default :func:`find_last_batchnorm`.

    Returns:
        The BatchNorm's name and the parameters left trainable (classifier first).
    """
    if not callable(getattr(model, "get_classifier", None)):
        raise TypeError(f"model must be a timm model with get_classifier(), got {type(model).__name__}")
    head = model.get_classifier()
    head_params = list(head.parameters()) if isinstance(head, nn.Module) else []
    if not head_params:
        raise ValueError("model.get_classifier() has no parameters (classifier reset to Identity?)")
    if bn_name is None:
        bn_name, bn = find_last_batchnorm(model)
    else:
        bn = model.get_submodule(bn_name)
        if not isinstance(bn, _BatchNorm):
            raise ValueError(f"bn_name must name a BatchNorm module, {bn_name!r} is a {type(bn).__name__}")
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = head_params + [p for p in bn.parameters() if all(p is not q for q in head_params)]
    for p in trainable:
        p.requires_grad_(True)
    return bn_name, trainable


def fixres_train_mode(model: nn.Module, bn: nn.Module) -> None:
    """Everything in eval mode (frozen BatchNorm statistics, no dropout) except ``bn``, which re-estimates its own."""
    model.eval()
    bn.train()


def set_test_resolution(model: nn.Module, test_size: int, crop_pct: float) -> dict[str, Any]:
    """Write ``test_input_size`` (C, S, S) and ``test_crop_pct`` into ``model.pretrained_cfg`` and return it."""
    _check_size("test_size", test_size)
    _check_crop("crop_pct", crop_pct)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    in_chans = int(cfg.get("input_size", (3,))[0])
    cfg["test_input_size"] = (in_chans, int(test_size), int(test_size))
    cfg["test_crop_pct"] = float(crop_pct)
    model.pretrained_cfg = cfg
    if hasattr(model, "default_cfg"):
        model.default_cfg = cfg  # timm keeps the legacy alias pointing at the same dict
    return cfg


# ------------------------------------------------------------------------------------------------- the data side
def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_crop(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def with_transform(dataset: Dataset, transform: Any) -> Dataset:
    """A shallow copy of ``dataset`` whose ``transform`` is replaced (through ``Subset`` wrappers).

    The datasets of this package (``DigitsDataset``, ``ImageFolderDataset``) return uint8 images through their
    ``transform`` attribute, so one data set can be evaluated at several test-time pipelines.
    """
    if isinstance(dataset, Subset):
        return Subset(with_transform(dataset.dataset, transform), dataset.indices)
    if not hasattr(dataset, "transform"):
        raise TypeError(
            f"dataset must have a `transform` attribute (like DigitsDataset or ImageFolderDataset) or be a Subset "
            f"of one, got {type(dataset).__name__}"
        )
    out = copy.copy(dataset)
    out.transform = transform
    return out


def _preprocessing(model: nn.Module, interpolation: str | None, mean: Any, std: Any) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "interpolation": interpolation or cfg.get("interpolation", "bilinear"),
        "mean": tuple(mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(std if std is not None else cfg.get("std", (0.229, 0.224, 0.225))),
    }


def _pipeline(size: int, crop_pct: float, prep: dict[str, Any]) -> Any:
    from timm_recipes.data.pipelines import eval_pipeline

    return eval_pipeline(input_size=size, crop_pct=crop_pct, **prep)


def _device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _eval_at(
    model: nn.Module,
    dataset: Dataset,
    size: int,
    crop_pct: float,
    prep: dict[str, Any],
    *,
    batch_size: int,
    device: torch.device,
    num_workers: int,
) -> dict[str, float]:
    from timm_recipes.data.datasets import create_loader

    loader = create_loader(
        with_transform(dataset, _pipeline(size, crop_pct, prep)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    return evaluate(model, loader, device=device, desc=f"eval {size}px crop {crop_pct:g}")


# ----------------------------------------------------------------------------------------------- (a) selection
def evaluate_candidates(
    model: nn.Module,
    holdout_dataset: Dataset,
    candidates: Sequence[tuple[int, float]],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
) -> list[dict[str, float]]:
    """Top-1 (percent) and cross-entropy of ``model`` on ``holdout_dataset`` at each ``(size, crop_pct)``.

    Arguments as for :func:`select_test_resolution`; returns its ``table``.
    """
    checked = [(_check_size("size", s), _check_crop("crop_pct", c)) for s, c in candidates]
    if not checked:
        raise ValueError("candidates must list at least one (size, crop_pct)")
    _check_size("batch_size", batch_size)
    dev = _device(device, model)
    model.to(dev)
    prep = _preprocessing(model, interpolation, mean, std)
    table = []
    for i, (size, crop) in enumerate(checked):
        m = _eval_at(
            model, holdout_dataset, size, crop, prep, batch_size=batch_size, device=dev, num_workers=num_workers
        )
        table.append({"size": size, "crop_pct": crop, "top1": m["top1"], "loss": m["loss"], "n": m["n"]})
        _LOG.info("fixres candidate %d/%d: %dpx crop %g: top-1 %.2f %%", i + 1, len(checked), size, crop, m["top1"])
    return table


def best_candidate(table: Sequence[dict[str, float]]) -> tuple[int, float]:
    """The row with the highest top-1; ties go to the lower cross-entropy, then to the earlier row."""
    if not table:
        raise ValueError("table is empty")
    best = max(range(len(table)), key=lambda i: (table[i]["top1"], -table[i]["loss"], -i))
    return int(table[best]["size"]), float(table[best]["crop_pct"])


def select_test_resolution(
    model: nn.Module,
    holdout_dataset: Dataset,
    sizes: Sequence[int],
    crop_pcts: Sequence[float],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
) -> tuple[int, float, list[dict[str, float]]]:
    """Evaluate every (test size, crop fraction) on held-out training images and return the best one.

    The held-out images must come from the training data (e.g. the validation split carved out of it), never from
    the test split: the choice is a hyper-parameter and the test split must stay unseen. The best candidate has
    the highest top-1; ties go to the lower cross-entropy, then to the earlier candidate.

    Args:
        model: The trained model (evaluated in eval mode, unchanged).
        holdout_dataset: Held-out training images with a replaceable ``transform`` (see :func:`with_transform`).
        sizes: Candidate test sizes (the side of the centre crop, pixels).
        crop_pcts: Candidate crop fractions: resize the short side to ``size / crop_pct``, centre-crop ``size``.
        batch_size: Evaluation batch size.
        device: Where to evaluate (default: where the model is; ``"auto"``: CUDA if available).
        interpolation: Resize interpolation (default: the model's ``pretrained_cfg``).
        mean: Normalisation mean (default: the model's ``pretrained_cfg``).
        std: Normalisation std (default: the model's ``pretrained_cfg``).
        num_workers: Loader workers.

    Returns:
        ``(best_size, best_crop_pct, table)``; ``table`` has one row per candidate with ``size``, ``crop_pct``,
        ``top1`` (percent), ``loss`` and ``n``, sizes in the outer loop.
    """
    sizes = [_check_size("sizes", s) for s in sizes]
    crop_pcts = [_check_crop("crop_pcts", c) for c in crop_pcts]
    if not sizes or not crop_pcts:
        raise ValueError(f"sizes and crop_pcts must each list at least one candidate, got {sizes} and {crop_pcts}")
    table = evaluate_candidates(
        model,
        holdout_dataset,
        [(s, c) for s in sizes for c in crop_pcts],
        batch_size=batch_size,
        device=device,
        interpolation=interpolation,
        mean=mean,
        std=std,
        num_workers=num_workers,
    )
    size, crop = best_candidate(table)
    return size, crop, table


# ----------------------------------------------------------------------------------------------- (b) fine-tuning
def fixres_finetune(
    model: nn.Module,
    train_dataset: Dataset,
    *,
    test_size: int,
    crop_pct: float,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    num_workers: int = 0,
) -> nn.Module:
    """Fine-tune the classifier and the last BatchNorm before pooling at the test resolution (in place).

    Training images pass through the test-time pipeline (``eval_pipeline(test_size, crop_pct)``): no random
    crops, so the network sees objects at their test-time size. Only the classifier and that BatchNorm receive
    gradients (Nesterov SGD, cosine schedule per iteration); the BatchNorm is in train mode and re-estimates its
    running statistics, every other module stays in eval mode. Afterwards every parameter's ``requires_grad`` is
    restored, the model is left in eval mode, and ``test_input_size`` / ``test_crop_pct`` are written into its
    ``pretrained_cfg``.

    Args:
        model: The trained model (its EMA weights, typically).
        train_dataset: Training images with a replaceable ``transform`` (see :func:`with_transform`).
        test_size: The test resolution (centre-crop side, pixels).
        crop_pct: The test crop fraction.
        epochs: Passes over ``train_dataset``.
        lr: Peak learning rate of the cosine schedule.
        batch_size: Batch size (incomplete last batches are dropped: BatchNorm in train mode needs > 1 value).
        device: Where to train (default: where the model is; ``"auto"``: CUDA if available).
        momentum: SGD momentum.
        weight_decay: Weight decay of the classifier's weight (none on biases and BatchNorm).
        label_smoothing: Label smoothing of the cross-entropy.
        interpolation: Resize interpolation (default: the model's ``pretrained_cfg``).
        mean: Normalisation mean (default: the model's ``pretrained_cfg``).
        std: Normalisation std (default: the model's ``pretrained_cfg``).
        seed: Seed of the shuffling.
        num_workers: Loader workers.

    Returns:
        ``model``, fine-tuned.
    """
    from timm_recipes.data.datasets import create_loader

    test_size = _check_size("test_size", test_size)
    crop_pct = _check_crop("crop_pct", crop_pct)
    epochs = _check_size("epochs", epochs)
    batch_size = _check_size("batch_size", batch_size)
    if len(train_dataset) < 2:
        raise ValueError(f"train_dataset must hold at least 2 images, got {len(train_dataset)}")
    dev = _device(device, model)
    model.to(dev)
    prep = _preprocessing(model, interpolation, mean, std)
    dataset = with_transform(train_dataset, _pipeline(test_size, crop_pct, prep))
    loader = create_loader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=True,
        num_workers=num_workers,
        seed=seed,
        drop_last=True,
    )
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    bn_name, _ = freeze_for_fixres(model)
    bn = model.get_submodule(bn_name)
    try:
        optimizer = create_optimizer(model, "sgd", lr, weight_decay, momentum=momentum)
        scheduler = create_scheduler("cosine", optimizer, epochs * len(loader))
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            fixres_train_mode(model, bn)
            for images, targets in loader:
                images, targets = images.to(dev), targets.to(dev)
                loss = F.cross_entropy(model(images), targets, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            _LOG.info("FixRes epoch %d/%d: last loss %.4f", epoch + 1, epochs, loss.item())
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad[name])
            p.grad = None
        model.eval()
    set_test_resolution(model, test_size, crop_pct)
    return model


# ------------------------------------------------------------------------------------------------ the whole job
@dataclass
class FixResResult:
    """What :func:`run_fixres` found.

    Attributes:
        model: The fine-tuned model (eval mode, ``pretrained_cfg`` holding the test size and crop).
        train_size: The recipe's training crop size.
        test_size: The chosen test size.
        test_crop_pct: The chosen crop fraction.
        bn_name: The BatchNorm that was fine-tuned.
        table: The held-out selection table (see :func:`select_test_resolution`).
        accuracy: Top-1 (percent) on ``eval_split``: ``"train_size"`` (at the train size, before fine-tuning),
            ``"recipe_test"`` (the recipe's own test size and crop), ``"test_size_before"`` and
            ``"test_size_after"`` (the chosen ones, before and after fine-tuning).
        holdout_split: Where the selection images came from.
        eval_split: The split the accuracies are measured on (used for nothing else).
        weights: ``"ema"`` or ``"model"``: which weights were the starting point.
        output_dir: Where the weights and the report were written, if anywhere.
    """

    model: nn.Module
    train_size: int
    test_size: int
    test_crop_pct: float
    bn_name: str
    table: list[dict[str, float]]
    accuracy: dict[str, float]
    holdout_split: str
    eval_split: str
    weights: str
    output_dir: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a terminal."""
        acc, chosen = self.accuracy, f"{self.test_size}px crop {self.test_crop_pct:g}"
        return "\n".join(
            [
                f"FixRes ({self.weights} weights; tuned: classifier + {self.bn_name}); top-1 on {self.eval_split}:",
                f"  train size {self.train_size}px:       {acc['train_size']:.2f} %",
                f"  test {chosen}, before: {acc['test_size_before']:.2f} %",
                f"  test {chosen}, after:  {acc['test_size_after']:.2f} %",
                f"  (test size and crop chosen on {self.holdout_split})",
            ]
        )


def _stratified_holdout(targets: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (kept, held out), ``fraction`` of each class held out (at least one per class)."""
    targets = np.asarray(targets)
    rng = np.random.Generator(np.random.PCG64(seed))
    held: list[int] = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        n = max(1, round(len(members) * fraction))
        held.extend(rng.permutation(members)[:n].tolist())
    held_set = set(held)
    return [i for i in range(len(targets)) if i not in held_set], sorted(held)


def _open_source(source: Any, recipe: Any, tag: str) -> tuple[Any, Any]:
    """(checkpoint or None, Recipe) for a model or a checkpoint / run folder."""
    from timm_recipes.config import Recipe, recipe_from_dict
    from timm_recipes.recipes import load_recipe

    if isinstance(recipe, (str, os.PathLike)):
        recipe = load_recipe(recipe)
    if recipe is not None and not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, a preset name or a YAML path, got {type(recipe).__name__}")
    if isinstance(source, nn.Module):
        if recipe is None:
            raise TypeError("recipe (a Recipe, preset name or YAML path) is required when source is a model")
        return None, recipe
    from timm_recipes.train.weights import is_model_reference

    if is_model_reference(source):
        raise TypeError(
            f"source {str(source)!r} names a model, not a run: load it with "
            "timm_recipes.train.weights.load_model_reference and pass the model with a recipe "
            "(timm_recipes.train.weights.recipe_for_model), as `timm-recipes fixres MODEL --data PATH` does"
        )
    ckpt = open_run_checkpoint(source, tag)
    return ckpt, recipe if recipe is not None else recipe_from_dict(ckpt.recipe())


def open_run_checkpoint(source: str | os.PathLike[str], tag: str = "best") -> Any:
    """The verified checkpoint ``source`` designates; a run without a ``best`` tag falls back to ``last``."""
    from timm_recipes.train.checkpoint import open_checkpoint

    try:
        return open_checkpoint(source, tag=tag)
    except FileNotFoundError:
        if tag != "best" or not Path(source).exists():
            raise
        return open_checkpoint(source, tag="last")  # runs without early stopping may have no "best" tag


def _load_weights(ckpt: Any, recipe: Any, from_ema: bool) -> tuple[nn.Module, str]:
    """The checkpoint's model with its EMA (or raw) weights, and which ones (through the one weights resolver)."""
    from timm_recipes.train.weights import checkpoint_source, create_model_from_source

    if from_ema and not ckpt.has_ema:
        _LOG.warning("checkpoint %s has no EMA weights; starting from the raw weights", ckpt.path)
    source = checkpoint_source(ckpt, "auto" if from_ema else "raw", what=f"checkpoint {ckpt.path}")
    model = create_model_from_source(source, ckpt.model_name, in_chans=recipe.model.in_chans)
    return model, "ema" if source.weights == "ema" else "model"


def _default_sizes(train_size: int) -> list[int]:
    return sorted({max(1, round(train_size * f)) for f in DEFAULT_SIZE_FACTORS})


def run_fixres(
    source: str | os.PathLike[str] | nn.Module,
    recipe: Any = None,
    *,
    sizes: Sequence[int] | None = None,
    crop_pcts: Sequence[float] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    from_ema: bool | None = None,
    tag: str = "best",
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    save: bool = True,
) -> FixResResult:
    """FixRes for a trained run: select the test resolution on held-out training data, fine-tune, measure.

    Held-out images: the data's ``val`` split (carved out of the training data; the weights never trained on
    it) when a separate ``test`` split exists; otherwise ``recipe.fixres.holdout_fraction`` of the ``train``
    split, stratified, which is then left out of the fine-tuning. The accuracies are measured on ``test`` (or
    ``val`` when there is no test split), which is used for nothing else.

    Args:
        source: A run folder, ``checkpoints/`` folder, tag file or checkpoint folder; or a model (then ``recipe``
            is required and the model is fine-tuned in place).
        recipe: A ``Recipe``, preset name or YAML path; default: the recipe saved in the checkpoint.
        sizes: Candidate test sizes; default ``recipe.fixres.test_sizes``, else multiples of the train size
            (:data:`DEFAULT_SIZE_FACTORS`). The recipe's own test size and crop are always candidates too.
        crop_pcts: Candidate crop fractions; default ``recipe.fixres.test_crop_pcts``.
        epochs: Fine-tuning epochs; default ``recipe.fixres.epochs``.
        lr: Fine-tuning learning rate; default ``recipe.fixres.lr``.
        batch_size: Default ``recipe.data.batch_size``.
        from_ema: Start from the EMA weights; default ``recipe.fixres.from_ema``.
        tag: Which checkpoint of a run: ``"best"`` (falling back to ``"last"``) or ``"last"``.
        device: Default ``recipe.run.device``.
        output_dir: Where to write ``model.safetensors`` and ``fixres.json``; default ``<run>/fixres`` for a
            checkpoint source.
        save: Write them at all.

    Returns:
        A :class:`FixResResult`.
    """
    if tag not in ("best", "last"):
        raise ValueError(f"tag must be 'best' or 'last', got {tag!r}")
    ckpt, recipe = _open_source(source, recipe, tag)
    fx, aug, data = recipe.fixres, recipe.aug, recipe.data
    if ckpt is None:
        model, weights_kind, run_dir = source, "given", None
    else:
        model, weights_kind = _load_weights(ckpt, recipe, fx.from_ema if from_ema is None else bool(from_ema))
        run_dir = ckpt.run_dir
        _LOG.info("fixres: starting from %s (epoch %d, %s weights)", ckpt.path, ckpt.epoch, weights_kind)
    out = Path(output_dir) if output_dir is not None else (run_dir / "fixres" if run_dir is not None else None)
    if save and out is not None:
        check_writable(out, "fixres output folder")  # before the work, not after it
    dev = _device(device if device is not None else recipe.run.device, model)
    model.to(dev).eval()
    set_test_resolution(model, aug.test_size, aug.test_crop_pct)
    batch_size = batch_size or data.batch_size
    prep = _preprocessing(model, aug.interpolation, aug.mean, aug.std)

    from timm_recipes.train.builders import build_datasets

    splits = build_datasets(recipe)  # pipelines are replaced below by the test-time ones
    if hasattr(splits.train, "loader"):  # an iterable source (timm_recipes.data.sources.wds)
        raise ValueError(
            f"FixRes fine-tuning needs random access to the images; data.dataset={data.dataset!r} (tar shards) is "
            "streamed: run it on the same images as data.dataset='folder' or 'hfds'"
        )
    train_set: Dataset = splits.train
    if splits.test is not None:
        holdout, holdout_name, eval_set, eval_name = splits.val, "val", splits.test, "test"
    else:  # val is the only evaluation split: hold out part of train for the selection instead
        kept, held = _stratified_holdout(splits.train.targets, fx.holdout_fraction, recipe.run.seed)
        train_set, holdout = Subset(splits.train, kept), Subset(splits.train, held)
        holdout_name = f"train (held-out {fx.holdout_fraction:g})"
        eval_set, eval_name = splits.val, "val"

    sizes = list(sizes if sizes is not None else (fx.test_sizes or _default_sizes(aug.train_size)))
    crop_pcts = list(crop_pcts if crop_pcts is not None else fx.test_crop_pcts)
    candidates = [(s, c) for s in sizes for c in crop_pcts]
    if (aug.test_size, aug.test_crop_pct) not in candidates:
        candidates.append((aug.test_size, aug.test_crop_pct))
    table = evaluate_candidates(
        model, holdout, candidates, batch_size=batch_size, device=dev, num_workers=data.num_workers, **prep
    )
    test_size, crop_pct = best_candidate(table)

    def accuracy(size: int, crop: float) -> float:
        m = _eval_at(model, eval_set, size, crop, prep, batch_size=batch_size, device=dev, num_workers=data.num_workers)
        return float(m["top1"])

    _LOG.info("fixres: chose %dpx crop %g; measuring on %s, then fine-tuning", test_size, crop_pct, eval_name)
    acc = {
        "train_size": accuracy(aug.train_size, aug.test_crop_pct),
        "recipe_test": accuracy(aug.test_size, aug.test_crop_pct),
        "test_size_before": accuracy(test_size, crop_pct),
    }
    fixres_finetune(
        model,
        train_set,
        test_size=test_size,
        crop_pct=crop_pct,
        epochs=epochs if epochs is not None else fx.epochs,
        lr=lr if lr is not None else fx.lr,
        batch_size=batch_size,
        device=dev,
        seed=recipe.run.seed,
        num_workers=data.num_workers,
        **prep,
    )
    acc["test_size_after"] = accuracy(test_size, crop_pct)
    bn_name, _ = find_last_batchnorm(model)
    result = FixResResult(
        model=model,
        train_size=aug.train_size,
        test_size=test_size,
        test_crop_pct=crop_pct,
        bn_name=bn_name,
        table=table,
        accuracy=acc,
        holdout_split=holdout_name,
        eval_split=eval_name,
        weights=weights_kind,
        details={
            "epochs": epochs if epochs is not None else fx.epochs,
            "lr": lr if lr is not None else fx.lr,
            "checkpoint": ckpt.path.name if ckpt is not None else None,
            "checkpoint_epoch": ckpt.epoch if ckpt is not None else None,
        },
    )
    if save and out is not None:
        result.output_dir = save_fixres(result, out, source=str(source) if run_dir is not None else None)
    return result


def save_fixres(result: FixResResult, folder: str | os.PathLike[str], *, source: str | None = None) -> Path:
    """Write ``model.safetensors`` (the fine-tuned weights) and ``fixres.json`` (choice, table, accuracies)."""
    from timm_recipes.train.checkpoint import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "pt",
        "test_input_size": json.dumps(list(result.model.pretrained_cfg["test_input_size"])),
        "test_crop_pct": str(result.test_crop_pct),
    }
    tmp = folder / ".model.safetensors.tmp"
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(tmp), metadata=meta)
    apply_umask(tmp)  # safetensors creates it 0600
    os.replace(tmp, folder / "model.safetensors")
    report = {
        "paper": "https://arxiv.org/abs/1906.06423",
        "source": source,
        "weights": result.weights,
        "train_size": result.train_size,
        "test_input_size": list(result.model.pretrained_cfg["test_input_size"]),
        "test_crop_pct": result.test_crop_pct,
        "bn_name": result.bn_name,
        "holdout_split": result.holdout_split,
        "eval_split": result.eval_split,
        "accuracy": result.accuracy,
        "table": result.table,
        **result.details,
    }
    atomic_write_bytes(folder / "fixres.json", json.dumps(report, indent=1).encode())
    return folder

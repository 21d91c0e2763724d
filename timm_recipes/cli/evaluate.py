"""`timm-recipes evaluate`: accuracy of one or several checkpoints, and of their logit average (an ensemble).

Examples::

    timm-recipes evaluate runs/demo                       # best checkpoint of a run, EMA weights, val split
    timm-recipes evaluate runs/demo --split test --weights raw
    timm-recipes evaluate runs/demo-seed0 runs/demo-seed1 runs/demo-seed2 --split test
    timm-recipes evaluate resnet50.tv2_in1k --data /data/imagenet      # a model: at its train and its test size
    timm-recipes evaluate hf-hub:org/name local-dir:exports/ema --data my-images --split val

With ``--data PATH`` (an ImageNet-layout folder: ``PATH/<split>/<class>/``) the arguments are models instead of runs:
a timm name with a tag (``resnet50.tv2_in1k``, ``recipe_resnet50`` for its default tag), ``hf-hub:org/name``,
``local-dir:FOLDER`` or an export folder. Each is evaluated with its own preprocessing (``pretrained_cfg``) at its
train size and at its test size, the FixRes train/test comparison.

The lecture's test-time ensemble: run every model over each image, average the logits, take the argmax. Members may
be different architectures (a ResNet-18 with a ResNet-34, models trained at different resolutions): each model is fed
its own recipe's evaluation preprocessing, and what must agree is what the average needs: the number of classes, the
class names in index order, and the evaluated images themselves (the same files, or the same built-in digits scans,
in the same order, with the same labels). Anything else is refused with an error naming both checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from timm_recipes.cli._common import add_alias, nonneg_int, positive_int

_LOG = logging.getLogger("timm_recipes.evaluate")

HELP = "report loss and top-1/top-5 of checkpoints on val or test, and of their logit-average ensemble"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints", nargs="+", metavar="RUN_OR_MODEL",
        help="run folders, checkpoints/ folders, tag files or checkpoints; with --data: models (resnet50.tv2_in1k, "
        "hf-hub:org/name, local-dir:FOLDER, an export folder)",
    )  # fmt: skip
    parser.add_argument(
        "--data", default=None, metavar="PATH",
        help="evaluate models on PATH/<split>/<class>/ (ImageNet layout) instead of runs on their recipe's data",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=nonneg_int, default=4, help="with --data: loader processes (default: %(default)s)"
    )
    parser.add_argument("--split", choices=("val", "test"), default="val", help="default: %(default)s")
    parser.add_argument(
        "--weights", choices=("auto", "ema", "raw"), default="auto", help="auto: EMA when saved (default)"
    )
    parser.add_argument(
        "--checkpoint", dest="tag", choices=("best", "last"), default="best", help="for run folders (default: best)"
    )
    add_alias(parser, "--tag", "tag", choices=("best", "last"))
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the recipe's data.batch_size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")


def _sample_ids(dataset: Any) -> list[Any]:
    """What identifies each evaluated image: its path below the split folder, or the digits scan's index."""
    if hasattr(dataset, "samples") and hasattr(dataset, "root"):
        return [os.path.relpath(path, dataset.root) for path, _ in dataset.samples]
    if hasattr(dataset, "indices"):
        return [int(i) for i in dataset.indices]
    return list(range(len(dataset)))


def check_ensemble_members(paths: list[str], checkpoints: list[Any], datasets: list[Any]) -> None:
    """Refuse checkpoints whose logits cannot be averaged: other class counts, class names or evaluation images.

    Raises:
        ValueError: Naming the first offending checkpoint, the reference (the first one) and what differs.
    """
    ref_path, ref_ckpt, ref_data = paths[0], checkpoints[0], datasets[0]
    ref_ids = _sample_ids(ref_data)
    for path, ckpt, data in zip(paths[1:], checkpoints[1:], datasets[1:]):
        if ckpt.num_classes != ref_ckpt.num_classes:
            raise ValueError(
                f"cannot ensemble {path} ({ckpt.model_name}, {ckpt.num_classes} classes) with {ref_path} "
                f"({ref_ckpt.model_name}, {ref_ckpt.num_classes} classes): the class counts must match"
            )
        if list(data.classes) != list(ref_data.classes):
            raise ValueError(
                f"cannot ensemble {path} with {ref_path}: their class names differ (logit k must mean the same class "
                f"for every model): {list(data.classes)[:10]} vs {list(ref_data.classes)[:10]}"
            )
        if _sample_ids(data) != ref_ids:
            raise ValueError(
                f"cannot ensemble {path} with {ref_path}: their recipes evaluate different images "
                f"({len(data)} vs {len(ref_data)}); the members must be evaluated on the same data"
            )


def evaluate_checkpoints(
    paths: list[str],
    *,
    split: str = "val",
    weights: str = "auto",
    tag: str = "best",
    batch_size: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate each checkpoint and (for several) the average of their logits.

    Returns:
        ``{"split": ..., "models": [{"checkpoint", "model", "epoch", "weights", "loss", "top1", "top5", "n", ...},
        ...], "ensemble": {"members", "loss", "top1", "top5", "n", ...} | None}``.

    Raises:
        ValueError: Checkpoints with different class counts or class names, or whose recipes evaluate different
            images (:func:`check_ensemble_members`); a bad ``batch_size``.
    """
    import torch

    from timm_recipes.config import apply_overrides
    from timm_recipes.train.builders import build_eval_dataset, create_eval_loader, load_checkpoint_model
    from timm_recipes.train.distributed import resolve_device
    from timm_recipes.train.engine import collect_logits, metrics_from_logits

    if not paths:
        raise ValueError("paths: give at least one checkpoint")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    dev = resolve_device(device)
    loaded = [load_checkpoint_model(p, which=weights, tag=tag, device=dev) for p in paths]
    recipes = [recipe for _, recipe, _ in loaded]
    if batch_size is not None:
        recipes = [apply_overrides(recipe, {"data.batch_size": batch_size}) for recipe in recipes]
    datasets = [build_eval_dataset(recipe, split) for recipe in recipes]
    check_ensemble_members(paths, [ckpt for _, _, ckpt in loaded], datasets)
    results, all_logits, targets = [], [], None
    for i, (path, (model, _, ckpt), recipe, dataset) in enumerate(zip(paths, loaded, recipes, datasets)):
        _LOG.info("evaluate %d/%d: %s (epoch %d) on %d %s images", i + 1, len(paths), ckpt.path, ckpt.epoch,
                  len(dataset), split)  # fmt: skip
        logits, tgt = collect_logits(model, create_eval_loader(recipe, dataset, device=dev), device=dev)
        if targets is not None and not torch.equal(tgt, targets):
            raise ValueError(f"cannot ensemble {path} with {paths[0]}: the labels of the {split} images differ")
        targets = tgt
        all_logits.append(logits)
        used = "ema" if weights == "ema" or (weights == "auto" and ckpt.has_ema) else "raw"
        entry = {"checkpoint": str(ckpt.path), "model": ckpt.model_name, "epoch": ckpt.epoch, "weights": used}
        results.append({**entry, **metrics_from_logits(logits, tgt)})
    ensemble = None
    if len(all_logits) > 1:
        ensemble = {"members": len(all_logits), **metrics_from_logits(torch.stack(all_logits).mean(0), targets)}
    return {"split": split, "models": results, "ensemble": ensemble}


def evaluate_models(
    models: list[str],
    data: str | os.PathLike[str],
    *,
    split: str = "val",
    batch_size: int | None = None,
    device: str = "auto",
    num_workers: int = 4,
) -> dict[str, Any]:
    """Evaluate each model (see :func:`timm_recipes.train.weights.is_model_reference`) on ``data/<split>`` at its
    train size and at its test size, with its own preprocessing.

    Returns:
        ``{"split", "data", "models": [{"model", "architecture", "size", "crop_pct", "at", "loss", "top1", "top5",
        "n"}, ...]}``.

    Raises:
        FileNotFoundError: no ``data/<split>`` folder. ValueError: a model whose class count is not the data's.
    """
    import dataclasses

    from timm_recipes.config import apply_overrides
    from timm_recipes.train.builders import build_eval_dataset, create_eval_loader
    from timm_recipes.train.distributed import resolve_device
    from timm_recipes.train.engine import collect_logits, metrics_from_logits
    from timm_recipes.train.weights import load_model_reference, recipe_for_model

    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    dev = resolve_device(device)
    rows = []
    for ref in models:
        model = load_model_reference(ref, device=dev)
        recipe = recipe_for_model(model, data, name=ref)
        recipe = apply_overrides(
            recipe, {"data.num_workers": num_workers, **({"data.batch_size": batch_size} if batch_size else {})}
        )
        cfg = model.pretrained_cfg
        sizes = [("train", recipe.aug.train_size, float(cfg.get("crop_pct") or recipe.aug.test_crop_pct))]
        if cfg.get("test_input_size"):
            sizes.append(("test", recipe.aug.test_size, recipe.aug.test_crop_pct))
        for at, size, crop in sizes:
            at_size = recipe.replace(aug=dataclasses.replace(recipe.aug, test_size=size, test_crop_pct=crop))
            dataset = build_eval_dataset(at_size, split)
            if len(dataset.classes) != model.num_classes:
                raise ValueError(
                    f"{ref}: the model has {model.num_classes} classes but {dataset.root} has {len(dataset.classes)}"
                )
            logits, targets = collect_logits(model, create_eval_loader(at_size, dataset, device=dev), device=dev)
            entry = {"model": ref, "architecture": cfg.get("architecture"), "size": size, "crop_pct": crop, "at": at}
            rows.append({**entry, **metrics_from_logits(logits, targets)})
    return {"split": split, "data": str(data), "models": rows}


def format_model_report(report: dict[str, Any]) -> str:
    """The table printed by ``timm-recipes evaluate MODEL --data PATH``: one line per model and size."""
    lines = [f"{'model':48s} {'size':>5s} {'crop':>6s} {'':6s} {'loss':>7s} {'top-1':>7s} {'top-5':>7s}  "
             f"({report['data']}/{report['split']})"]  # fmt: skip
    for r in report["models"]:
        lines.append(
            f"{r['model']:48s} {r['size']:5d} {r['crop_pct']:6.3f} {r['at'] + ' ':6s} {r['loss']:7.4f} "
            f"{r['top1']:7.2f} {r['top5']:7.2f}"
        )
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The table printed by ``timm-recipes evaluate``: one line per checkpoint, then the ensemble and its gain."""
    lines = [f"{'checkpoint':60s} {'model':18s} {'weights':7s} {'loss':>7s} {'top-1':>7s} {'top-5':>7s}  "
             f"({report['split']})"]  # fmt: skip
    for r in report["models"]:
        lines.append(
            f"{r['checkpoint']:60s} {r['model']:18s} {r['weights']:7s} {r['loss']:7.4f} {r['top1']:7.2f} "
            f"{r['top5']:7.2f}"
        )
    e = report["ensemble"]
    if e is not None:
        label = f"ensemble: mean of {e['members']} models' logits"
        lines.append(f"{label:60s} {'':18s} {'':7s} {e['loss']:7.4f} {e['top1']:7.2f} {e['top5']:7.2f}")
        tops = [r["top1"] for r in report["models"]]
        mean = sum(tops) / len(tops)
        lines.append(
            f"ensemble top-1 gain: {e['top1'] - mean:+.2f} points over the members' mean ({mean:.2f} %), "
            f"{e['top1'] - max(tops):+.2f} over the best member ({max(tops):.2f} %)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from timm_recipes.train.progress import ensure_progress_output

    ensure_progress_output(True)  # progress lines on stderr while it works
    if args.data is not None:
        report = evaluate_models(
            args.checkpoints, args.data, split=args.split, batch_size=args.batch_size, device=args.device,
            num_workers=args.workers,
        )  # fmt: skip
        print(format_model_report(report))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    report = evaluate_checkpoints(
        args.checkpoints,
        split=args.split,
        weights=args.weights,
        tag=args.tag,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0

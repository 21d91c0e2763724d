"""`timm-recipes evaluate`: accuracy of one or several checkpoints, and of their logit average (an ensemble).

Examples::

    timm-recipes evaluate runs/demo                       # best checkpoint of a run, EMA weights, val split
    timm-recipes evaluate runs/demo --split test --weights raw
    timm-recipes evaluate runs/demo-seed0 runs/demo-seed1 runs/demo-seed2 --split test

The lecture's test-time ensemble: run every model over each image and average the logits, then take the argmax.
All checkpoints must be the same architecture with the same classes, trained on the same data; each model is fed
with its own recipe's evaluation preprocessing, and the samples are checked to be the same, in the same order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "report loss and top-1/top-5 of checkpoints on val or test, and of their logit-average ensemble"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="run folders, checkpoints/ folders, tag files or checkpoints")
    parser.add_argument("--split", choices=("val", "test"), default="val", help="default: %(default)s")
    parser.add_argument(
        "--weights", choices=("auto", "ema", "raw"), default="auto", help="auto: EMA when saved (default)"
    )
    parser.add_argument("--tag", choices=("best", "last"), default="best", help="for run folders (default: best)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's data.batch_size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")


def _data_key(recipe: Any) -> tuple[Any, ...]:
    d = recipe.data
    return (d.dataset, d.root, d.image_size if d.dataset == "digits" else None)


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
        ``{"split": ..., "models": [{"checkpoint", "model", "weights", "loss", "top1", "top5", "n"}, ...],
        "ensemble": {...} | None}``.

    Raises:
        ValueError: Checkpoints of different architectures or class counts, or trained on different data.
    """
    import torch

    from timm_recipes.config import apply_overrides
    from timm_recipes.train.engine import collect_logits, metrics_from_logits
    from timm_recipes.train.trainer import build_eval_dataset, create_eval_loader, load_checkpoint_model, resolve_device

    dev = resolve_device(device)
    loaded = [load_checkpoint_model(p, which=weights, tag=tag, device=dev) for p in paths]
    _, first_recipe, first = loaded[0]
    for path, (_, recipe, ckpt) in zip(paths[1:], loaded[1:]):
        if (ckpt.model_name, ckpt.num_classes) != (first.model_name, first.num_classes):
            raise ValueError(
                f"cannot ensemble {path} ({ckpt.model_name}, {ckpt.num_classes} classes) with {paths[0]} "
                f"({first.model_name}, {first.num_classes} classes): architectures and class counts must match"
            )
        if _data_key(recipe) != _data_key(first_recipe):
            raise ValueError(f"cannot ensemble {path} with {paths[0]}: they were trained on different data")
    results, all_logits, targets = [], [], None
    for path, (model, recipe, ckpt) in zip(paths, loaded):
        if batch_size is not None:
            recipe = apply_overrides(recipe, {"data.batch_size": batch_size})
        loader = create_eval_loader(recipe, build_eval_dataset(recipe, split), device=dev)
        logits, tgt = collect_logits(model, loader, device=dev)
        if targets is not None and not torch.equal(tgt, targets):
            raise ValueError(f"{path}: the {split} samples differ from those of {paths[0]}")
        targets = tgt
        all_logits.append(logits)
        used = "ema" if weights == "ema" or (weights == "auto" and ckpt.has_ema) else "raw"
        entry = {"checkpoint": str(ckpt.path), "model": ckpt.model_name, "epoch": ckpt.epoch, "weights": used}
        results.append({**entry, **metrics_from_logits(logits, tgt)})
    ensemble = None
    if len(all_logits) > 1:
        ensemble = {"members": len(all_logits), **metrics_from_logits(torch.stack(all_logits).mean(0), targets)}
    return {"split": split, "models": results, "ensemble": ensemble}


def run(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    report = evaluate_checkpoints(
        args.checkpoints,
        split=args.split,
        weights=args.weights,
        tag=args.tag,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(f"{'checkpoint':60s} {'weights':7s} {'loss':>7s} {'top-1':>7s} {'top-5':>7s}  ({report['split']})")
    for r in report["models"]:
        print(f"{r['checkpoint']:60s} {r['weights']:7s} {r['loss']:7.4f} {r['top1']:7.2f} {r['top5']:7.2f}")
    if report["ensemble"] is not None:
        e = report["ensemble"]
        label = f"ensemble: mean of {e['members']} models' logits"
        print(f"{label:60s} {'':7s} {e['loss']:7.4f} {e['top1']:7.2f} {e['top5']:7.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0

"""`timm-recipes train`: train a recipe (a preset name or a YAML file), with overrides and resume.

Examples::

    timm-recipes train --recipe demo
    timm-recipes train --recipe resnet50_tv2 --set data.root=/data/imagenet --set data.batch_size=64
    timm-recipes train --recipe my_recipe.yaml --output runs/exp1
    timm-recipes train --resume runs/exp1                 # continue from runs/exp1's last checkpoint
    timm-recipes train --recipe demo --resume             # continue the run in the recipe's output folder
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timm_recipes.train.trainer import FitResult

HELP = "train a recipe (preset name or YAML file) with --set overrides; --resume continues a run exactly"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default=None, help="a preset name (see --list) or a recipe YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one recipe value, e.g. --set optim.lr=0.2 --set aug.scale_range=[32,40] (repeatable)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue a run: from the output folder's last checkpoint, or from PATH (a run folder, checkpoints/ "
        "folder, tag file or checkpoint folder); without --recipe the checkpoint's recipe is used",
    )
    parser.add_argument("--output", default=None, help="run folder (default: the recipe's run.output_dir)")
    parser.add_argument("--list", action="store_true", help="list the preset recipes and exit")


def configure_logging() -> None:
    """Send the trainer's progress lines (logger ``timm_recipes``) to stderr, once."""
    logger = logging.getLogger("timm_recipes")
    if not any(getattr(h, "_timm_recipes_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._timm_recipes_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    from timm_recipes.config import apply_overrides, load_recipe, recipe_from_dict
    from timm_recipes.recipes import PRESETS
    from timm_recipes.train.checkpoint import open_checkpoint
    from timm_recipes.train.trainer import fit

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name:24s} {preset.source.split(':')[0]}")
        return 0
    if args.recipe is not None:
        recipe = load_recipe(args.recipe)
    elif isinstance(args.resume, str):
        recipe = recipe_from_dict(open_checkpoint(args.resume, verify=False).recipe())
    else:
        raise ValueError("--recipe is required (a preset name or a YAML file), unless --resume PATH is given")
    recipe = apply_overrides(recipe, args.overrides)
    configure_logging()
    result = fit(recipe, resume=args.resume, output_dir=args.output)
    print(format_result(result))
    return 0


def format_result(result: FitResult) -> str:
    """A short summary of a :class:`~timm_recipes.train.trainer.FitResult` for the terminal."""
    lines = [f"run folder: {result.run_dir}"]
    if result.best_epoch is not None:
        how = "early stopping" if result.stopped_early else f"{result.epochs_completed} epochs"
        best = f"{result.monitor} val top-1 {result.best_metric:.2f} %"
        lines.append(f"best epoch {result.best_epoch} ({best}), after {how}")
    for split in ("val", "test"):
        for prefix, label in (("", "raw"), ("ema_", "EMA")):
            top1, top5 = result.final.get(f"{prefix}{split}_top1"), result.final.get(f"{prefix}{split}_top5")
            if top1 is not None:
                lines.append(f"{split} top-1 ({label}): {top1:.2f} %   top-5: {top5:.2f} %")
    if result.best_checkpoint is not None:
        lines.append(f"best checkpoint: {result.best_checkpoint}")
    return "\n".join(lines)

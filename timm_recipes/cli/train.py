"""`timm-recipes train`: train a recipe (a preset name or a YAML file), with overrides and resume.

Examples::

    timm-recipes train --recipe demo
    timm-recipes train --recipe resnet50_tv2 --set data.root=/data/imagenet --set data.batch_size=64
    timm-recipes train --recipe my_recipe.yaml --output runs/exp1
    timm-recipes train --resume runs/exp1                 # continue from runs/exp1's last checkpoint
    timm-recipes train --recipe demo --resume             # continue the interrupted run (runs/demo, -2, ...)
    timm-recipes train --recipe demo --seeds 0,1,2        # runs/demo-seed0..2, then their ensemble on the test split
    timm-recipes train --recipe demo --set optim.lr=0.2 --print-recipe   # the full resolved YAML, no training
    timm-recipes train --recipe demo --dry-run            # check recipe, data and output folder, no training
    torchrun --nproc_per_node=8 -m timm_recipes train --recipe resnet50_tv2 --set data.root=/data/imagenet

``--seeds`` trains one run per seed (the recipe with ``run.seed`` set, in ``<output>-seed<S>``), then evaluates each
run's best checkpoint and the average of their logits on the test split (val when there is none), and writes
``<output>-seeds.json``. With ``--resume`` the seed runs that have a checkpoint are continued and the others started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from timm_recipes.cli._common import add_overrides

if TYPE_CHECKING:
    from timm_recipes.config import Recipe
    from timm_recipes.train.trainer import FitResult

HELP = "train a recipe (preset name or YAML file) with --set overrides; --resume continues a run exactly"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default=None, help="a preset name (see --list) or a recipe YAML file")
    add_overrides(
        parser, "override one recipe value, e.g. --set optim.lr=0.2 --set aug.scale_range=[32,40] (repeatable)"
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
    parser.add_argument(
        "--output",
        default=None,
        help="run folder (default: the recipe's run.output_dir, with -2, -3, ... appended when it holds a run); an "
        "explicit --output that holds a run needs --resume or --overwrite",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run that --output holds (its checkpoints and metrics)"
    )
    parser.add_argument(
        "--print-recipe",
        action="store_true",
        help="print the resolved recipe (preset or file with --set applied) as YAML and exit without training",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe, the data and the output folder, print the summary, and exit without training",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="S0,S1,...",
        help="train one run per seed (folders <output>-seed<S>), then report each model's and the logit-average "
        "ensemble's accuracy on the test split (val if there is none)",
    )
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
    from timm_recipes.cli._common import UsageError, load_recipe_arg
    from timm_recipes.config import apply_overrides, recipe_from_dict
    from timm_recipes.recipes import PRESETS
    from timm_recipes.train.checkpoint import open_checkpoint

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name:24s} {preset.source.split(':')[0]}")
        return 0
    if args.overwrite and args.resume is not False:
        raise UsageError("--overwrite replaces a run and --resume continues one: give one of them")
    if args.recipe is not None:
        recipe = load_recipe_arg(args.recipe)
    elif isinstance(args.resume, str):
        recipe = recipe_from_dict(open_checkpoint(args.resume, verify=False).recipe())
    else:
        raise UsageError("--recipe is required (a preset name or a YAML file), unless --resume PATH is given")
    recipe = apply_overrides(recipe, args.overrides)
    if args.print_recipe:
        from timm_recipes.config import recipe_to_yaml

        print(recipe_to_yaml(recipe), end="")
        return 0
    if args.output is not None and args.resume is False and not args.overwrite and holds_run(Path(args.output)):
        raise UsageError(
            f"--output {args.output} already holds a run: add --resume to continue it or --overwrite to replace it"
        )
    if args.seeds is not None:
        seeds = parse_seeds(args.seeds)
    if _is_main_process():
        print(format_recipe_summary(recipe, args.recipe if args.recipe is not None else str(args.resume)))
    if args.dry_run:
        return dry_run(recipe, output=args.output)
    from timm_recipes.train.trainer import fit

    configure_logging()
    if args.seeds is not None:
        return train_seeds(recipe, seeds, resume=args.resume, output_dir=args.output)
    result = fit(recipe, resume=args.resume, output_dir=args.output, overwrite=args.overwrite)
    if _is_main_process():
        print(format_result(result))
    return 0


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a training run (checkpoints or metrics), as :func:`~timm_recipes.train.fit` sees it."""
    return any((folder / name).exists() for name in ("checkpoints", "metrics.jsonl"))


def format_recipe_summary(recipe: Recipe, origin: str) -> str:
    """The resolved recipe's ingredients, one per line, for the start of ``train``."""
    from timm_recipes.config import recipe_summary

    rows = [("recipe", f"{recipe.name} (from {origin})"), *recipe_summary(recipe)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def dry_run(recipe: Recipe, *, output: str | None) -> int:
    """Build the data as the run would (finding missing folders and bad sizes), report the run folder, train nothing."""
    from timm_recipes._files import check_writable
    from timm_recipes.train.builders import build_datasets

    data = build_datasets(recipe)
    folder = Path(output) if output is not None else Path(recipe.run.output_dir.format(name=recipe.name))
    base, n = folder, 1
    while output is None and holds_run(folder):  # as fit chooses it: the default folder is never reused
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    check_writable(folder, "--output")
    test = f" / {len(data.test)} test" if data.test is not None else ""
    print(f"dry run: data {data.origin}: {len(data.train)} train / {len(data.val)} val{test} images, "
          f"{data.num_classes} classes; run folder {folder}; nothing trained")  # fmt: skip
    return 0


def _is_main_process() -> bool:
    """Rank 0 under torchrun (or the only process): the one that prints."""
    return os.environ.get("RANK", "0") == "0"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: distinct non-negative integers.

    Raises:
        UsageError: Anything else, naming ``--seeds`` (a ``ValueError``).
    """
    from timm_recipes.cli._common import UsageError

    try:
        seeds = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated non-negative integers, e.g. 0,1,2; got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct non-negative integers, got {text!r}")
    return seeds


def train_seeds(
    recipe: Recipe, seeds: list[int], *, resume: bool | str = False, output_dir: str | os.PathLike[str] | None = None
) -> int:
    """Train ``recipe`` once per seed, then evaluate every run and their logit-average ensemble (rank 0 only).

    The runs go to ``<output>-seed<S>`` (``output`` default: the recipe's ``run.output_dir``); the report to
    ``<output>-seeds.json``. Under torchrun all ranks train every seed in one process group.

    Raises:
        ValueError: ``seeds`` empty, or ``resume`` given as a path (use ``--resume`` alone to continue seed runs).
    """
    from timm_recipes.cli._common import UsageError
    from timm_recipes.cli.evaluate import evaluate_checkpoints, format_report
    from timm_recipes.config import apply_overrides
    from timm_recipes.train.distributed import Distributed
    from timm_recipes.train.trainer import fit

    if not seeds:
        raise UsageError("--seeds: give at least one seed")
    if isinstance(resume, str):
        raise UsageError("--seeds continues its runs with --resume alone (each <output>-seed<S> folder), not a PATH")
    base = Path(output_dir) if output_dir is not None else Path(recipe.run.output_dir.format(name=recipe.name))
    results = []
    with Distributed.from_env(recipe.run.device) as dist:  # one process group for all the seeds
        for seed in seeds:
            folder = base.with_name(f"{base.name}-seed{seed}")
            again = bool(resume) and (folder / "checkpoints" / "last.json").exists()
            result = fit(apply_overrides(recipe, {"run.seed": seed}), resume=again, output_dir=folder)
            results.append(result)
            if dist.is_main:
                print(f"seed {seed}:\n" + format_result(result))
        if not dist.is_main:
            return 0
    split = "test" if any(k.startswith("test_") for k in results[0].final) else "val"
    report = evaluate_checkpoints([str(r.run_dir) for r in results], split=split, device=recipe.run.device)
    report["seeds"] = seeds
    summary = base.with_name(f"{base.name}-seeds.json")
    summary.write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    print(f"report: {summary}")
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

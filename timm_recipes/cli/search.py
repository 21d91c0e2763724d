"""`timm-recipes search`: random search of learning rate and weight decay (10^U[a, b]) over short trials.

The default lr range spans the lecture's three decades (10^U[-5, -2] has width 3) placed around the recipe's own
learning rate, 10^U[log10(lr) - 2, log10(lr) + 1], so that it contains it (the demo's lr 0.1 gives [-3, 0]); the
weight decay range is the lecture's [-5, -2]. Trials are numbered from 0, in the progress lines and the table alike.
"""

from __future__ import annotations

import argparse
import math

from timm_recipes.cli._common import (
    UsageError,
    add_alias,
    add_overrides,
    finite_float,
    load_recipe_arg,
    nonneg_int,
    positive_int,
)

HELP = "random search of lr and weight decay, log-uniform 10^U[a, b] (the lecture's rule); seeded and resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a preset name (e.g. demo) or a recipe YAML file")
    parser.add_argument("--trials", type=positive_int, default=8, help="number of trials in all (default: 8)")
    parser.add_argument(
        "--lr-range", type=finite_float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="lr = 10^U[LOW, HIGH] (default: log10 of the recipe's lr -2 and +1, e.g. -3 0 for lr 0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--wd-range", type=finite_float, nargs=2, default=(-5.0, -2.0), metavar=("LOW", "HIGH"),
        help="weight decay = 10^U[LOW, HIGH] (default: -5 -2)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, default=None, help="epochs per trial (default: the recipe's)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the samples (default: 0)")
    parser.add_argument(
        "--output", default=None, help="output folder (default: runs/<recipe name>-search); rerun to resume"
    )
    add_alias(parser, "--out", "output")
    add_overrides(parser, "override a recipe value before the search, e.g. --set data.batch_size=32 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from timm_recipes.train.progress import ensure_progress_output

    ensure_progress_output(True)  # progress lines on stderr while it works
    from timm_recipes.config import apply_overrides
    from timm_recipes.train.search import run_search

    for flag, pair in (("--lr-range", args.lr_range), ("--wd-range", args.wd_range)):
        if pair is not None and not pair[0] < pair[1]:
            raise UsageError(f"{flag}: LOW must be below HIGH, got {pair[0]:g} {pair[1]:g}")
    recipe = apply_overrides(load_recipe_arg(args.recipe, "recipe"), args.overrides)
    out = args.output or f"runs/{recipe.name}-search"
    lr_range = tuple(args.lr_range) if args.lr_range is not None else default_lr_range(recipe.optim.lr)
    print(f"search: {args.trials} trials, lr 10^U[{lr_range[0]:g}, {lr_range[1]:g}], weight decay "
          f"10^U[{args.wd_range[0]:g}, {args.wd_range[1]:g}], in {out}")  # fmt: skip
    result = run_search(
        recipe,
        trials=args.trials,
        lr_range=lr_range,
        wd_range=tuple(args.wd_range),
        seed=args.seed,
        epochs=args.epochs,
        out_dir=out,
    )
    print()
    print(result.markdown_path.read_text(encoding="utf-8"))
    b = result.best
    print(f"best: trial {b.index}, lr {b.lr:.3e}, weight decay {b.weight_decay:.3e}, metric {b.metric:.4f}")
    print(f"table:  {result.csv_path}  {result.markdown_path}")
    print(f"plot:   {result.plot_path}")
    print(f"recipe: {result.best_recipe_path}  (timm-recipes train --recipe {result.best_recipe_path})")
    return 0


def default_lr_range(lr: float) -> tuple[float, float]:
    """The lecture's width of three decades around the recipe's ``lr``: ``(log10(lr) - 2, log10(lr) + 1)``."""
    center = math.log10(lr)
    return (round(center - 2.0, 6), round(center + 1.0, 6))

"""`timm-recipes search`: random search of learning rate and weight decay (10^U[a, b]) over short trials."""

from __future__ import annotations

import argparse

HELP = "random search of lr and weight decay, log-uniform (the lecture's 10^U[-5, -2]); seeded and resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a preset name (e.g. demo) or a recipe YAML file")
    parser.add_argument("--trials", type=int, default=8, help="number of trials in all (default: 8)")
    parser.add_argument(
        "--lr-range", type=float, nargs=2, default=(-5.0, -2.0), metavar=("LOW", "HIGH"),
        help="lr = 10^U[LOW, HIGH] (default: -5 -2)",
    )  # fmt: skip
    parser.add_argument(
        "--wd-range", type=float, nargs=2, default=(-5.0, -2.0), metavar=("LOW", "HIGH"),
        help="weight decay = 10^U[LOW, HIGH] (default: -5 -2)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
    parser.add_argument(
        "--out", default=None, help="output folder (default: runs/<recipe name>-search); rerun to resume"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value before the search, e.g. --set data.batch_size=32 (repeatable)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import load_recipe
    from timm_recipes.train.search import run_search

    recipe = apply_overrides(load_recipe(args.recipe), args.overrides)
    out = args.out or f"runs/{recipe.name}-search"
    result = run_search(
        recipe,
        trials=args.trials,
        lr_range=tuple(args.lr_range),
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
    print(f"recipe: {result.best_recipe_path}  (timm-recipes train {result.best_recipe_path})")
    return 0

"""`timm-recipes check`: the lecture's sanity checks for a recipe, before spending hours on a training run.

Examples::

    timm-recipes check --recipe demo
    timm-recipes check --recipe my_recipe.yaml --set data.root=/data/flowers --output runs/check-flowers
    timm-recipes check --recipe demo --only data            # only look at the data

Prints one line per check (ok / WARN / FAIL), writes ``<output>/sanity_check.json`` and the preview grids
``preview_raw.png`` and ``preview_augmented.png``, and exits with status 1 when a check failed. The same checks run
before training with ``--set run.sanity_check=true``.
"""

from __future__ import annotations

import argparse

from timm_recipes.cli._common import add_overrides, positive_int

HELP = "sanity-check a recipe: data counts, sizes, statistics, leakage, previews; initial loss; overfit one batch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="a preset name or a recipe YAML file")
    add_overrides(parser)
    parser.add_argument("--output", default=None, help="report folder (default: runs/check-<recipe name>)")
    parser.add_argument("--only", action="append", choices=("data", "initial_loss", "overfit"), default=None,
                        help="run only this check (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--max-images", type=positive_int, default=None,
                        help="survey at most N images per split, spread evenly (default: all)")  # fmt: skip
    parser.add_argument(
        "--overfit-batch", type=positive_int, default=16, help="images in the batch to overfit (default 16)"
    )
    parser.add_argument(
        "--overfit-steps", type=positive_int, default=200, help="steps allowed to reach 100 %% (default 200)"
    )


def run(args: argparse.Namespace) -> int:
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import load_recipe
    from timm_recipes.train.sanity import ALL_CHECKS, run_checks

    if args.overfit_steps < 1:
        raise ValueError(f"--overfit-steps must be >= 1, got {args.overfit_steps}")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
    if args.overfit_batch < 1:
        raise ValueError(f"--overfit-batch must be >= 1, got {args.overfit_batch}")
    recipe = load_recipe(args.recipe)
    if args.overrides:
        recipe = apply_overrides(recipe, args.overrides)
    output = args.output or f"runs/check-{recipe.name}"
    report = run_checks(
        recipe, output, checks=tuple(args.only or ALL_CHECKS), overfit_batch=args.overfit_batch,
        overfit_steps=args.overfit_steps, max_images=args.max_images,
    )  # fmt: skip
    print(f"timm-recipes check: recipe {recipe.name!r}")
    print(report.text())
    for label, path in report.files.items():
        print(f"  {label:18s} {path}")
    return 0 if report.ok else 1

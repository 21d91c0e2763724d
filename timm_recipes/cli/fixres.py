"""`timm-recipes fixres`: choose the test resolution on held-out training data, then fine-tune at it (FixRes).

Examples::

    timm-recipes fixres runs/demo                                   # a run of this project, on its recipe's data
    timm-recipes fixres resnet50.tv2_in1k --data my-images --out fixres-resnet50   # a model, on your image folder

With ``--data PATH`` (``PATH/train/<class>/``, ``PATH/val/<class>/`` [, ``PATH/test/``]) the argument may be a model
instead of a run: a timm name with a tag, ``hf-hub:org/name``, ``local-dir:FOLDER`` or an export folder; its train
size, test size and normalisation come from its ``pretrained_cfg``.
"""

from __future__ import annotations

import argparse

from timm_recipes.cli._common import (
    UsageError,
    add_alias,
    add_overrides,
    crop_fraction,
    load_recipe_arg,
    nonneg_int,
    positive_float,
    positive_int,
)

HELP = (
    "FixRes (https://arxiv.org/abs/1906.06423): pick the test size/crop on held-out training data, then fine-tune "
    "the classifier and the last BatchNorm at that size"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN_OR_MODEL",
        help="a run folder, its checkpoints/ folder, a tag file or a checkpoint folder; with --data: a model "
        "(resnet50.tv2_in1k, hf-hub:org/name, local-dir:FOLDER, an export folder)",
    )  # fmt: skip
    parser.add_argument(
        "--data", default=None, metavar="PATH",
        help="the image folder (train/, val/ [, test/]) for a model (default for a run: its recipe's data)",
    )  # fmt: skip
    parser.add_argument(
        "--recipe", default=None, help="a preset name or recipe YAML (default: the recipe saved in the checkpoint)"
    )
    add_overrides(parser, "override a recipe value, e.g. --set fixres.epochs=3 (repeatable)")
    parser.add_argument(
        "--sizes", type=positive_int, nargs="+", default=None, metavar="S",
        help="candidate test sizes (default: fixres.test_sizes, else 1, 1.125, ..., 1.5 times the train size)",
    )  # fmt: skip
    parser.add_argument(
        "--crop-pcts", type=crop_fraction, nargs="+", default=None, metavar="P",
        help="candidate crop fractions (default: fixres.test_crop_pcts)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=nonneg_int, default=None, help="fine-tuning epochs (default: fixres.epochs)")
    parser.add_argument(
        "--lr", type=positive_float, default=None, help="fine-tuning learning rate (default: fixres.lr)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: data.batch_size")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--ema", dest="from_ema", action="store_true", default=None, help="start from EMA weights")
    weights.add_argument("--raw", dest="from_ema", action="store_false", help="start from the raw weights")
    parser.add_argument(
        "--checkpoint", dest="tag", choices=("best", "last"), default="best", help="which checkpoint (default: best)"
    )
    add_alias(parser, "--tag", "tag", choices=("best", "last"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, auto (default: run.device)")
    parser.add_argument("--output", default=None, help="output folder (default: <run>/fixres)")
    add_alias(parser, "--out", "output")


def run(args: argparse.Namespace) -> int:
    from timm_recipes.train.progress import ensure_progress_output

    ensure_progress_output(True)  # progress lines on stderr while it works
    from timm_recipes.config import apply_overrides, recipe_from_dict
    from timm_recipes.train.fixres import open_run_checkpoint, run_fixres
    from timm_recipes.train.weights import is_model_reference, load_model_reference, recipe_for_model

    source, recipe, out = args.run, None, args.output
    if is_model_reference(args.run):
        if args.data is None:
            raise UsageError(f"{args.run!r} is a model, not a run: give the images to tune on with --data PATH")
        source = load_model_reference(args.run)
        recipe = recipe_for_model(source, args.data, name=args.run)
        out = out if out is not None else f"fixres-{recipe.name}"
    if args.recipe is not None:
        recipe = load_recipe_arg(args.recipe)
    if args.data is not None and recipe is None:
        recipe = recipe_from_dict(open_run_checkpoint(args.run, args.tag).recipe())
    if args.data is not None:
        recipe = apply_overrides(recipe, {"data.dataset": "folder", "data.root": args.data})
    if args.overrides:
        if recipe is None:
            recipe = recipe_from_dict(open_run_checkpoint(args.run, args.tag).recipe())
        recipe = apply_overrides(recipe, args.overrides)
    result = run_fixres(
        source,
        recipe,
        sizes=args.sizes,
        crop_pcts=args.crop_pcts,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        from_ema=args.from_ema,
        tag=args.tag,
        device=args.device,
        output_dir=out,
    )
    print("held-out selection (top-1 %, loss):")
    for row in result.table:
        mark = " <- chosen" if (row["size"], row["crop_pct"]) == (result.test_size, result.test_crop_pct) else ""
        print(f"  {row['size']:>4}px crop {row['crop_pct']:<5g} {row['top1']:6.2f} %  {row['loss']:.4f}{mark}")
    print(result.summary())
    if result.output_dir is not None:
        print(f"weights and report: {result.output_dir}")
    return 0

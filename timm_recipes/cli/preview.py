"""`timm-recipes preview`: a PNG grid of pipeline draws on an image, or of a Mixup/CutMix batch with its labels.

Examples::

    timm-recipes preview --pipeline multiscale --cutout -n 8 --out preview.png
    timm-recipes preview --pipeline eval --image photo.jpg --size 224 --crop-pct 0.875
    timm-recipes preview --mix --source digits --batch 12 --out mix.png
    timm-recipes preview --schedule --recipe demo --out schedule.png          # the recipe's lr (and momentum)
    timm-recipes preview --schedule --lecture --out schedules.png              # step, cosine, linear, warm-up, 1cycle
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timm_recipes.cli._common import (
    UsageError,
    add_alias,
    add_overrides,
    crop_fraction,
    finite_float,
    nonneg_int,
    positive_int,
)

HELP = (
    "write a PNG of N pipeline draws on an image (--pipeline), of a Mixup/CutMix batch with its labels (--mix), or of "
    "a recipe's learning-rate schedule (--schedule)"
)

PIPELINES = ("multiscale", "rrc", "eval")
SOURCES = ("digits", "photos")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pipe = parser.add_argument_group("pipeline preview (default)")
    pipe.add_argument(
        "--pipeline", choices=PIPELINES, default="multiscale", help="which builder (default: %(default)s)"
    )
    pipe.add_argument("--image", type=Path, default=None, help="image file (default: a built-in photo, china.jpg)")
    pipe.add_argument("-n", "--num", type=positive_int, default=8, help="number of draws (default: %(default)s)")
    pipe.add_argument(
        "--size", type=positive_int, default=224, help="crop / input size in pixels (default: %(default)s)"
    )
    pipe.add_argument(
        "--scale-range",
        type=positive_int,
        nargs=2,
        metavar=("S_MIN", "S_MAX"),
        default=None,
        help="multiscale: short-side range (default: the builder's, 256 480)",
    )
    pipe.add_argument(
        "--crop-pct", type=crop_fraction, default=0.875, help="eval: crop fraction (default: %(default)s)"
    )
    pipe.add_argument("--cutout", action="store_true", help="training pipelines: add Cutout (p=0.5)")

    mix = parser.add_argument_group("Mixup/CutMix preview")
    mix.add_argument("--mix", action="store_true", help="preview a mixed batch instead of a pipeline")
    mix.add_argument("--source", choices=SOURCES, default="digits", help="batch of digits or photos (default: digits)")
    mix.add_argument("--batch", type=positive_int, default=8, help="batch size (default: %(default)s)")
    mix.add_argument("--digit-size", type=positive_int, default=64, help="digits: image side (default: %(default)s)")
    mix.add_argument("--mixup-alpha", type=finite_float, default=0.8, help="default: %(default)s")
    mix.add_argument("--cutmix-alpha", type=finite_float, default=1.0, help="default: %(default)s")
    mix.add_argument("--switch-prob", type=finite_float, default=0.5, help="CutMix probability (default: %(default)s)")
    mix.add_argument("--mode", choices=("batch", "pair", "elem"), default="elem", help="default: %(default)s")
    mix.add_argument("--label-smoothing", type=finite_float, default=0.0, help="default: %(default)s")

    sch = parser.add_argument_group("schedule preview")
    sch.add_argument("--schedule", action="store_true", help="draw a recipe's lr (and momentum) against the step")
    sch.add_argument("--recipe", default="demo", help="preset name or recipe YAML (default: %(default)s)")
    add_overrides(sch)
    sch.add_argument("--lecture", action="store_true", help="draw the lecture's five schedules as variants of it")
    sch.add_argument("--steps-per-epoch", type=positive_int, default=None,
                     help="default: from the recipe's training data and batch size")  # fmt: skip

    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the draws (default: %(default)s)")
    parser.add_argument("--cols", type=positive_int, default=None, help="tiles per row (default: a near-square grid)")
    parser.add_argument("--output", type=Path, default=None, help="output PNG (default: preview.png or mix.png)")
    add_alias(parser, "--out", "output", type=Path)


def _pipeline(args: argparse.Namespace):
    from timm_recipes.data.pipelines import (
        CutoutConfig,
        eval_pipeline,
        multiscale_crop_pipeline,
        random_resized_crop_pipeline,
    )

    if args.pipeline == "eval":
        if args.cutout:
            raise UsageError("--cutout applies to the training pipelines (multiscale, rrc), not to eval")
        return eval_pipeline(input_size=args.size, crop_pct=args.crop_pct)
    cutout = CutoutConfig() if args.cutout else None
    if args.pipeline == "rrc":
        return random_resized_crop_pipeline(size=args.size, cutout=cutout)
    extra = {"scale_range": tuple(args.scale_range)} if args.scale_range else {}
    return multiscale_crop_pipeline(crop_size=args.size, cutout=cutout, **extra)


def _mix_batch(args: argparse.Namespace):
    import numpy as np
    import torch

    from timm_recipes.data.datasets import DigitsDataset, load_sample_photos
    from timm_recipes.data.pipelines import eval_pipeline

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.source == "digits":
        ds = DigitsDataset("train", size=args.digit_size)
        chosen = torch.randperm(len(ds), generator=torch.Generator().manual_seed(args.seed))[: args.batch].tolist()
        images = np.stack([ds.image(i) for i in chosen]).transpose(0, 3, 1, 2)
        targets = [int(ds.targets[i]) for i in chosen]
        return torch.from_numpy(np.ascontiguousarray(images)), torch.tensor(targets), list(ds.classes)
    square = eval_pipeline(input_size=224, crop_pct=1.0, normalize=False)  # centre square, uint8 C×H×W
    photos = load_sample_photos()
    tiles = [square(image=photos[i % 2][1])["image"] for i in range(args.batch)]
    targets = torch.tensor([i % 2 for i in range(args.batch)])
    return torch.stack(tiles), targets, [name.rsplit(".", 1)[0] for name, _ in photos]


def _schedule(args: argparse.Namespace) -> int:
    import math

    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import load_recipe
    from timm_recipes.train.schedule_plot import lecture_schedules, plot_schedules, schedule_trace

    recipe = load_recipe(args.recipe)
    if args.overrides:
        recipe = apply_overrides(recipe, args.overrides)
    steps = args.steps_per_epoch
    if steps is None:
        from timm_recipes.train.builders import build_datasets

        steps = max(1, len(build_datasets(recipe).train) // recipe.data.batch_size)
        steps = math.ceil(steps / recipe.optim.accum_steps)
    if steps < 1:
        raise ValueError(f"--steps-per-epoch must be >= 1, got {steps}")
    variants = lecture_schedules(recipe) if args.lecture else [(f"{recipe.name}: {recipe.schedule.name}", recipe)]
    path = plot_schedules([(label, schedule_trace(r, steps)) for label, r in variants], args.output or "schedule.png")
    print(f"wrote {path} ({len(variants)} schedule(s), {recipe.schedule.epochs} epochs x {steps} steps)")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    if args.schedule:
        return _schedule(args)
    if args.lecture:
        raise ValueError("--lecture applies to --schedule previews")

    from timm_recipes.data.datasets import sample_photo_paths
    from timm_recipes.data.mixing import MixupCutmix
    from timm_recipes.data.preview import preview_mixing, preview_pipeline

    if args.mix:
        if args.image is not None:
            raise UsageError("--image applies to pipeline previews; a --mix preview takes its batch from --source")
        images, targets, names = _mix_batch(args)
        mixer = MixupCutmix(
            num_classes=len(names),
            mixup_alpha=args.mixup_alpha,
            cutmix_alpha=args.cutmix_alpha,
            prob=1.0,
            switch_prob=args.switch_prob,
            mode=args.mode,
            label_smoothing=args.label_smoothing,
            generator=torch.Generator().manual_seed(args.seed),
        )
        grid = preview_mixing(images, targets, mixer, args.output or Path("mix.png"), names, cols=args.cols)
    else:
        image = args.image if args.image is not None else sample_photo_paths()[0]
        if not Path(image).is_file():
            raise UsageError(f"--image {str(image)!r} does not exist")
        pipeline = _pipeline(args)
        grid = preview_pipeline(
            image, pipeline, args.num, args.output or Path("preview.png"), cols=args.cols, seed=args.seed
        )
    h, w = grid.image.shape[:2]
    print(f"wrote {grid.path} ({w}x{h} pixels, {len(grid.boxes)} tiles)")
    return 0

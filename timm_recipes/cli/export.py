"""`timm-recipes export`: write one weight variant of a training run as a timm Hub folder, verified by loading it back.

Examples::

    timm-recipes export runs/demo --output exports/ema              # EMA weights of the best checkpoint
    timm-recipes export runs/demo --raw --output exports/raw
    timm-recipes export runs/demo --fixres --output exports/fixres  # after `timm-recipes fixres runs/demo`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timm_recipes.cli._common import UsageError, add_alias, repo_id

HELP = "export a run's raw, EMA or FixRes weights as a timm Hub folder (safetensors, config.json, recipe, card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="run folder, checkpoints/ folder, tag file or checkpoint folder")
    parser.add_argument("--output", type=Path, default=None, help="export folder to create (required)")
    add_alias(parser, "--out", "output", type=Path)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--ema", dest="weights", action="store_const", const="ema", help="the EMA weights")
    weights.add_argument("--raw", dest="weights", action="store_const", const="raw", help="the raw weights")
    weights.add_argument("--fixres", dest="weights", action="store_const", const="fixres", help="the FixRes weights")
    parser.set_defaults(weights="auto")
    parser.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint (default: %(default)s)"
    )
    parser.add_argument(
        "--variant-tag", dest="tag", default=None, help="variant tag (default e.g. ema_digits32, fixres40_digits)"
    )
    add_alias(parser, "--tag", "tag")
    parser.add_argument(
        "--repo", type=repo_id, default=None, help="org/name it will be published to (for the card's usage)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous export in --output (never any other folder)"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from timm_recipes.hub.runs import export_run
    from timm_recipes.train.checkpoint import describe_checkpoint

    if args.output is None:
        raise UsageError("the following argument is required: --output (the export folder to create)")
    folder = export_run(
        args.source,
        args.output,
        weights=args.weights,
        checkpoint=args.checkpoint,
        tag=args.tag,
        repo_id=args.repo,
        overwrite=args.overwrite,
    )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    info = config["timm_recipes"]
    print(f"exported {info['model']}.{info['tag']} ({info['variant']} weights) to {folder}")
    print(f"  from checkpoint: {describe_checkpoint(args.source, args.checkpoint)}")
    print(f"  files: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    print(f"  checked: timm.create_model('local-dir:{folder}', pretrained=True) gives identical outputs")
    print(f"  card: {folder / 'README.md'}")
    return 0

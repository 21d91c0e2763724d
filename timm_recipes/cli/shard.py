"""`timm-recipes shard`: write an image folder (ImageNet layout) as WebDataset shards with an ``_info.json``.

Examples::

    timm-recipes shard /data/imagenet --output /data/imagenet-wds --samples-per-shard 1250
    timm-recipes train --recipe resnet50_tv2 --set data.dataset=wds --set data.root=/data/imagenet-wds
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timm_recipes.cli._common import add_alias, nonneg_int, positive_int

HELP = "write an image folder (root/{train,val,test}/<class>/) as WebDataset tar shards with an _info.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="image folder with train/ (and val/, test/) sub-folders")
    parser.add_argument("--output", type=Path, required=True, help="shard folder to create (never overwritten)")
    add_alias(parser, "--out", "output", type=Path)
    parser.add_argument("--name", default=None, help="shard file prefix (default: the name of ROOT)")
    parser.add_argument(
        "--samples-per-shard", type=positive_int, default=1000, help="samples per tar file (default %(default)s)"
    )
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the sample order (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="add a json member per sample (original file name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from timm_recipes.data.sources.writing import write_shards

    info = write_shards(args.root, args.output, name=args.name, samples_per_shard=args.samples_per_shard,
                        seed=args.seed, json_sidecar=args.json, progress=not args.no_progress)  # fmt: skip
    for split in info["splits"].values():
        print(f"{split['name']}: {split['num_samples']} samples in {len(split['filenames'])} shards")
    print(f"wrote {args.output / '_info.json'} ({len(info['classes'])} classes); train with "
          f"--set data.dataset=wds --set data.root={args.output}")  # fmt: skip
    return 0

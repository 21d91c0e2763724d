"""`timm-recipes publish`: upload an export folder to the Hugging Face Hub in one commit.

The token comes from ``HF_TOKEN`` or the saved login (``hf auth login``); there is deliberately no ``--token``
option, since command lines end up in shell histories and process lists.

Examples::

    timm-recipes publish exports/ema --repo my-org/recipe_resnet18.ema_digits32
    timm-recipes publish exports/ema --repo my-org/recipe_resnet18.ema_digits32 --create-pr
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timm_recipes.cli._common import positive_float, repo_id

HELP = "publish an export folder to the Hugging Face Hub in one commit (token: HF_TOKEN or `hf auth login`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="export folder (written by `timm-recipes export`)")
    parser.add_argument("--repo", type=repo_id, required=True, help="repository id, org/recipe_<arch>.<tag>")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--overwrite", action="store_true", help="replace weights the repository already holds")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing; default: main)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--message", default=None, help="commit message")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="give up when the Hub stays silent this long (default: $TIMM_RECIPES_HUB_TIMEOUT, else 30)",
    )


def run(args: argparse.Namespace) -> int:
    from timm_recipes.hub import publish

    result = publish(
        args.folder,
        args.repo,
        private=args.private,
        revision=args.revision,
        commit_message=args.message,
        create_pr=args.create_pr,
        overwrite=args.overwrite,
        timeout=args.timeout,
    )
    where = f"pull request {result.pr_url}" if result.pr_url else f"{result.repo_id}@{result.revision}"
    print(f"published {len(result.files)} files to {where}")
    print(f"  commit: {result.commit_url}")
    at = "" if result.revision == "main" else f"@{result.revision}"
    print(f"  load:   timm.create_model('hf-hub:{result.repo_id}{at}', pretrained=True)")
    return 0

"""The `timm-recipes` command line.

Each sub-command lives in its own module of this package (``timm_recipes/cli/<name>.py``) exposing
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``. The argparse namespace stops there:
``run`` turns it into typed calls of the library. Parsing imports neither torch nor timm; errors and exit codes
are :mod:`timm_recipes.cli._common`'s (usage errors 2, failures 1, one line each; ``TIMM_RECIPES_TRACEBACK=1``
for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from timm_recipes.cli._common import CliParser, run_command

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

COMMANDS = (
    "demo", "train", "evaluate", "fixres", "export", "publish", "preview", "search", "shard", "journey", "check",
)  # fmt: skip


def _command_modules() -> dict[str, object]:
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"timm_recipes.cli.{name}")
        except ModuleNotFoundError as err:  # a command not built yet must not break the others
            if err.name != f"timm_recipes.cli.{name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    from timm_recipes import __version__

    parser = CliParser(prog="timm-recipes", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)
    for name, module in _command_modules().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as done:  # --help, --version, or a usage error (already printed on one line)
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)

    def run() -> int:
        importlib.import_module("timm_recipes.models")  # registers recipe_* with timm (deferred past parsing)
        return args._run(args)

    return run_command(args.command, run)

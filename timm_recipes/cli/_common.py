"""What every sub-command shares: argument types checked at parse time, one-line errors and exit codes.

Exit codes: ``0`` success, ``2`` a usage error (a bad flag or value, caught before any work starts), ``1`` a
runtime failure (a missing or damaged file, a network error, a lost DDP peer, ...), ``130`` interrupted. Either
kind of failure prints ONE line on stderr, ``timm-recipes <command>: error: <what went wrong>``; set
``TIMM_RECIPES_TRACEBACK=1`` to see the full Python traceback instead.

This module imports neither torch nor timm: ``timm-recipes --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = [
    "TRACEBACK_ENV",
    "CliParser",
    "UsageError",
    "add_alias",
    "crop_fraction",
    "error_line",
    "finite_float",
    "load_recipe_arg",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "repo_id",
    "run_command",
]

TRACEBACK_ENV = "TIMM_RECIPES_TRACEBACK"


class UsageError(ValueError):
    """A command line that cannot work (conflicting or missing flags): exit code 2, before any work starts."""


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (with a pointer to ``--help``) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: Callable[[str], Any], text: str, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, epochs, counts)."""
    value = _number(int, text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    value = _number(int, text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (exponents of a search range)."""
    value = _number(float, text, "a finite number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _number(float, text, "a finite number > 0")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def crop_fraction(text: str) -> float:
    """A crop fraction in (0, 1]."""
    value = _number(float, text, "a number in (0, 1]")
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def repo_id(text: str) -> str:
    """A Hub repository id, ``owner/name`` (letters, digits, ``-``, ``_``, ``.``; the Hub checks the rest)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", text) or ".." in text or text.endswith("."):
        raise argparse.ArgumentTypeError(
            f"must be a repository id owner/name, e.g. my-org/recipe_resnet18.ema, got {text!r}"
        )
    return text


def add_overrides(parser: Any, help: str = "override a recipe value (repeatable)") -> None:
    """The ``--set KEY=VALUE`` flag (repeatable) every recipe-taking command has; the values land in ``overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_alias(parser: argparse.ArgumentParser, old: str, dest: str, **kwargs: Any) -> None:
    """Keep an older spelling of a flag working without showing it in ``--help``."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def load_recipe_arg(text: str, flag: str = "--recipe") -> Any:
    """``load_recipe(text)``, a missing file or preset being a usage error naming ``flag``."""
    from timm_recipes.recipes import load_recipe

    try:
        return load_recipe(text)
    except FileNotFoundError as err:
        raise UsageError(f"{flag}: {err}") from None


def _is_usage_error(err: BaseException) -> bool:
    from_config = type(err).__name__ == "RecipeError" and type(err).__module__ == "timm_recipes.config"
    return isinstance(err, UsageError) or from_config


def error_line(err: BaseException) -> str:
    """The message of ``err`` on one line (multi-line messages are joined), with its type when it has none."""
    text = " ".join(str(err).split()) if str(err).strip() else type(err).__name__
    if isinstance(err, KeyError) and str(err).strip():
        text = f"missing {text}"
    return text


def run_command(command: str, run: Callable[[], Any]) -> int:
    """Run one sub-command: its return code, or 2 / 1 / 130 with one line on stderr for a usage error / failure.

    ``TIMM_RECIPES_TRACEBACK=1`` re-raises instead, for the full traceback. Python warnings raised on the way are
    printed as one ``warning:`` line each (not as ``file:line: UserWarning`` blocks).
    """
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"timm-recipes {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    previous = warnings.showwarning
    if os.environ.get(TRACEBACK_ENV, "") in ("", "0"):
        warnings.showwarning = show
    try:
        return _run(command, run)
    finally:
        warnings.showwarning = previous


def _run(command: str, run: Callable[[], Any]) -> int:
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"timm-recipes {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        hint = "" if _is_usage_error(err) else f" (set {TRACEBACK_ENV}=1 for the traceback)"
        print(f"timm-recipes {command}: error: {error_line(err)}{hint}", file=sys.stderr)
        return 2 if _is_usage_error(err) else 1

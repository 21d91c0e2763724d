"""Progress visible by default: the package's log lines reach stderr unless the caller decided otherwise.

Python's ``logging`` drops INFO lines when nobody configured it, so ``fit(recipe)`` in a notebook or a script would
print nothing for minutes. :func:`ensure_progress_output` attaches one plain stderr handler to the ``timm_recipes``
logger, only when neither that logger nor the root logger has a handler (a caller who configured ``logging`` keeps
full control). Silence it with ``fit(..., verbose=False)``, ``run.progress=false`` or
``logging.getLogger("timm_recipes").setLevel(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ensure_progress_output"]

_MARK = "_timm_recipes_default"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each line (redirections and test captures follow)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def ensure_progress_output(enabled: bool = True) -> None:
    """Show (``enabled``) or hide the default stderr output of the ``timm_recipes`` loggers.

    Does nothing when the caller configured handlers (on ``timm_recipes`` or the root logger) itself.
    """
    logger = logging.getLogger("timm_recipes")
    ours = [h for h in logger.handlers if getattr(h, _MARK, False)]
    if not enabled:
        for handler in ours:
            logger.removeHandler(handler)
        return
    if ours or logger.hasHandlers():
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)

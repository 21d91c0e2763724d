"""timm-recipes: the modern ImageNet training recipe as a timm plugin.

Importing the package registers the recipe models with timm::

    import timm, timm_recipes
    model = timm.create_model("recipe_resnet50", drop_path_rate=0.05)

The ``timm-recipes`` command is the one exception: it parses its arguments (``--help``, usage errors) before torch
and timm are imported, and registers the models just before running a sub-command.
"""

from __future__ import annotations

import itertools
import os
import sys

__version__ = "0.1.0"

__all__ = ["StochasticDepth", "__version__", "models"]


def _started_as_command() -> bool:
    """Whether this import starts the ``timm-recipes`` console script or ``python -m timm_recipes[.cli]``."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("timm-recipes", "timm-recipes.exe"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b in ("timm_recipes", "timm_recipes.cli") for a, b in itertools.pairwise(argv))


if _started_as_command():

    def __getattr__(name: str) -> object:  # PEP 562: the models are imported (and registered) on first use
        if name in ("models", "StochasticDepth"):
            from timm_recipes import layers, models

            return models if name == "models" else layers.StochasticDepth
        raise AttributeError(f"module 'timm_recipes' has no attribute {name!r}")

else:
    from timm_recipes import models  # registers recipe_* with timm
    from timm_recipes.layers import StochasticDepth

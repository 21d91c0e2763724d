"""timm-recipes: the modern ImageNet training recipe as a timm plugin.

Importing the package registers the recipe models with timm::

    import timm, timm_recipes
    model = timm.create_model("recipe_resnet50", drop_path_rate=0.05)
"""

from __future__ import annotations

__version__ = "0.1.0"

from timm_recipes import models  # registers recipe_* with timm
from timm_recipes.layers import StochasticDepth

__all__ = ["StochasticDepth", "__version__", "models"]

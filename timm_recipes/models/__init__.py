"""The recipe models, registered with timm on import (``timm.list_models("recipe_*")``).

``recipe_resnet18`` … ``recipe_resnet152`` and ``recipe_efficientnet_b0`` … ``b7``: timm's architectures and
``state_dict`` keys, trained with the lecture's stochastic depth (:mod:`timm_recipes.layers`).
"""

from __future__ import annotations

from timm_recipes.models._builder import HUB_ORG, TIMM_HUB_ORG, PretrainedWeightsError, timm_twin_tags
from timm_recipes.models.recipe_efficientnet import (
    EFFICIENTNET_DEFAULT_TAGS,
    EFFICIENTNET_DROP_PATH_RATE,
    EFFICIENTNET_VARIANTS,
    EfficientNetVariant,
    RecipeEfficientNet,
    RecipeEfficientNetFeatures,
)
from timm_recipes.models.recipe_resnet import (
    RESNET_DEFAULT_TAGS,
    RESNET_DROP_PATH_RATES,
    RecipeBasicBlock,
    RecipeBottleneck,
    RecipeResNet,
)

RECIPE_MODELS: tuple[str, ...] = (
    *(f"recipe_resnet{depth}" for depth in RESNET_DROP_PATH_RATES),
    *(f"recipe_efficientnet_{variant}" for variant in EFFICIENTNET_VARIANTS),
)
"""The names of all registered recipe models."""

__all__ = [
    "EFFICIENTNET_DEFAULT_TAGS",
    "EFFICIENTNET_DROP_PATH_RATE",
    "EFFICIENTNET_VARIANTS",
    "HUB_ORG",
    "RECIPE_MODELS",
    "RESNET_DEFAULT_TAGS",
    "RESNET_DROP_PATH_RATES",
    "TIMM_HUB_ORG",
    "EfficientNetVariant",
    "PretrainedWeightsError",
    "RecipeBasicBlock",
    "RecipeBottleneck",
    "RecipeEfficientNet",
    "RecipeEfficientNetFeatures",
    "RecipeResNet",
    "timm_twin_tags",
]

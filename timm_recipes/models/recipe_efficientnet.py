"""Recipe EfficientNets: timm's EfficientNet-B0 … B7 with the paper's per-variant table and stochastic depth.

Papers:
* Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks" - https://arxiv.org/abs/1905.11946
* Huang et al., "Deep Networks with Stochastic Depth" - https://arxiv.org/abs/1603.09382

Built on timm's ``EfficientNet`` / ``EfficientNetFeatures`` and its block builder: the architecture and the
``state_dict`` keys are those of timm's ``efficientnet_b0`` … ``efficientnet_b7`` (identical ``eval()`` outputs).
The variants differ only by the row of :data:`EFFICIENTNET_VARIANTS` (width, depth, resolution, dropout), which
the code and the tests both read. Training adds stochastic depth ("drop connect", rate 0.2 by default) by the
lecture's rule p_l = 1 − (l / L)(1 − p_L), where l = 1 … L counts every block in depth order and only blocks
with an identity path hold a :class:`~timm_recipes.layers.StochasticDepth` (the others are never dropped).

Usage::

    import timm, timm_recipes
    model = timm.create_model("recipe_efficientnet_b3")         # dropout 0.3, drop_path_rate 0.2, "row" mode
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models._efficientnet_builder import decode_arch_def, resolve_act_layer, resolve_bn_args, round_channels
from timm.models.efficientnet import EfficientNet, EfficientNetFeatures

from timm_recipes.layers import StochasticDepth
from timm_recipes.models._builder import attach_stochastic_depth, build_recipe_model, timm_pretrained_cfgs

__all__ = [
    "EFFICIENTNET_DEFAULT_TAGS",
    "EFFICIENTNET_DROP_PATH_RATE",
    "EFFICIENTNET_VARIANTS",
    "EfficientNetVariant",
    "RecipeEfficientNet",
    "RecipeEfficientNetFeatures",
]


class EfficientNetVariant(NamedTuple):
    """One row of the EfficientNet compound-scaling table."""

    width: float  # channel multiplier
    depth: float  # multiplier of the number of blocks per stage
    resolution: int  # training (and default test) image size
    dropout: float  # dropout probability before the classifier


EFFICIENTNET_VARIANTS: dict[str, EfficientNetVariant] = {
    "b0": EfficientNetVariant(width=1.0, depth=1.0, resolution=224, dropout=0.2),
    "b1": EfficientNetVariant(width=1.0, depth=1.1, resolution=240, dropout=0.2),
    "b2": EfficientNetVariant(width=1.1, depth=1.2, resolution=260, dropout=0.3),
    "b3": EfficientNetVariant(width=1.2, depth=1.4, resolution=300, dropout=0.3),
    "b4": EfficientNetVariant(width=1.4, depth=1.8, resolution=380, dropout=0.4),
    "b5": EfficientNetVariant(width=1.6, depth=2.2, resolution=456, dropout=0.4),
    "b6": EfficientNetVariant(width=1.8, depth=2.6, resolution=528, dropout=0.5),
    "b7": EfficientNetVariant(width=2.0, depth=3.1, resolution=600, dropout=0.5),
}
"""Tan & Le 2019 (the reference implementation's ``efficientnet_params``): the lecture's "dropout from 0.2 to 0.5
across B0–B7" is the last column."""

EFFICIENTNET_DROP_PATH_RATE = 0.2
"""Default drop-connect rate (1 − p_L) of every variant: the reference implementation's ``drop_connect_rate``
(tensorflow/tpu ``efficientnet_builder.py``) and timm's EfficientNet training examples (``--drop-path 0.2``)."""

# The EfficientNet-B0 baseline network (Tan & Le 2019, Table 1), in timm's block notation; as in timm's
# `_gen_efficientnet`, which the recipe models follow line for line except for the model classes.
_B0_ARCH_DEF = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]


class RecipeDepthwiseSeparableConv(DepthwiseSeparableConv):
    """timm's ``DepthwiseSeparableConv`` (with identity path) that skips its branch when stochastic depth drops it.

    Tan & Le, https://arxiv.org/abs/1905.11946; Huang et al., https://arxiv.org/abs/1603.09382.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_path.sample_skip():
            return x
        shortcut = x
        if self.conv_s2d is not None:
            x = self.conv_s2d(x)
            x = self.bn_s2d(x)
        x = self.conv_dw(x)
        x = self.bn1(x)
        x = self.aa(x)
        x = self.se(x)
        x = self.conv_pw(x)
        x = self.bn2(x)
        return self.drop_path(x) + shortcut


class RecipeInvertedResidual(InvertedResidual):
    """timm's ``InvertedResidual`` (MBConv, with identity path) that skips its branch when stochastic depth drops it.

    Tan & Le, https://arxiv.org/abs/1905.11946; Huang et al., https://arxiv.org/abs/1603.09382.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_path.sample_skip():
            return x
        shortcut = x
        if self.conv_s2d is not None:
            x = self.conv_s2d(x)
            x = self.bn_s2d(x)
        x = self.conv_pw(x)
        x = self.bn1(x)
        x = self.conv_dw(x)
        x = self.bn2(x)
        x = self.aa(x)
        x = self.se(x)
        x = self.conv_pwl(x)
        x = self.bn3(x)
        return self.drop_path(x) + shortcut


_RECIPE_BLOCKS: dict[type[nn.Module], type[nn.Module]] = {
    DepthwiseSeparableConv: RecipeDepthwiseSeparableConv,
    InvertedResidual: RecipeInvertedResidual,
}


def _attach_to_stages(stages: nn.Sequential, drop_path_rate: float, mode: str) -> list[StochasticDepth]:
    """Turn each block with an identity path into its recipe subclass and give it a StochasticDepth.

    timm's ``EfficientNetBuilder`` instantiates its block classes by name, so the built blocks are re-classed in
    place to subclasses that override ``forward`` only and add no state (the technique of
    ``torch.nn.utils.parametrize``); the modules, parameters and ``state_dict`` keys stay timm's.
    """
    blocks = [block for stage in stages for block in stage]
    for block in blocks:
        if block.has_skip:
            if type(block) not in _RECIPE_BLOCKS:
                raise TypeError(f"no stochastic-depth variant of block type {type(block).__name__}")
            block.__class__ = _RECIPE_BLOCKS[type(block)]
    return attach_stochastic_depth(blocks, drop_path_rate, mode, droppable=lambda block: block.has_skip)


class RecipeEfficientNet(EfficientNet):
    """timm's ``EfficientNet`` whose blocks with an identity path each hold a StochasticDepth.

    Tan & Le, https://arxiv.org/abs/1905.11946; stochastic depth: Huang et al., https://arxiv.org/abs/1603.09382.

    Args:
        *args: positional arguments of timm's ``EfficientNet`` (``block_args``).
        drop_path_rate: 1 − p_L over all L blocks, in [0, 1).
        stochastic_depth_mode: ``"row"`` (default) or ``"batch"``; see :class:`~timm_recipes.layers.StochasticDepth`.
        **kwargs: keyword arguments of timm's ``EfficientNet`` (``num_classes``, ``in_chans``, ``drop_rate``, …).
    """

    def __init__(self, *args, drop_path_rate: float = 0.0, stochastic_depth_mode: str = "row", **kwargs):
        super().__init__(*args, drop_path_rate=0.0, **kwargs)
        _attach_to_stages(self.blocks, drop_path_rate, stochastic_depth_mode)


class RecipeEfficientNetFeatures(EfficientNetFeatures):
    """timm's ``EfficientNetFeatures`` (the ``features_only=True`` backbone) with the recipe's stochastic depth.

    Tan & Le, https://arxiv.org/abs/1905.11946; stochastic depth: Huang et al., https://arxiv.org/abs/1603.09382.
    """

    def __init__(self, *args, drop_path_rate: float = 0.0, stochastic_depth_mode: str = "row", **kwargs):
        super().__init__(*args, drop_path_rate=0.0, **kwargs)
        _attach_to_stages(self.blocks, drop_path_rate, stochastic_depth_mode)


def _gen_recipe_efficientnet(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build ``recipe_efficientnet_bX`` with the recipe model classes.

    Follows timm's ``_gen_efficientnet`` and ``_create_effnet`` (which build ``efficientnet_bX``) step by step;
    they cannot be called directly because they hard-code timm's model classes.
    """
    scale = EFFICIENTNET_VARIANTS[variant.rsplit("_", 1)[-1]]
    round_chs_fn = partial(round_channels, multiplier=scale.width, divisor=8)
    model_kwargs = dict(
        block_args=decode_arch_def(_B0_ARCH_DEF, scale.depth),
        num_features=round_chs_fn(1280),
        stem_size=32,
        round_chs_fn=round_chs_fn,
        act_layer=resolve_act_layer(kwargs, "swish"),
        norm_layer=kwargs.pop("norm_layer", None) or partial(nn.BatchNorm2d, **resolve_bn_args(kwargs)),
        **kwargs,
    )
    model_cls, kwargs_filter, features_cls = RecipeEfficientNet, None, False
    if model_kwargs.pop("features_only", False):
        if "feature_cfg" in model_kwargs or "feature_cls" in model_kwargs:
            model_kwargs["features_only"] = True  # timm's generic feature wrappers (hooks / fx)
        else:
            model_cls, features_cls = RecipeEfficientNetFeatures, True
            kwargs_filter = ("num_classes", "num_features", "head_conv", "global_pool")
    pretrained_strict = model_kwargs.pop("pretrained_strict", True) and not features_cls
    model = build_recipe_model(
        model_cls,
        variant,
        pretrained,
        pretrained_strict=pretrained_strict,
        kwargs_filter=kwargs_filter,
        **model_kwargs,
    )
    if features_cls:
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    return model


def _cfg(variant: str, **kwargs) -> dict:
    """Pretrained cfg of ``recipe_efficientnet_<variant>``, sizes from :data:`EFFICIENTNET_VARIANTS`.

    * ``crop_pct = r / (r + 32)``: the reference implementation's evaluation crop (``CROP_PADDING = 32``).
    * ``test_input_size`` ≈ 1.15 r (a multiple of 16) with a full crop: the FixRes train/test discrepancy
      (Touvron et al. 2019, https://arxiv.org/abs/1906.06423) as timm's ``efficientnet_b0/b1.ra4`` weights
      apply it (224 → 256, 240 → 288, ``test_crop_pct`` 1.0); the FixRes step replaces it with a measured choice.
    """
    r = EFFICIENTNET_VARIANTS[variant].resolution
    test_r = 16 * round(1.15 * r / 16)
    return {
        "num_classes": 1000,
        "input_size": (3, r, r),
        "pool_size": (math.ceil(r / 32), math.ceil(r / 32)),
        "crop_pct": r / (r + 32),
        "test_input_size": (3, test_r, test_r),
        "test_crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv_stem",
        "classifier": "classifier",
        "license": "apache-2.0",
        "paper_ids": "arXiv:1905.11946, arXiv:1603.09382",
        **kwargs,
    }


EFFICIENTNET_DEFAULT_TAGS: dict[str, str | None] = {
    "b0": "ra4_e3600_r224_in1k",
    "b1": "ra4_e3600_r240_in1k",
    "b2": "ra_in1k",
    "b3": "ra2_in1k",
    "b4": "ra2_in1k",
    "b5": "sw_in12k_ft_in1k",
    "b6": None,
    "b7": None,
}
"""The default pretrained tag per variant (``timm/efficientnet_<v>.<tag>``): the strongest ImageNet-1k weights timm
lists for that architecture (B5's only ones are pre-trained on ImageNet-12k, then fine-tuned on ImageNet-1k).
B6 and B7 have none (timm's only B6/B7 weights are of the TensorFlow-padded ``tf_efficientnet_*`` architecture,
whose ``state_dict`` differs): ``pretrained=True`` raises :class:`PretrainedWeightsError`; their cfg is the recipe's
preprocessing (:func:`_cfg`).
"""

default_cfgs = generate_default_cfgs(
    {
        name: cfg
        for variant, tag in EFFICIENTNET_DEFAULT_TAGS.items()
        for name, cfg in (
            timm_pretrained_cfgs(f"recipe_efficientnet_{variant}", f"efficientnet_{variant}", tag)
            if tag is not None
            else {f"recipe_efficientnet_{variant}": _cfg(variant)}
        ).items()
    }
)


def _defaults(variant: str) -> dict:
    return dict(drop_rate=EFFICIENTNET_VARIANTS[variant].dropout, drop_path_rate=EFFICIENTNET_DROP_PATH_RATE)


@register_model
def recipe_efficientnet_b0(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B0: width 1.0, depth 1.0, 224 px, dropout 0.2."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b0", pretrained, **dict(_defaults("b0"), **kwargs))


@register_model
def recipe_efficientnet_b1(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B1: width 1.0, depth 1.1, 240 px, dropout 0.2."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b1", pretrained, **dict(_defaults("b1"), **kwargs))


@register_model
def recipe_efficientnet_b2(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B2: width 1.1, depth 1.2, 260 px, dropout 0.3."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b2", pretrained, **dict(_defaults("b2"), **kwargs))


@register_model
def recipe_efficientnet_b3(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B3: width 1.2, depth 1.4, 300 px, dropout 0.3."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b3", pretrained, **dict(_defaults("b3"), **kwargs))


@register_model
def recipe_efficientnet_b4(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B4: width 1.4, depth 1.8, 380 px, dropout 0.4."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b4", pretrained, **dict(_defaults("b4"), **kwargs))


@register_model
def recipe_efficientnet_b5(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B5: width 1.6, depth 2.2, 456 px, dropout 0.4."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b5", pretrained, **dict(_defaults("b5"), **kwargs))


@register_model
def recipe_efficientnet_b6(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B6: width 1.8, depth 2.6, 528 px, dropout 0.5."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b6", pretrained, **dict(_defaults("b6"), **kwargs))


@register_model
def recipe_efficientnet_b7(pretrained: bool = False, **kwargs) -> RecipeEfficientNet:
    """EfficientNet-B7: width 2.0, depth 3.1, 600 px, dropout 0.5."""
    return _gen_recipe_efficientnet("recipe_efficientnet_b7", pretrained, **dict(_defaults("b7"), **kwargs))

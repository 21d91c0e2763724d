"""Recipe ResNets: timm's ResNet-18 … ResNet-152 trained with the lecture's stochastic depth.

Papers:
* He et al., "Deep Residual Learning for Image Recognition" - https://arxiv.org/abs/1512.03385
* Huang et al., "Deep Networks with Stochastic Depth" - https://arxiv.org/abs/1603.09382
* Wightman et al., "ResNet strikes back: An improved training procedure in timm" - https://arxiv.org/abs/2110.00476

Built on timm's ``ResNet``, ``BasicBlock`` and ``Bottleneck``: the architecture and the ``state_dict`` keys are
those of timm's ``resnet18`` … ``resnet152`` (a checkpoint of one loads into the other with ``strict=True``, and
both give identical outputs in ``eval()``). Only training changes: each of the L residual blocks, in depth order,
holds a :class:`~timm_recipes.layers.StochasticDepth` with p_l = 1 − (l / L)(1 − p_L), ``drop_path_rate = 1 − p_L``,
in the mode chosen by ``stochastic_depth_mode`` (``"row"``, the default, or ``"batch"``).

Usage::

    import timm, timm_recipes
    model = timm.create_model("recipe_resnet50")                       # drop_path_rate 0.05, "row" mode
    model = timm.create_model("recipe_resnet50", drop_path_rate=0.5, stochastic_depth_mode="batch")
"""

from __future__ import annotations

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from timm_recipes.models._builder import attach_stochastic_depth, build_recipe_model, timm_pretrained_cfgs

__all__ = ["RESNET_DEFAULT_TAGS", "RESNET_DROP_PATH_RATES", "RecipeBasicBlock", "RecipeBottleneck", "RecipeResNet"]

RESNET_DROP_PATH_RATES: dict[int, float] = {18: 0.0, 34: 0.0, 50: 0.05, 101: 0.1, 152: 0.2}
"""Default ``drop_path_rate`` (1 − p_L) per depth.

* 18, 34: 0 — shallow ResNets are not regularised by depth: neither ResNet strikes back's A3 procedure nor
  torchvision's V2 recipe uses stochastic depth.
* 50: 0.05 — ResNet strikes back, procedures A1 and A2 (Wightman et al. 2021, Table 1).
* 101, 152: 0.1, 0.2 — deeper networks take stronger stochastic depth (Huang et al. 2016 use p_L = 0.5 at
  110+ layers; timm's ``resnet101/152.a1h_in1k`` use "stronger … stochastic depth … than paper A1"). The exact
  rates of those weights are not published; these values are our extrapolation, to be tuned.
"""


class RecipeBasicBlock(BasicBlock):
    """timm's ``BasicBlock`` whose residual branch is not computed at all when its stochastic depth drops it.

    He et al., https://arxiv.org/abs/1512.03385; Huang et al., https://arxiv.org/abs/1603.09382.
    Same modules and parameters as the parent; only ``forward`` differs, and only in training.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.drop_path.sample_skip():
            # The dropped branch adds nothing: out = act(shortcut). The activation works in place, so an identity
            # shortcut (the block's input) is copied first.
            return self.act2(shortcut.clone() if self.downsample is None else shortcut)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.drop_block(x)
        x = self.act1(x)
        x = self.aa(x)

        x = self.conv2(x)
        x = self.bn2(x)

        if self.se is not None:
            x = self.se(x)

        x = self.drop_path(x)
        x += shortcut
        return self.act2(x)


class RecipeBottleneck(Bottleneck):
    """timm's ``Bottleneck`` whose residual branch is not computed at all when its stochastic depth drops it.

    He et al., https://arxiv.org/abs/1512.03385; Huang et al., https://arxiv.org/abs/1603.09382.
    Same modules and parameters as the parent; only ``forward`` differs, and only in training.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.drop_path.sample_skip():
            # As in RecipeBasicBlock: out = act(shortcut), never writing into the block's input.
            return self.act3(shortcut.clone() if self.downsample is None else shortcut)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)

        x = self.conv2(x)
        x = self.bn2(x)
        x = self.drop_block(x)
        x = self.act2(x)
        x = self.aa(x)

        x = self.conv3(x)
        x = self.bn3(x)

        if self.se is not None:
            x = self.se(x)

        x = self.drop_path(x)
        x += shortcut
        return self.act3(x)


class RecipeResNet(ResNet):
    """timm's ``ResNet`` with one :class:`~timm_recipes.layers.StochasticDepth` per residual block.

    He et al., https://arxiv.org/abs/1512.03385; stochastic depth: Huang et al., https://arxiv.org/abs/1603.09382.

    Args:
        *args: positional arguments of timm's ``ResNet`` (``block``, ``layers``).
        drop_path_rate: 1 − p_L, the drop probability of the deepest block, in [0, 1).
        stochastic_depth_mode: ``"row"`` (per sample, like timm's ``DropPath``; the default, which keeps every
            timm contract) or ``"batch"`` (per mini-batch; a dropped branch is skipped, which saves its
            compute; see :class:`~timm_recipes.layers.StochasticDepth` for its constraints).
        **kwargs: keyword arguments of timm's ``ResNet`` (``num_classes``, ``in_chans``, ``drop_rate``, …).
    """

    def __init__(self, *args, drop_path_rate: float = 0.0, stochastic_depth_mode: str = "row", **kwargs):
        super().__init__(*args, drop_path_rate=0.0, **kwargs)  # timm's own DropPath rule stays unused
        blocks = [*self.layer1, *self.layer2, *self.layer3, *self.layer4]
        for block in blocks:
            if not isinstance(block, (RecipeBasicBlock, RecipeBottleneck)):
                raise TypeError(f"block must be RecipeBasicBlock or RecipeBottleneck, got {type(block).__name__}")
        attach_stochastic_depth(blocks, drop_path_rate, stochastic_depth_mode)


def _create_recipe_resnet(variant: str, pretrained: bool = False, **kwargs) -> RecipeResNet:
    return build_recipe_model(RecipeResNet, variant, pretrained, **kwargs)


RESNET_DEFAULT_TAGS: dict[int, str] = {
    18: "a1_in1k",
    34: "ra4_e3600_r224_in1k",
    50: "tv2_in1k",
    101: "tv2_in1k",
    152: "tv2_in1k",
}
"""The default pretrained tag per depth (``timm/resnet<depth>.<tag>``); every other ImageNet-1k tag is registered too.

* 50, 101, 152: ``tv2_in1k``, torchvision's V2 recipe, the lecture's case study (train 176 px, test 224 px).
* 18: ``a1_in1k``, ResNet strikes back A1 (torchvision published no V2 ResNet-18 weights); 34: ``ra4_e3600_r224_in1k``,
  timm's 3600-epoch RA4 recipe: the strongest ImageNet-1k-only weights timm lists for those depths.
"""

default_cfgs = generate_default_cfgs(
    {
        name: cfg
        for depth, tag in RESNET_DEFAULT_TAGS.items()
        for name, cfg in timm_pretrained_cfgs(f"recipe_resnet{depth}", f"resnet{depth}", tag).items()
    }
)


@register_model
def recipe_resnet18(pretrained: bool = False, **kwargs) -> RecipeResNet:
    """ResNet-18 with stochastic depth (default ``drop_path_rate`` 0)."""
    model_args = dict(block=RecipeBasicBlock, layers=(2, 2, 2, 2), drop_path_rate=RESNET_DROP_PATH_RATES[18])
    return _create_recipe_resnet("recipe_resnet18", pretrained, **dict(model_args, **kwargs))


@register_model
def recipe_resnet34(pretrained: bool = False, **kwargs) -> RecipeResNet:
    """ResNet-34 with stochastic depth (default ``drop_path_rate`` 0)."""
    model_args = dict(block=RecipeBasicBlock, layers=(3, 4, 6, 3), drop_path_rate=RESNET_DROP_PATH_RATES[34])
    return _create_recipe_resnet("recipe_resnet34", pretrained, **dict(model_args, **kwargs))


@register_model
def recipe_resnet50(pretrained: bool = False, **kwargs) -> RecipeResNet:
    """ResNet-50 with stochastic depth (default ``drop_path_rate`` 0.05)."""
    model_args = dict(block=RecipeBottleneck, layers=(3, 4, 6, 3), drop_path_rate=RESNET_DROP_PATH_RATES[50])
    return _create_recipe_resnet("recipe_resnet50", pretrained, **dict(model_args, **kwargs))


@register_model
def recipe_resnet101(pretrained: bool = False, **kwargs) -> RecipeResNet:
    """ResNet-101 with stochastic depth (default ``drop_path_rate`` 0.1)."""
    model_args = dict(block=RecipeBottleneck, layers=(3, 4, 23, 3), drop_path_rate=RESNET_DROP_PATH_RATES[101])
    return _create_recipe_resnet("recipe_resnet101", pretrained, **dict(model_args, **kwargs))


@register_model
def recipe_resnet152(pretrained: bool = False, **kwargs) -> RecipeResNet:
    """ResNet-152 with stochastic depth (default ``drop_path_rate`` 0.2)."""
    model_args = dict(block=RecipeBottleneck, layers=(3, 8, 36, 3), drop_path_rate=RESNET_DROP_PATH_RATES[152])
    return _create_recipe_resnet("recipe_resnet152", pretrained, **dict(model_args, **kwargs))

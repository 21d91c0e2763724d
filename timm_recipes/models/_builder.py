"""What the recipe model files share: argument checks, stochastic-depth wiring, and pretrained-weight errors.

Models are built by timm's own ``build_model_with_cfg`` (pretrained loading, ``features_only``,
``pretrained_cfg``); this module only adds what timm lacks for the recipe models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import timm
import torch.nn as nn
from huggingface_hub.errors import EntryNotFoundError
from timm.models import build_model_with_cfg

from timm_recipes.layers import StochasticDepth, check_rate, check_stochastic_depth_mode, survival_probs
from timm_recipes.network import bounded_network

__all__ = [
    "HUB_ORG",
    "TIMM_HUB_ORG",
    "PretrainedWeightsError",
    "attach_stochastic_depth",
    "build_recipe_model",
    "check_model_args",
    "timm_pretrained_cfgs",
    "timm_twin_tags",
]

HUB_ORG = "timm-recipes"
"""Hugging Face Hub organisation for weights this project publishes itself (``hub.repo_id`` default owner)."""

TIMM_HUB_ORG = "timm"
"""Where timm's own ImageNet-1k weights live: ``timm/<arch>.<tag>`` (e.g. ``timm/resnet50.tv2_in1k``)."""

_DROPPED_CFG_KEYS = ("architecture", "tag", "url")
"""Keys of timm's cfg not copied: the first two are set by the registration, ``url`` points at a pickle."""


def timm_twin_tags(timm_arch: str) -> list[str]:
    """The tags of timm's ``timm_arch`` whose classifier predicts the ImageNet-1k classes (``*_in1k``, 1000 outputs).

    That leaves out weights for other label sets (``resnet50.bamboo``, ``efficientnet_b5.sw_in12k``); the tag
    itself says the training data (``fb_swsl_ig1b_ft_in1k``: pre-trained on IG-1B, fine-tuned on ImageNet-1k).
    """
    from timm.models import get_pretrained_cfg

    tags = []
    for name in timm.list_pretrained(f"{timm_arch}.*"):
        tag = name.split(".", 1)[1]
        if tag.endswith("in1k") and get_pretrained_cfg(name).num_classes == 1000:
            tags.append(tag)
    return tags


def timm_pretrained_cfgs(recipe_arch: str, timm_arch: str, default_tag: str) -> dict[str, dict[str, Any]]:
    """Pretrained cfgs of ``recipe_arch`` for every ImageNet-1k tag of its timm twin, copied from timm's registry.

    Each entry is timm's own ``pretrained_cfg`` of ``<timm_arch>.<tag>`` (sizes, crops, interpolation, mean/std,
    licence, origin, ``hf_hub_id = timm/<timm_arch>.<tag>``), read at import time so it cannot drift from timm,
    with two changes that keep the loading safetensors-only: ``url`` (a pickled ``.pth`` download) is dropped and
    ``hf_hub_filename`` is ``model.safetensors``. ``default_tag`` comes first, which makes it timm's default.

    Raises:
        ValueError: ``default_tag`` is not one of those tags (timm renamed or removed it).
    """
    from timm.models import get_pretrained_cfg

    tags = timm_twin_tags(timm_arch)
    if default_tag not in tags:
        raise ValueError(f"default_tag: {timm_arch}.{default_tag} is not an ImageNet-1k tag timm lists ({tags})")
    cfgs = {}
    for tag in [default_tag, *(t for t in tags if t != default_tag)]:
        cfg = {
            k: v for k, v in get_pretrained_cfg(f"{timm_arch}.{tag}").to_dict().items() if k not in _DROPPED_CFG_KEYS
        }
        cfg["hf_hub_filename"] = "model.safetensors"
        cfgs[f"{recipe_arch}.{tag}"] = cfg
    return cfgs


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights of a recipe model could not be loaded; the message names the source it tried."""


def check_model_args(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    stochastic_depth_mode: str = "row",
    **_: Any,
) -> None:
    """Raise ``ValueError`` (or ``TypeError``) naming the first model argument outside its allowed range."""
    for name, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer >= {low}, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    check_rate(drop_rate, "drop_rate")
    check_rate(drop_path_rate, "drop_path_rate")
    check_stochastic_depth_mode(stochastic_depth_mode)


def attach_stochastic_depth(
    blocks: Sequence[nn.Module],
    drop_path_rate: float,
    mode: str,
    *,
    droppable: Callable[[nn.Module], bool] = lambda block: True,
) -> list[StochasticDepth]:
    """Give every droppable block a ``drop_path = StochasticDepth(p_l, mode)``, p_l by the lecture's rule.

    Args:
        blocks: all blocks of the network in depth order; l = 1 … L counts every one of them.
        drop_path_rate: 1 − p_L, in [0, 1).
        mode: ``"row"`` or ``"batch"``.
        droppable: whether a block has an identity path whose branch may be dropped; the others are left as
            they are (never dropped).

    Returns:
        The attached layers, in depth order.
    """
    layers = []
    for block, p in zip(blocks, survival_probs(len(blocks), drop_path_rate), strict=True):
        if droppable(block):
            block.drop_path = StochasticDepth(p, mode)
            layers.append(block.drop_path)
    return layers


def build_recipe_model(model_cls: type[nn.Module], variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Check the arguments, then build with timm's ``build_model_with_cfg``; explain pretrained failures.

    Until weights are published, or without a network, the Hub download fails deep inside timm with an HTTP or
    connection error; this turns it into a :class:`PretrainedWeightsError` naming the repository that was
    tried and how to load the weights from somewhere else.
    """
    check_model_args(**kwargs)
    if pretrained and not _has_weight_source(variant, kwargs):
        raise PretrainedWeightsError(
            f"{variant}: no pretrained weights exist for this model (timm lists no ImageNet-1k weights of its "
            f"architecture). Load weights from elsewhere with pretrained_cfg_overlay=dict(hf_hub_id='<org>/<repo>') "
            f"or file=..., 'hf-hub:<org>/<repo>' or 'local-dir:<folder>'; or pass pretrained=False."
        )
    waiting = bounded_network(f"{variant}: downloading the pretrained weights") if pretrained else nullcontext()
    with waiting:  # a silent or closed endpoint: a NetworkError naming it, within $TIMM_RECIPES_HUB_TIMEOUT seconds
        try:
            return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
        except (OSError, EntryNotFoundError) as err:
            if not pretrained or _is_network_failure(err):
                raise
            raise PretrainedWeightsError(_pretrained_error_message(variant, kwargs, err)) from err


def _is_network_failure(err: BaseException) -> bool:
    from timm_recipes.network import _network_cause

    return _network_cause(err) is not None


def _has_weight_source(variant: str, kwargs: dict[str, Any]) -> bool:
    from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(variant, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
    kind, _ = _resolve_pretrained_source(cfg.to_dict())
    return bool(kind)


def _pretrained_error_message(variant: str, kwargs: dict[str, Any], err: BaseException) -> str:
    try:  # the same resolution timm performs, repeated here only to name the source in the message
        from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg

        cfg = resolve_pretrained_cfg(variant, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
        kind, location = _resolve_pretrained_source(cfg.to_dict())
    except Exception:  # the message must never hide the original error
        kind, location = "", ""
    if kind == "hf-hub":
        repo = location[0] if isinstance(location, tuple) else location
        tried = f"from the Hugging Face Hub repository '{repo}'"
    elif kind:
        tried = f"from {kind} '{location}'"
    else:
        tried = "from its pretrained_cfg"
    return (
        f"{variant}: could not load pretrained weights {tried} ({type(err).__name__}: {err}). "
        f"The weights may not be published there yet, or the Hub may be unreachable. To load them from elsewhere "
        f"use timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='<org>/<repo>')), "
        f"timm.create_model('hf-hub:<org>/<repo>', pretrained=True) or "
        f"timm.create_model('local-dir:<folder>', pretrained=True); or pass pretrained=False for random weights."
    )

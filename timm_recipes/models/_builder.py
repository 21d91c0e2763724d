"""What the recipe model files share: argument checks, stochastic-depth wiring, and pretrained-weight errors.

Models are built by timm's own ``build_model_with_cfg`` (pretrained loading, ``features_only``,
``pretrained_cfg``); this module only adds what timm lacks for the recipe models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch.nn as nn
from huggingface_hub.errors import EntryNotFoundError
from timm.models import build_model_with_cfg

from timm_recipes.layers import StochasticDepth, check_rate, check_stochastic_depth_mode, survival_probs
from timm_recipes.network import bounded_network

__all__ = ["HUB_ORG", "PretrainedWeightsError", "attach_stochastic_depth", "build_recipe_model", "check_model_args"]

HUB_ORG = "timm-recipes"
"""Hugging Face Hub organisation of the published recipe weights (``hf_hub_id = HUB_ORG/<arch>.<tag>``)."""


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

"""Optimizers through timm's factory, with no weight decay on biases and normalisation parameters.

Weight decay is the lecture's l2 penalty (lambda / 2) ||theta||^2. For SGD it is *coupled*: the optimizer adds
lambda theta to the gradient, theta <- theta - lr (grad + lambda theta), which is (1 - lr lambda) theta - lr grad.
AdamW and LAMB *decouple* it (Loshchilov & Hutter, https://arxiv.org/abs/1711.05101): theta is shrunk by
(1 - lr lambda) apart from the adaptive gradient step. Which one applies is the optimizer's definition; this
module only chooses which parameters decay: by default none of the 1-D ones (biases and the weights of
BatchNorm / LayerNorm / GroupNorm), as in the torchvision and timm recipes (timm's ``param_groups_weight_decay``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_layer_decay, param_groups_weight_decay
from torch import nn

__all__ = ["OPTIMIZERS", "create_optimizer", "finetune_param_groups", "no_decay_parameter_names"]

#: The optimizers a recipe names (any other timm optimizer name works too): "sgd" is SGD with Nesterov
#: momentum, "momentum" classical momentum, "adamw" decoupled weight decay, "lamb" layer-wise adaptive.
OPTIMIZERS = ("sgd", "momentum", "adamw", "lamb")


def no_decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters that get no weight decay by default: 1-D ones and biases.

    The rule of timm's ``param_groups_weight_decay`` (``ndim <= 1`` or a name ending in ``.bias``), plus any
    names the model lists in ``no_weight_decay()``.
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.ndim <= 1 or name.endswith(".bias") or name in skip)
    ]


def finetune_param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    decay_norm_and_bias: bool = False,
    layer_decay: float | None = None,
    head_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Param groups with an ``lr_scale`` each: layer-wise lr decay and a head multiplier, for fine-tuning.

    Layer-wise decay (BEiT, https://arxiv.org/abs/2106.08254) is timm's ``param_groups_layer_decay``: the model's
    ``group_matcher`` blocks l = 0 … L (stem first, classifier last) get ``lr_scale = layer_decay ** (L - l)``.
    Then the classifier's parameters (``pretrained_cfg['classifier']``) get their scale multiplied by
    ``head_lr_scale``. The scheduler multiplies each group's scheduled lr by its ``lr_scale``
    (:class:`~timm_recipes.train.schedules.LRScheduler`, as timm's schedulers do).
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    if layer_decay is not None:
        groups = param_groups_layer_decay(
            model, weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay,
            weight_decay_exclude_1d=not decay_norm_and_bias,
        )  # fmt: skip
    elif decay_norm_and_bias or weight_decay == 0:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    else:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
    if head_lr_scale == 1.0:
        return [{**g, "lr_scale": g.get("lr_scale", 1.0)} for g in groups]
    head = str((getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "")
    if not head:
        raise ValueError(f"optim.head_lr_scale: {type(model).__name__} has no pretrained_cfg['classifier']")
    head_ids = {id(p) for name, p in model.named_parameters() if name.startswith(head + ".")}
    out = []
    for g in groups:
        scale = g.get("lr_scale", 1.0)
        body = [p for p in g["params"] if id(p) not in head_ids]
        top = [p for p in g["params"] if id(p) in head_ids]
        out += [{**g, "params": body, "lr_scale": scale}] if body else []
        out += [{**g, "params": top, "lr_scale": scale * head_lr_scale}] if top else []
    return out


def create_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    *,
    momentum: float = 0.9,
    decay_norm_and_bias: bool = False,
    layer_decay: float | None = None,
    head_lr_scale: float = 1.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Create an optimizer for ``model`` with timm's ``create_optimizer_v2``.

    With ``weight_decay > 0`` and ``decay_norm_and_bias=False`` the optimizer has two param groups: first the
    1-D parameters (biases, norm weights) with ``weight_decay=0``, then the rest with ``weight_decay``. Frozen
    parameters (``requires_grad=False``) are left out.

    Args:
        model: The model whose trainable parameters are optimized.
        name: A timm optimizer name: ``"sgd"`` (Nesterov momentum), ``"momentum"``, ``"adamw"``, ``"lamb"``, …
        lr: The learning rate (>= 0); a scheduler then takes it as lr_0.
        weight_decay: lambda (>= 0), coupled or decoupled as the optimizer defines it.
        momentum: Momentum of the SGD variants, in [0, 1).
        decay_norm_and_bias: Also decay biases and normalisation parameters.
        layer_decay: Layer-wise lr decay factor in (0, 1] (see :func:`finetune_param_groups`); ``None``: off.
        head_lr_scale: Multiplier (> 0) of the classifier's learning rate.
        **kwargs: Passed to the optimizer (e.g. ``betas``, ``eps``, ``foreach``).

    Raises:
        ValueError: For an unknown name or a value out of range (named in the message).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(name, str) or name.lower().split("_")[-1] not in list_optimizers():
        raise ValueError(f"name must be a timm optimizer name such as {OPTIMIZERS}, got {name!r}")
    for arg, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{arg} must be a float >= 0, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{arg} must be a finite float >= 0, got {value}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (every requires_grad is False)")
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1] or None, got {layer_decay}")
    if not head_lr_scale > 0 or not math.isfinite(head_lr_scale):
        raise ValueError(f"head_lr_scale must be a finite float > 0, got {head_lr_scale}")
    if layer_decay is not None or head_lr_scale != 1.0:
        groups = finetune_param_groups(
            model, float(weight_decay), decay_norm_and_bias=decay_norm_and_bias, layer_decay=layer_decay,
            head_lr_scale=head_lr_scale,
        )  # fmt: skip
        return create_optimizer_v2(
            model, opt=name.lower(), lr=float(lr), weight_decay=float(weight_decay), momentum=momentum,
            param_group_fn=lambda _: groups, **kwargs,
        )  # fmt: skip
    return create_optimizer_v2(
        model,
        opt=name.lower(),
        lr=float(lr),
        weight_decay=float(weight_decay),
        momentum=momentum,
        filter_bias_and_bn=not decay_norm_and_bias,
        **kwargs,
    )

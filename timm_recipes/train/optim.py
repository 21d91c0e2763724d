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
from timm.optim import create_optimizer_v2, list_optimizers
from torch import nn

__all__ = ["OPTIMIZERS", "create_optimizer", "no_decay_parameter_names"]

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


def create_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    *,
    momentum: float = 0.9,
    decay_norm_and_bias: bool = False,
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
    return create_optimizer_v2(
        model,
        opt=name.lower(),
        lr=float(lr),
        weight_decay=float(weight_decay),
        momentum=momentum,
        filter_bias_and_bn=not decay_norm_and_bias,
        **kwargs,
    )

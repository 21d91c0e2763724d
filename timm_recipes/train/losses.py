"""Classification losses: label smoothing, soft-target cross-entropy and KL divergence.

Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", https://arxiv.org/abs/1512.00567)
replaces the one-hot target by LS(y, eps): eps / C for every other class, 1 - eps (C - 1) / C for the true one.
With integer targets this is PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``. With Mixup/CutMix the
targets are already soft (and already smoothed by the mixer when asked), so the loss is the plain soft-target
cross-entropy H(p, q) = -sum_k p_k log q_k. The cross-entropy and the KL divergence differ by the entropy of
the targets, H(p, q) = H(p) + D_KL(p || q), a constant with respect to the model: same minimiser, same gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftTargetCrossEntropy", "create_loss", "kl_div_loss", "smoothed_targets", "soft_target_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_logits_and_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be N x C, got shape {tuple(logits.shape)}")
    if not targets.is_floating_point():
        raise TypeError(
            f"targets must be soft (float N x C probabilities), got dtype {targets.dtype}; integer class targets "
            "go to nn.CrossEntropyLoss (create_loss(label_smoothing, soft_targets=False))"
        )
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}")


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    # Half-precision logits are scored in float32; float32 and float64 keep their precision.
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.log_softmax(logits, dim=-1)


def smoothed_targets(
    targets: torch.Tensor, num_classes: int, smoothing: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The lecture's label-smoothing encoding LS(y, eps) of integer targets, as ``N x num_classes`` of ``dtype``.

    Every other class gets ``eps / C``, the true class ``1 - eps (C - 1) / C``.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    off = smoothing / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=dtype, device=targets.device)
    return out.scatter_(1, targets.long().view(-1, 1), 1.0 - smoothing * (num_classes - 1) / num_classes)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """H(p, q) = -sum_k p_k log softmax(logits)_k per sample, then reduced over the batch.

    Args:
        logits: Scores ``N x C``.
        targets: Probabilities ``N x C`` (rows summing to 1, e.g. Mixup/CutMix targets).
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (per sample).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    _check_logits_and_targets(logits, targets)
    loss = torch.sum(-targets * _log_probs(logits), dim=-1)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def kl_div_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """D_KL(p || q) between target probabilities p and the model's q = softmax(logits) (the lecture's order).

    PyTorch's ``F.kl_div`` with ``input = log q`` and ``target = p``; the default ``"batchmean"`` sums over
    classes and averages over the batch, the scale of :func:`soft_target_cross_entropy`'s ``"mean"``.
    """
    if reduction not in ("batchmean", "sum", "mean", "none"):
        raise ValueError(f"reduction must be one of ('batchmean', 'sum', 'mean', 'none'), got {reduction!r}")
    _check_logits_and_targets(logits, targets)
    return F.kl_div(_log_probs(logits), targets, reduction=reduction)


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against soft targets (Mixup/CutMix), smoothing already in the targets.

    Mixup: Zhang et al. https://arxiv.org/abs/1710.09412; CutMix: Yun et al. https://arxiv.org/abs/1905.04899.
    The loss applies no smoothing of its own, so label smoothing given to the mixer is applied exactly once.
    Same value as ``timm.loss.SoftTargetCrossEntropy``, with checks of shapes and dtypes and a ``reduction``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (``N x C``) against probabilities ``targets`` (``N x C``)."""
        return soft_target_cross_entropy(logits, targets, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def create_loss(label_smoothing: float = 0.0, soft_targets: bool = False) -> nn.Module:
    """The training loss of a recipe, applying label smoothing exactly once.

    Args:
        label_smoothing: eps in [0, 1). Without soft targets it goes to ``nn.CrossEntropyLoss``; with soft
            targets the mixer (``MixupCutmix(label_smoothing=eps)``) has already smoothed them, so the loss
            must not smooth again and this value is only checked.
        soft_targets: True when the batches carry ``N x C`` probabilities (Mixup/CutMix), False for integer
            class targets.

    Returns:
        ``SoftTargetCrossEntropy()`` for soft targets, else ``nn.CrossEntropyLoss(label_smoothing=eps)``.
    """
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(f"label_smoothing must be a float in [0, 1), got {label_smoothing!r}")
    if not (math.isfinite(label_smoothing) and 0.0 <= label_smoothing < 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if not isinstance(soft_targets, bool):
        raise TypeError(f"soft_targets must be a bool, got {soft_targets!r}")
    if soft_targets:
        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))

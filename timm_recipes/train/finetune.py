"""Fine-tuning controls the trainer applies epoch by epoch: a frozen-backbone warm-up and frozen BatchNorm statistics.

Frozen-backbone warm-up (the "linear probe, then fine-tune" schedule; Kumar et al., "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution", https://arxiv.org/abs/2202.10054): for the first N
epochs only the classifier trains. The backbone's parameters get ``requires_grad=False`` (the optimizer skips them:
no gradient, no momentum, no weight decay) and its BatchNorm layers normalise with their running statistics and do
not update them, so the backbone is bit-identical to the loaded weights when the warm-up ends.

Frozen BatchNorm statistics (``model.freeze_bn``): every BatchNorm normalises with its loaded running statistics for
the whole run (the usual choice with small batches or small data); its affine weight and bias still train.

Both work through a forward pre-hook that puts the BatchNorm in inference behaviour for that call, so the module
types and ``state_dict`` keys stay timm's (checkpoints, EMA and exports are unchanged).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["FineTuneControl", "head_parameter_names"]


def head_parameter_names(model: nn.Module) -> set[str]:
    """The classifier's parameter names (``pretrained_cfg['classifier']``: ``fc`` for a ResNet)."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not head:
        raise ValueError(f"{type(model).__name__} has no pretrained_cfg['classifier']: cannot tell its head")
    names = {name for name, _ in model.named_parameters() if name.startswith(f"{head}.")}
    if not names:
        raise ValueError(f"{type(model).__name__}: no parameters under its classifier {head!r}")
    return names


def _bn_eval_hook(module: nn.Module, _inputs: tuple) -> None:
    if getattr(module, "_timm_recipes_frozen", False):
        module.training = False  # this forward normalises with the running statistics and leaves them as they are


class FineTuneControl:
    """Frozen-backbone epochs and frozen BatchNorm statistics of one model.

    Args:
        model: The bare model (before DDP or compilation wrappers).
        freeze_backbone_epochs: Train only the classifier during epochs 1 … N.
        freeze_bn: Keep every BatchNorm's running statistics for the whole run.
    """

    def __init__(self, model: nn.Module, *, freeze_backbone_epochs: int = 0, freeze_bn: bool = False) -> None:
        if isinstance(freeze_backbone_epochs, bool) or freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be an integer >= 0, got {freeze_backbone_epochs!r}")
        self.model, self.epochs, self.freeze_bn = model, int(freeze_backbone_epochs), bool(freeze_bn)
        self.head = head_parameter_names(model) if self.epochs else set()
        self._trainable = {name: p.requires_grad for name, p in model.named_parameters()}
        self._norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self._hooks = [m.register_forward_pre_hook(_bn_eval_hook) for m in self._norms]
        self.frozen = False
        self._set_bn(self.freeze_bn)

    @property
    def active(self) -> bool:
        return self.epochs > 0 or self.freeze_bn

    def _set_bn(self, frozen: bool) -> None:
        for m in self._norms:
            m._timm_recipes_frozen = frozen

    def set_epoch(self, epoch: int) -> None:
        """Before training epoch ``epoch`` (1-based): backbone frozen while ``epoch <= freeze_backbone_epochs``."""
        frozen = epoch <= self.epochs
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._trainable[name] and (not frozen or name in self.head))
            if frozen and name not in self.head:
                p.grad = None
        self.frozen = frozen
        self._set_bn(frozen or self.freeze_bn)  # the classifier has no BatchNorm: every one is in the backbone

    def close(self) -> None:
        """Restore ``requires_grad`` and remove the hooks."""
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._trainable[name])
        for hook in self._hooks:
            hook.remove()
        self._set_bn(False)

"""Weight EMA (Polyak averaging) on top of timm's ``ModelEmaV3``, updated every k optimizer steps.

The lecture's rule, applied every ``k`` optimizer steps::

    θ_test ← (1 − ρ) θ + ρ θ_test

timm's ``ModelEmaV3`` does the arithmetic (one ``torch._foreach_lerp_`` over the whole state dict); this module adds
what the recipe needs around it: the every-k cadence counted in optimizer steps, torchvision's decay adjustment,
an fp32 copy under reduced precision, and a small state for checkpoints.

BatchNorm buffers: the running mean and variance are averaged with the same ρ as the weights (floating-point
buffers follow the formula above), integer buffers (``num_batches_tracked``) are copied. This is what timm's
``ModelEmaV3`` (``exclude_buffers=False``) and torchvision's ``ExponentialMovingAverage(use_buffers=True)`` both do,
so EMA weights trained here evaluate like theirs. The averaged statistics approximate the statistics of the
averaged network; recomputing them with a pass over the data (SWA's ``update_bn``) is not done.
"""

from __future__ import annotations

import math

import torch
from timm.utils import ModelEmaV3
from torch import nn

__all__ = ["WeightEma", "adjust_ema_decay"]


def adjust_ema_decay(decay: float, *, batch_size: int, epochs: int, every_k: int = 1, world_size: int = 1) -> float:
    """torchvision's decay adjustment: keep the EMA horizon independent of batch size, world size and k.

    From ``references/classification/train.py`` (after pycls): ``adjust = world_size * batch_size * every_k /
    epochs``, ``alpha = min(1, (1 − decay) · adjust)``, ``decay = 1 − alpha``. ``decay`` is the value in the recipe
    (torchvision's ``--model-ema-decay``, default 0.99998); the result is the ρ applied at each EMA update.

    Args:
        decay: Recipe decay in [0, 1].
        batch_size: Images per optimizer step on one process (the per-GPU batch times gradient accumulation).
        epochs: Total training epochs (>= 1).
        every_k: Optimizer steps between EMA updates (>= 1).
        world_size: Number of processes (>= 1).

    Returns:
        The adjusted per-update decay ρ in [0, 1].
    """
    if not 0.0 <= decay <= 1.0 or math.isnan(decay):
        raise ValueError(f"ema.decay must be in [0, 1], got {decay}")
    for name, value in (
        ("batch_size", batch_size),
        ("epochs", epochs),
        ("every_k", every_k),
        ("world_size", world_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    adjust = world_size * batch_size * every_k / epochs
    alpha = min(1.0, (1.0 - decay) * adjust)
    return 1.0 - alpha


class WeightEma:
    """Exponential moving average of a model's weights, updated every ``every_k`` optimizer steps.

    Polyak & Juditsky, "Acceleration of stochastic approximation by averaging", 1992
    (https://doi.org/10.1137/0330046); the every-k cadence and decay adjustment of torchvision's recipe
    (https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/).

    ``θ_test`` starts as a copy of the model and becomes ``(1 − ρ) θ + ρ θ_test`` at every optimizer step that is a
    multiple of ``every_k``. With ``warmup=True`` update number n (1, 2, …) uses timm's warm-up decay
    ``min(ρ, 1 − n^(−2/3))`` instead of ρ: the first update copies the model and the early ones forget the random
    initialisation quickly. The copy is held in float32 whatever the model's dtype.

    Args:
        model: The model to average (the bare module: not wrapped in DDP or ``torch.compile``).
        decay: ρ in [0, 1] applied at each update (already adjusted, see :func:`adjust_ema_decay`).
        every_k: Optimizer steps between updates (>= 1).
        warmup: Use timm's decay warm-up.
    """

    def __init__(self, model: nn.Module, *, decay: float, every_k: int = 1, warmup: bool = False) -> None:
        if not 0.0 <= decay <= 1.0 or math.isnan(decay):
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if isinstance(every_k, bool) or not isinstance(every_k, int) or every_k < 1:
            raise ValueError(f"every_k must be an integer >= 1, got {every_k!r}")
        self.every_k = every_k
        self.warmup = bool(warmup)
        self.num_updates = 0
        self._ema = ModelEmaV3(model, decay=decay, use_warmup=self.warmup, dtype=torch.float32, foreach=True)
        self._ema.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged model (in eval mode), ready to evaluate or save."""
        return self._ema.module

    @property
    def decay(self) -> float:
        """ρ of the recipe (the cap of the warm-up)."""
        return self._ema.decay

    def next_decay(self) -> float:
        """The ρ that the next update will use."""
        return self._ema.get_decay(self.num_updates + 1 if self.warmup else None)

    def step(self, model: nn.Module, optimizer_step: int) -> bool:
        """Call after every optimizer step (``optimizer_step`` counts from 1); updates on multiples of ``every_k``.

        Returns:
            Whether an update happened.
        """
        if optimizer_step % self.every_k:
            return False
        self.update(model)
        return True

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA update now: ``θ_test ← (1 − ρ) θ + ρ θ_test``."""
        self._ema.update(model, step=self.num_updates + 1 if self.warmup else None)
        self.num_updates += 1

    def state_dict(self) -> dict[str, int | float | bool]:
        """The counters (the averaged weights are saved separately, as safetensors)."""
        return {"num_updates": self.num_updates, "decay": self.decay, "every_k": self.every_k, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, int | float | bool], weights: dict[str, torch.Tensor]) -> None:
        """Restore the counters and the averaged weights (strict: every key must match)."""
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(weights, strict=True)

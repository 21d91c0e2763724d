"""Learning-rate schedules as pure functions of the step, and one scheduler stepped once per iteration.

Step decay (He et al., "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385),
cosine (Loshchilov & Hutter, "SGDR", https://arxiv.org/abs/1608.03983), linear, linear warm-up and one-cycle
(Smith & Topin, "Super-Convergence", https://arxiv.org/abs/1708.07120), with the lecture's formulas:

    cosine:    lr_e = lr_E + 1/2 (lr_0 - lr_E)(1 + cos(e pi / E))
    linear:    lr_e = lr_E + (lr_0 - lr_E)(1 - e / E)
    step:      lr_e = lr_0 * gamma ** floor(e / step_size)         (or one factor of gamma per milestone passed)
    one-cycle: lr_0 -> max_lr over the first p I iterations, then max_lr -> min_lr (the continuous form)
    warm-up:   lr_k = warmup_lr + (lr_0 - warmup_lr) k / W for k <= W, then the schedule over E - W steps

Every formula is a plain function of the step (as nanoGPT's ``get_lr(it)``), so the value at any step can be
computed without running the scheduler; :class:`LRScheduler` only writes those values into the optimizer.
It subclasses PyTorch's ``LRScheduler`` (``initial_lr`` in each param group, ``get_last_lr``, ``state_dict``),
but computes every value in closed form from ``initial_lr`` instead of chaining PyTorch's recursive
schedulers with ``SequentialLR``: PyTorch's warm-up (``LinearLR``) is a factor of lr_0 rather than an absolute
``warmup_lr``, and chained schedulers have no value-at-step function. The tests check each schedule against
PyTorch's ``StepLR``, ``MultiStepLR``, ``CosineAnnealingLR``, ``LinearLR``, ``OneCycleLR`` and timm's
``CosineLRScheduler``, step by step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler as _TorchLRScheduler

__all__ = [
    "SCHEDULES",
    "LRScheduler",
    "constant_lr",
    "cosine_lr",
    "create_scheduler",
    "linear_lr",
    "multistep_lr",
    "one_cycle_lr",
    "step_lr",
    "warmup_lr_at",
]

SCHEDULES = ("step", "cosine", "linear", "one_cycle", "constant")
CYCLE_SHAPES = ("linear", "cosine")


# ----------------------------------------------------------------------------------------------------------------
# Pure formulas. ``step`` counts from 0 (before the first update) to ``total`` (after the last one).
# ----------------------------------------------------------------------------------------------------------------


def warmup_lr_at(step: int, warmup_steps: int, warmup_lr: float, lr0: float) -> float:
    """Linear warm-up: ``warmup_lr`` at step 0, rising to ``lr0`` at step ``warmup_steps``."""
    return warmup_lr + (lr0 - warmup_lr) * step / warmup_steps


def constant_lr(step: int, total: int, lr0: float) -> float:
    """The constant schedule: ``lr0`` at every step."""
    return lr0


def step_lr(step: int, lr0: float, step_size: int, gamma: float) -> float:
    """Step decay: ``lr0 * gamma ** floor(step / step_size)`` (PyTorch's ``StepLR``)."""
    return lr0 * gamma ** (step // step_size)


def multistep_lr(step: int, lr0: float, milestones: Sequence[int], gamma: float) -> float:
    """Multi-step decay: one factor ``gamma`` for each milestone ``<= step`` (PyTorch's ``MultiStepLR``)."""
    return lr0 * gamma ** sum(1 for m in milestones if step >= m)


def cosine_lr(step: int, total: int, lr0: float, min_lr: float) -> float:
    """Cosine decay: ``min_lr + 1/2 (lr0 - min_lr)(1 + cos(step pi / total))``."""
    return min_lr + 0.5 * (lr0 - min_lr) * (1.0 + math.cos(math.pi * step / total))


def linear_lr(step: int, total: int, lr0: float, min_lr: float) -> float:
    """Linear decay: ``min_lr + (lr0 - min_lr)(1 - step / total)``."""
    return min_lr + (lr0 - min_lr) * (1.0 - step / total)


def _anneal(start: float, end: float, frac: float, shape: str) -> float:
    if shape == "cosine":
        return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * frac))
    return start + (end - start) * frac


def one_cycle_lr(
    step: int,
    total: int,
    lr0: float,
    max_lr: float,
    min_lr: float,
    pct_start: float = 0.3,
    shape: str = "linear",
) -> float:
    """One-cycle: from ``lr0`` up to ``max_lr`` over ``pct_start * total`` steps, then down to ``min_lr``.

    This is the lecture's two-phase formula with a continuous second phase (it starts at ``max_lr``, where
    the first phase ends, as PyTorch's ``OneCycleLR`` does). ``shape`` picks linear or cosine segments.
    """
    peak = pct_start * total
    if step < peak:
        return _anneal(lr0, max_lr, step / peak, shape)
    return _anneal(max_lr, min_lr, (step - peak) / (total - peak), shape)


# ----------------------------------------------------------------------------------------------------------------
# The scheduler.
# ----------------------------------------------------------------------------------------------------------------


class LRScheduler(_TorchLRScheduler):
    """A learning-rate schedule with optional linear warm-up, stepped once per iteration.

    Schedules as in the lecture: step (He et al. https://arxiv.org/abs/1512.03385), cosine (Loshchilov &
    Hutter, https://arxiv.org/abs/1608.03983), linear, one-cycle (Smith & Topin,
    https://arxiv.org/abs/1708.07120) and constant.

    After ``k`` calls of :meth:`step`, every param group's ``lr`` equals :meth:`lr_at` ``(k)``, computed in
    closed form from the group's ``initial_lr`` (lr_0: its ``lr`` when the scheduler was created, stored
    as ``initial_lr`` as PyTorch does). Steps past ``total_steps`` keep the final value. For epoch-wise
    use, pass the number of epochs as ``total_steps`` and call :meth:`step` once per epoch.

    Build it with :func:`create_scheduler`, which validates the arguments.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        name: str,
        total_steps: int,
        warmup_steps: int,
        *,
        warmup_lr: float,
        min_lr: float,
        step_size: int,
        gamma: float,
        milestones: tuple[int, ...],
        pct_start: float,
        max_lrs: tuple[float, ...],
        cycle_shape: str,
    ) -> None:
        self.name = name
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.warmup_lr = warmup_lr
        self.min_lr = min_lr
        self.step_size = step_size
        self.gamma = gamma
        self.milestones = milestones
        self.pct_start = pct_start
        self.max_lrs = max_lrs
        self.cycle_shape = cycle_shape
        # timm's param_groups_layer_decay (layer-wise lr decay) stores a per-group factor that only timm's own
        # schedulers apply; this one applies it too: lr = schedule(step, lr_0) * lr_scale.
        self.lr_scales = tuple(float(group.get("lr_scale", 1.0)) for group in optimizer.param_groups)
        super().__init__(optimizer)

    def _lr(self, step: int, lr0: float, group_index: int) -> float:
        """The schedule's value at ``step`` for a group whose initial lr is ``lr0``."""
        step = min(step, self.total_steps)
        if step < self.warmup_steps:
            return warmup_lr_at(step, self.warmup_steps, self.warmup_lr, lr0)
        e, total = step - self.warmup_steps, self.total_steps - self.warmup_steps
        if self.name == "cosine":
            return cosine_lr(e, total, lr0, self.min_lr)
        if self.name == "linear":
            return linear_lr(e, total, lr0, self.min_lr)
        if self.name == "step":
            if self.milestones:
                return multistep_lr(e, lr0, self.milestones, self.gamma)
            return step_lr(e, lr0, self.step_size, self.gamma)
        if self.name == "one_cycle":
            max_lr = self.max_lrs[group_index]
            return one_cycle_lr(e, total, lr0, max_lr, self.min_lr, self.pct_start, self.cycle_shape)
        return constant_lr(e, total, lr0)

    def lr_at(self, step: int) -> list[float]:
        """The learning rate of every param group after ``step`` calls of :meth:`step` (a pure function).

        A group with an ``lr_scale`` (timm's layer-wise decay, a head multiplier) gets the schedule's value times
        that factor, warm-up included, as timm's schedulers apply it.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        scales = getattr(self, "lr_scales", None) or (1.0,) * len(self.base_lrs)
        return [self._lr(step, float(lr0), i) * scales[i] for i, lr0 in enumerate(self.base_lrs)]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """PyTorch's hook: the values for the current ``last_epoch`` (the number of ``step()`` calls)."""
        return self.lr_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's settings and position; restore with :meth:`load_state_dict` to resume."""
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position (and settings) saved by :meth:`state_dict`; the next step continues there."""
        if state_dict.get("name") not in SCHEDULES:
            raise ValueError(f"state_dict is not an LRScheduler state (name={state_dict.get('name')!r})")
        super().load_state_dict(state_dict)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, total_steps={self.total_steps}, "
            f"warmup_steps={self.warmup_steps}, step={self.last_epoch})"
        )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def _check_lr(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


def create_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    warmup_lr: float = 0.0,
    min_lr: float = 0.0,
    step_size: int | None = None,
    gamma: float = 0.1,
    milestones: Sequence[int] | None = None,
    pct_start: float = 0.3,
    max_lr: float | Sequence[float] | None = None,
    cycle_shape: str = "linear",
) -> LRScheduler:
    """Create a learning-rate scheduler stepped once per iteration.

    lr_0 is each param group's current ``lr`` (or its ``initial_lr`` if a scheduler was attached before).
    With ``warmup_steps`` W > 0 the lr rises linearly from ``warmup_lr`` to lr_0 over W steps, and the
    schedule then runs over the remaining ``total_steps - W`` steps, counted from the end of warm-up.

    Args:
        name: ``"step"``, ``"cosine"``, ``"linear"``, ``"one_cycle"`` or ``"constant"``.
        optimizer: The optimizer whose param groups' ``lr`` the scheduler writes.
        total_steps: E, the number of optimizer steps of the whole run, warm-up included (> ``warmup_steps``).
        warmup_steps: W, the length of the linear warm-up (0: none).
        warmup_lr: The absolute learning rate at step 0 of the warm-up (the same for every group).
        min_lr: lr_E, the final learning rate of ``"cosine"``, ``"linear"`` and ``"one_cycle"`` (not used by
            ``"step"`` and ``"constant"``); must not exceed any group's lr_0.
        step_size: ``"step"``: multiply by ``gamma`` every ``step_size`` steps after warm-up. Default: a
            third of them (the 30/60-of-90-epochs ResNet convention).
        gamma: ``"step"``: the factor (default 0.1, the lecture's "divide by 10"), > 0.
        milestones: ``"step"``: strictly increasing steps after warm-up where the lr is multiplied by
            ``gamma`` (PyTorch's ``MultiStepLR``); overrides ``step_size``.
        pct_start: ``"one_cycle"``: the fraction p of the post-warm-up steps spent rising, in (0, 1).
        max_lr: ``"one_cycle"``: the peak, one float for every group or one per group; >= each lr_0.
        cycle_shape: ``"one_cycle"``: ``"linear"`` (the lecture's) or ``"cosine"`` segments.

    Returns:
        The scheduler; the optimizer's lrs are already set to the values at step 0.

    Raises:
        ValueError: For an unknown name or an argument out of its range (the message names it).
        TypeError: For an argument of the wrong type.
    """
    if name not in SCHEDULES:
        raise ValueError(f"name must be one of {SCHEDULES}, got {name!r}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    total_steps = _check_int("total_steps", total_steps, 1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must be > warmup_steps (the schedule needs steps after warm-up), "
            f"got total_steps={total_steps}, warmup_steps={warmup_steps}"
        )
    warmup_lr = _check_lr("warmup_lr", warmup_lr)
    min_lr = _check_lr("min_lr", min_lr)
    lr0s = [
        _check_lr(f"optimizer.param_groups[{i}]['lr']", group.get("initial_lr", group["lr"]))
        for i, group in enumerate(optimizer.param_groups)
    ]
    if name in ("cosine", "linear", "one_cycle"):
        for i, lr0 in enumerate(lr0s):
            if min_lr > lr0:
                raise ValueError(
                    f"min_lr must be <= the initial lr of every param group, got {min_lr} > {lr0} (group {i})"
                )
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0 or not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite float > 0, got {gamma!r}")
    decay_steps = total_steps - warmup_steps
    if step_size is None:
        step_size = max(1, decay_steps // 3)
    step_size = _check_int("step_size", step_size, 1)
    milestone_tuple: tuple[int, ...] = ()
    if milestones is not None:
        milestone_tuple = tuple(_check_int("milestones", m, 1) for m in milestones)
        if any(b <= a for a, b in itertools.pairwise(milestone_tuple)):
            raise ValueError(f"milestones must be strictly increasing, got {list(milestone_tuple)}")
    if isinstance(pct_start, bool) or not isinstance(pct_start, (int, float)) or not 0.0 < pct_start < 1.0:
        raise ValueError(f"pct_start must be in the open interval (0, 1), got {pct_start!r}")
    if cycle_shape not in CYCLE_SHAPES:
        raise ValueError(f"cycle_shape must be one of {CYCLE_SHAPES}, got {cycle_shape!r}")
    max_lrs: tuple[float, ...] = ()
    if name == "one_cycle":
        if max_lr is None:
            raise ValueError("max_lr is required by the 'one_cycle' schedule (the peak learning rate)")
        if isinstance(max_lr, Sequence):
            if len(max_lr) != len(lr0s):
                raise ValueError(f"max_lr must have one value per param group ({len(lr0s)}), got {len(max_lr)}")
            max_lrs = tuple(_check_lr(f"max_lr[{i}]", v) for i, v in enumerate(max_lr))
        else:
            max_lrs = (_check_lr("max_lr", max_lr),) * len(lr0s)
        for i, (peak, lr0) in enumerate(zip(max_lrs, lr0s)):
            if peak < lr0:
                raise ValueError(
                    f"max_lr must be >= the initial lr of every param group, got {peak} < {lr0} (group {i})"
                )
    return LRScheduler(
        optimizer,
        name,
        total_steps,
        warmup_steps,
        warmup_lr=warmup_lr,
        min_lr=min_lr,
        step_size=step_size,
        gamma=float(gamma),
        milestones=milestone_tuple,
        pct_start=float(pct_start),
        max_lrs=max_lrs,
        cycle_shape=cycle_shape,
    )

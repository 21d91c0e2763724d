"""Schedules as pictures: a recipe's learning rate (and momentum) at every optimizer step, as the trainer sets them.

:func:`schedule_trace` builds the recipe's optimizer on a stand-in parameter and its scheduler with the trainer's
own builder (:func:`~timm_recipes.train.builders.create_schedule`), steps it through the whole run and records
what the optimizer holds after each step: the values are the trainer's, not a re-derivation of the formulas.
:func:`lecture_schedules` gives the lecture's five schedules (step, cosine, linear, warm-up, one-cycle) as variants
of one recipe, and :func:`plot_schedules` draws any list of traces, one panel each.

Momentum is read from the optimizer too (``momentum``, or ``betas[0]`` for Adam-type optimizers) and drawn where it
changes. This package's one-cycle schedule cycles the learning rate only: its momentum stays at
``optim.momentum`` (PyTorch's ``OneCycleLR`` would also cycle momentum 0.95 -> 0.85 -> 0.95), and the picture shows
exactly that.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from timm_recipes.config import Recipe, apply_overrides

__all__ = ["lecture_schedules", "plot_schedules", "schedule_trace"]


def _momentum(group: dict[str, Any]) -> float | None:
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def schedule_trace(recipe: Recipe, steps_per_epoch: int) -> dict[str, list[float]]:
    """Learning rate and momentum of the first parameter group at steps ``0 .. epochs × steps_per_epoch``.

    Raises:
        ValueError: ``steps_per_epoch`` < 1, or a schedule the recipe cannot build (the builder's message).
    """
    from timm_recipes.train.builders import create_schedule
    from timm_recipes.train.optim import create_optimizer

    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    opt = recipe.optim
    lr = opt.lr * recipe.data.batch_size / opt.lr_base_batch if opt.lr_base_batch else opt.lr
    stand_in = torch.nn.Linear(1, 1)
    optimizer = create_optimizer(stand_in, opt.name, lr, opt.weight_decay, momentum=opt.momentum)
    scheduler = create_schedule(recipe, optimizer, steps_per_epoch, lr)
    total = recipe.schedule.epochs * steps_per_epoch
    steps, lrs, moms = [], [], []
    for step in range(total + 1):
        group = optimizer.param_groups[0]
        steps.append(float(step))
        lrs.append(float(group["lr"]))
        m = _momentum(group)
        moms.append(float("nan") if m is None else m)
        if step < total:
            optimizer.step()  # no gradients: the stand-in weight does not move, the schedule does
            scheduler.step()
    return {"step": steps, "lr": lrs, "momentum": moms, "steps_per_epoch": [float(steps_per_epoch)]}


def lecture_schedules(recipe: Recipe) -> list[tuple[str, Recipe]]:
    """The lecture's five schedules as variants of ``recipe``: step, cosine, linear, warm-up + cosine, one-cycle."""
    e = recipe.schedule.epochs
    third = max(1, e // 3)
    plain = {"schedule.warmup_epochs": 0, "schedule.min_lr": 0.0}
    return [
        ("step (x0.1 at 1/3, 2/3)", apply_overrides(recipe, {**plain, "schedule.name": "step",
                                                             "schedule.milestones_epochs": [third, 2 * third]})),
        ("cosine", apply_overrides(recipe, {**plain, "schedule.name": "cosine"})),
        ("linear", apply_overrides(recipe, {**plain, "schedule.name": "linear"})),
        ("warm-up + cosine", apply_overrides(recipe, {"schedule.name": "cosine",
                                                      "schedule.warmup_epochs": max(1.0, e / 10)})),
        ("one-cycle (p = 0.3)", apply_overrides(recipe, {**plain, "schedule.name": "one_cycle",
                                                         "schedule.max_lr": recipe.optim.lr * 10,
                                                         "schedule.pct_start": 0.3})),
    ]  # fmt: skip


def plot_schedules(traces: Sequence[tuple[str, dict[str, list[float]]]], path: str | os.PathLike[str]) -> Path:
    """One panel per trace: lr against the optimizer step (epochs on the top axis), momentum where it varies."""
    from matplotlib.figure import Figure

    from timm_recipes.train.checkpoint import atomic_write_bytes

    if not traces:
        raise ValueError("traces: give at least one (label, trace)")
    fig = Figure(figsize=(3.3 * len(traces), 3.2), dpi=110)
    axes = fig.subplots(1, len(traces), squeeze=False)[0]
    for ax, (label, tr) in zip(axes, traces):
        ax.plot(tr["step"], tr["lr"], color="tab:blue", linewidth=1.5)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("learning rate", fontsize=8, color="tab:blue")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        moms = [m for m in tr["momentum"] if m == m]
        if moms:
            twin = ax.twinx()
            twin.plot(tr["step"], tr["momentum"], color="tab:orange", linewidth=1, linestyle="--")
            lo, hi = min(moms), max(moms)
            pad = 0.05 if hi - lo < 1e-9 else 0.1 * (hi - lo)
            twin.set_ylim(lo - pad, hi + pad)
            twin.set_ylabel("momentum" + (" (constant)" if hi - lo < 1e-9 else ""), fontsize=8, color="tab:orange")
            twin.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(Path(path), buf.getvalue())

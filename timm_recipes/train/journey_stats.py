"""The statistics of a recipe journey: pure functions of the per-seed test accuracies, nothing else.

A journey step is trained at several seeds; the same seed at two consecutive steps shares its initial weights and
data order, so the gain of a step is measured *paired by seed* (Student's paired design): for every seed ``s``
present at both steps, ``gain_s = acc_step[s] - acc_prev[s]``; the step's gain is the mean of those differences
and its spread their sample standard deviation (``n - 1`` in the denominator). The cumulative gain of a step is
the same paired difference against the first step (the baseline). With one seed there is no spread: ``std`` is
``None``, never 0.

The paired spread is usually much smaller than the spread of the accuracies themselves: what changes between
seeds (a lucky initialisation, an easy data order) cancels in the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["StepStats", "journey_statistics", "mean_std", "paired_differences"]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``n - 1``; ``None`` for a single value).

    Raises:
        ValueError: no values, or a value that is not a finite number.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: need at least one number")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"values must be finite numbers, got {vals}")
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def paired_differences(current: Mapping[Any, float], previous: Mapping[Any, float]) -> dict[Any, float]:
    """``current[s] - previous[s]`` for every seed ``s`` of ``current``.

    Raises:
        ValueError: a seed of ``current`` has no value in ``previous`` (a pairing must never be guessed).
    """
    missing = [s for s in current if s not in previous]
    if missing:
        raise ValueError(f"seeds {missing} have no result at the step they are compared with (paired gains)")
    return {s: float(current[s]) - float(previous[s]) for s in current}


@dataclass(frozen=True)
class StepStats:
    """One row of the journey table.

    Attributes:
        name: The step's name.
        kind: ``"train"``, ``"fixres"`` or ``"ensemble"``.
        n: Number of seeds (1 for an ensemble: one model made of all the seeds).
        mean: Mean test top-1 (percent).
        std: Its sample standard deviation over the seeds (``None`` with one value).
        compared_to: The step this one's gain is measured against (``None`` for the baseline).
        gain: Mean paired gain over ``compared_to`` (for an ensemble: over the mean of its members).
        gain_std: Sample standard deviation of the paired gains.
        cumulative: Mean paired gain over the baseline.
        cumulative_std: Sample standard deviation of those gains.
        per_seed: The accuracies by seed (``{"ensemble": x}`` for an ensemble).
    """

    name: str
    kind: str
    n: int
    mean: float
    std: float | None
    compared_to: str | None
    gain: float | None
    gain_std: float | None
    cumulative: float | None
    cumulative_std: float | None
    per_seed: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def journey_statistics(
    steps: Sequence[tuple[str, str, Mapping[Any, float]]], compared_to: Sequence[int | None] | None = None
) -> list[StepStats]:
    """The journey table from ``(name, kind, {seed: top-1})`` per step, in order.

    Args:
        steps: The steps; the first is the baseline. An ``"ensemble"`` step holds one value (any key).
        compared_to: For each step, the index of the step its gain is measured against (default: the previous
            one; ``None`` for the baseline). An ensemble's gain is its accuracy minus the mean of the step it
            ensembles, and its cumulative gain is measured against the baseline's mean (there is no seed to pair).

    Raises:
        ValueError: no steps, a reference to a later step, or seeds that cannot be paired.
    """
    if not steps:
        raise ValueError("steps: need at least one step")
    refs = list(compared_to) if compared_to is not None else [None, *range(len(steps) - 1)]
    if len(refs) != len(steps):
        raise ValueError(f"compared_to has {len(refs)} entries for {len(steps)} steps")
    base = steps[0][2]
    rows: list[StepStats] = []
    for i, ((name, kind, scores), ref) in enumerate(zip(steps, refs)):
        if not scores:
            raise ValueError(f"step {name!r} has no result")
        if ref is not None and not 0 <= ref < i:
            raise ValueError(f"step {name!r}: compared_to={ref} must name an earlier step (0..{i - 1})")
        mean, std = mean_std(list(scores.values()))
        gain = gain_std = cum = cum_std = None
        if kind == "ensemble":
            if ref is not None:
                gain = mean - mean_std(list(steps[ref][2].values()))[0]
            cum = mean - mean_std(list(base.values()))[0]
        else:
            if ref is not None:
                gain, gain_std = mean_std(list(paired_differences(scores, steps[ref][2]).values()))
            if i > 0:
                cum, cum_std = mean_std(list(paired_differences(scores, base).values()))
        rows.append(
            StepStats(
                name=name,
                kind=kind,
                n=len(scores),
                mean=mean,
                std=std,
                compared_to=steps[ref][0] if ref is not None else None,
                gain=gain,
                gain_std=gain_std,
                cumulative=cum,
                cumulative_std=cum_std,
                per_seed={str(k): float(v) for k, v in scores.items()},
            )
        )
    return rows

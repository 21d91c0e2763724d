"""The journey's report: a Markdown table, JSON, CSV and the staircase picture in the torchvision blog's style.

The picture is a waterfall: one bar per step from the previous step's mean to its own (green when the step helps,
red when it hurts), labelled with the mean paired gain, with the step's spread over the seeds as an error bar on
its level. It reads like the blog's "Cumulative Accuracy Improvements for ResNet50", with the spread the blog does
not show.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from timm_recipes.train.journey_stats import StepStats

__all__ = ["format_table", "plot_staircase", "write_report"]

_COLUMNS = (
    "step", "kind", "seeds", "test_top1_mean", "test_top1_std", "compared_to", "gain", "gain_std", "cumulative",
    "cumulative_std", "median_run_s",
)  # fmt: skip


def _pm(mean: float | None, std: float | None, signed: bool = False) -> str:
    if mean is None:
        return "—"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + (f" ± {std:.2f}" if std is not None else "")


def _median(values: Sequence[float]) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _run_times(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for r in runs:
        if r.get("seconds") is not None:
            times.setdefault(str(r["step"]), []).append(float(r["seconds"]))
    return times


def format_table(rows: Sequence[StepStats], runs: Sequence[Mapping[str, Any]] = ()) -> str:
    """The journey as a Markdown table (mean ± std over seeds, paired gain, cumulative gain, median run time)."""
    times = _run_times(runs)
    lines = [
        "| step | seeds | test top-1 (%) | gain (paired) | over | cumulative gain | median run (s) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        t = _median(times.get(r.name.split(": ")[0], []))
        lines.append(
            f"| {r.name} | {r.n} | {_pm(r.mean, r.std)} | {_pm(r.gain, r.gain_std, True)} | {r.compared_to or '—'} "
            f"| {_pm(r.cumulative, r.cumulative_std, True)} | {f'{t:.0f}' if t is not None else '—'} |"
        )
    return "\n".join(lines)


def plot_staircase(rows: Sequence[StepStats], path: str | Path, *, title: str = "") -> Path:
    """The cumulative staircase (waterfall) with error bars, as a PNG written atomically."""
    from matplotlib.figure import Figure

    from timm_recipes.train.checkpoint import atomic_write_bytes

    fig = Figure(figsize=(max(7.0, 0.9 * len(rows) + 2), 4.8), dpi=110)
    ax = fig.subplots()
    base = rows[0].mean
    levels = [r.mean for r in rows]
    lo = min(r.mean - (r.std or 0.0) for r in rows)
    hi = max(r.mean + (r.std or 0.0) for r in rows)
    bottom, top = lo - 0.15 * (hi - lo + 1e-9) - 0.5, hi + 0.15 * (hi - lo + 1e-9) + 0.5
    for i, r in enumerate(rows):
        ref = next((j for j, q in enumerate(rows) if q.name == r.compared_to), None)
        start = levels[ref] if ref is not None else bottom  # the baseline rises from the axis
        height = r.mean - start
        color = "#4c72b0" if ref is None else ("#55a868" if height >= 0 else "#c44e52")
        ax.bar(i, height, bottom=start, color=color, width=0.7, edgecolor="black", linewidth=0.5)
        if r.std is not None:
            ax.errorbar(i, r.mean, yerr=r.std, color="black", capsize=4, linewidth=1)
        label = f"{r.mean:.2f}" if ref is None else f"{r.gain:+.2f}"
        ax.annotate(label, (i, r.mean + (r.std or 0.0)), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")  # fmt: skip
    ax.axhline(base, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r.name for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test top-1 (%), mean ± std over seeds")
    ax.set_title(title or "cumulative accuracy improvements", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(bottom, top)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(Path(path), buf.getvalue())


def write_report(
    rows: Sequence[StepStats], runs: Sequence[Mapping[str, Any]], journey: Any, out: Path, *, wall_time_s: float
) -> dict[str, Path]:
    """Write ``journey.json``, ``journey.csv``, ``journey.md`` and ``journey.png`` into ``out``."""
    from timm_recipes.train.checkpoint import atomic_write_bytes
    from timm_recipes.train.journey import journey_to_dict

    times = _run_times(runs)
    seeds = list(journey.seeds)
    trained = [float(r["seconds"]) for r in runs if r.get("kind") == "train" and r.get("seconds") is not None]
    payload = {
        "journey": journey_to_dict(journey),
        "rows": [r.as_dict() for r in rows],
        "runs": [{k: v for k, v in r.items() if k not in ("final", "table", "members")} for r in runs],
        "seconds": {
            "this_call": wall_time_s,
            "all_runs": sum(float(r.get("seconds") or 0.0) for r in runs),
            "median_training_run": _median(trained),
        },
    }
    files = {
        "json": out / "journey.json",
        "csv": out / "journey.csv",
        "md": out / "journey.md",
        "png": out / "journey.png",
    }
    atomic_write_bytes(files["json"], (json.dumps(payload, indent=1, default=str) + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*_COLUMNS, *[f"seed{s}" for s in seeds]])
    for r in rows:
        t = _median(times.get(r.name.split(": ")[0], []))
        writer.writerow(
            [r.name, r.kind, r.n, r.mean, r.std, r.compared_to, r.gain, r.gain_std, r.cumulative, r.cumulative_std, t]
            + [r.per_seed.get(str(s), "") for s in seeds]
        )
    atomic_write_bytes(files["csv"], buf.getvalue().encode())
    all_s = payload["seconds"]["all_runs"]
    md = (
        f"# Journey `{journey.name}` (seeds {seeds})\n\n{format_table(rows, runs)}\n\n"
        f"Gains are paired by seed (mean ± sample std of the per-seed differences); the cumulative gain is paired "
        f"against the baseline. Sum of the run times: {all_s / 60:.1f} min.\n"
    )
    atomic_write_bytes(files["md"], md.encode())
    plot_staircase(rows, files["png"], title=f"journey {journey.name}: test top-1, {len(seeds)} seed(s)")
    return files

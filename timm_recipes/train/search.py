"""Random hyper-parameter search over learning rate and weight decay.

Random search (Bergstra & Bengio 2012, https://jmlr.org/papers/v13/bergstra12a.html), as the lecture puts it:
sample ``lr`` from ``10^U[-5, -2]`` and ``wd`` from ``10^U[-5, -2]``, train a model for each sample, keep the best.
It explores each axis with N distinct values where an N-point grid only tries sqrt(N).

The search is:

- seeded: trial ``i`` draws from its own generator seeded by ``(seed, i)``, so the same seed gives the same
  samples and trial ``i``'s sample does not depend on how many trials are asked for;
- resumable: each finished trial is recorded at once (``trials.jsonl`` and ``trials.csv``, rewritten atomically),
  and a rerun with the same settings skips the trials already recorded;
- decoupled from training: ``trial_fn(recipe) -> metric`` runs one trial (default: :func:`timm_recipes.train.fit`
  and its best validation metric), so the search logic is testable with any cheap function.

Outputs in ``out_dir``: ``trials.csv``, ``trials.md``, ``search.png`` (lr vs wd on log axes, coloured by the
metric), ``best_recipe.yaml`` (the base recipe with the best lr and wd), ``search.json`` (the settings).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from timm_recipes._files import apply_umask, check_writable
from timm_recipes.config import Recipe, apply_overrides, recipe_to_dict, save_recipe

__all__ = ["SearchResult", "Trial", "run_search", "sample_trial", "trial_recipe"]

LECTURE_RANGE = (-5.0, -2.0)  # 10^U[-5, -2]
_FIELDS = ("trial", "lr", "weight_decay", "log10_lr", "log10_wd", "metric", "seconds")


@dataclass(frozen=True)
class Trial:
    """One finished trial. ``metric`` is the validation metric (higher is better; NaN when it diverged)."""

    index: int
    lr: float
    weight_decay: float
    metric: float
    seconds: float

    def row(self) -> dict[str, Any]:
        return {
            "trial": self.index,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "log10_lr": math.log10(self.lr),
            "log10_wd": math.log10(self.weight_decay),
            "metric": self.metric,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class SearchResult:
    """The finished trials (by index), the best one, the recipe it gives, and the files written."""

    trials: tuple[Trial, ...]
    best: Trial
    best_recipe: Recipe
    out_dir: Path
    csv_path: Path
    markdown_path: Path
    plot_path: Path
    best_recipe_path: Path


# ------------------------------------------------------------------------------------------------ sampling
def _check_range(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{name}: expected (low, high) exponents of 10, got {value!r}")
    low, high = value
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in (low, high)):
        raise ValueError(f"{name}: expected two finite numbers, got {value!r}")
    if not low < high:
        what = "empty" if low == high else "inverted"
        raise ValueError(f"{name}: the range is {what}; expected low < high, got ({low}, {high})")
    return float(low), float(high)


def sample_trial(
    index: int,
    *,
    seed: int = 0,
    lr_range: tuple[float, float] = LECTURE_RANGE,
    wd_range: tuple[float, float] = LECTURE_RANGE,
) -> tuple[float, float]:
    """The ``(lr, weight_decay)`` of trial ``index``: ``10^U[lr_range]`` and ``10^U[wd_range]``.

    All randomness of the search is here: one generator per trial, seeded by ``(seed, index)``.
    """
    lr_lo, lr_hi = _check_range("lr_range", lr_range)
    wd_lo, wd_hi = _check_range("wd_range", wd_range)
    u_lr, u_wd = np.random.default_rng([seed, index]).random(2)
    return 10.0 ** (lr_lo + (lr_hi - lr_lo) * u_lr), 10.0 ** (wd_lo + (wd_hi - wd_lo) * u_wd)


def trial_recipe(base: Recipe, index: int, lr: float, weight_decay: float, out_dir: Path, epochs: int | None) -> Recipe:
    """The recipe of one trial: ``base`` with the sampled ``optim.lr`` and ``optim.weight_decay``.

    With ``epochs`` the trial is shortened and its warm-up scaled by the same factor, keeping the schedule's shape.
    """
    changes: dict[str, Any] = {
        "name": f"{base.name}-trial{index:03d}",
        "optim.lr": lr,
        "optim.weight_decay": weight_decay,
        "run.output_dir": str(out_dir / "trials" / f"trial_{index:03d}"),
    }
    if epochs is not None and epochs != base.schedule.epochs:
        changes["schedule.epochs"] = epochs
        changes["schedule.warmup_epochs"] = base.schedule.warmup_epochs * epochs / base.schedule.epochs
    return apply_overrides(base, changes)


def _fit_metric(recipe: Recipe) -> float:
    """The default trial: train with :func:`timm_recipes.train.fit` and return its best validation metric."""
    from timm_recipes.train.trainer import fit  # imported here: the trainer pulls in the whole training stack

    best = fit(recipe).best_metric
    return float("nan") if best is None else float(best)


# ------------------------------------------------------------------------------------------------ files
def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_trials(path: Path) -> dict[int, Trial]:
    trials: dict[int, Trial] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                trials[int(row["trial"])] = Trial(
                    int(row["trial"]), float(row["lr"]), float(row["weight_decay"]), float(row["metric"]),
                    float(row["seconds"]),
                )  # fmt: skip
    return trials


def _write_tables(out_dir: Path, trials: dict[int, Trial], metric_name: str) -> None:
    ordered = [trials[i] for i in sorted(trials)]
    _write_atomic(out_dir / "trials.jsonl", "".join(json.dumps(t.row()) + "\n" for t in ordered))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(t.row() for t in ordered)
    _write_atomic(out_dir / "trials.csv", buf.getvalue())
    best = _best(ordered)
    lines = [
        f"| trial | lr | weight decay | {metric_name} | seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for t in sorted(ordered, key=_rank):
        mark = "**" if best is not None and t.index == best.index else ""
        metric = "diverged" if math.isnan(t.metric) else f"{t.metric:.4f}"
        lines.append(
            f"| {mark}{t.index}{mark} | {t.lr:.3e} | {t.weight_decay:.3e} | {mark}{metric}{mark} | {t.seconds:.1f} |"
        )
    _write_atomic(out_dir / "trials.md", "\n".join(lines) + "\n")


def _rank(t: Trial) -> tuple[bool, float, int]:
    return (math.isnan(t.metric), -t.metric if not math.isnan(t.metric) else 0.0, t.index)


def _best(trials: Sequence[Trial]) -> Trial | None:
    finite = [t for t in trials if not math.isnan(t.metric)]
    return min(finite, key=_rank) if finite else None


def _plot(
    path: Path, trials: Sequence[Trial], ranges: tuple[tuple[float, float], tuple[float, float]], metric: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.0), dpi=100)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.11, top=0.93)
    ok = [t for t in trials if not math.isnan(t.metric)]
    bad = [t for t in trials if math.isnan(t.metric)]
    if ok:
        points = ax.scatter([t.lr for t in ok], [t.weight_decay for t in ok], c=[t.metric for t in ok], cmap="viridis",
                            s=60, edgecolors="k", linewidths=0.5)  # fmt: skip
        fig.colorbar(points, ax=ax, label=metric)
        best = _best(ok)
        ax.scatter([best.lr], [best.weight_decay], marker="*", s=320, facecolors="none", edgecolors="red",
                   linewidths=1.5, label=f"best: {best.metric:.4f}")  # fmt: skip
    if bad:
        ax.scatter([t.lr for t in bad], [t.weight_decay for t in bad], marker="x", c="grey", label="diverged")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()  # decades only: fast to lay out, easy to read
    ax.set_xlim(10 ** ranges[0][0], 10 ** ranges[0][1])
    ax.set_ylim(10 ** ranges[1][0], 10 ** ranges[1][1])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay")
    ax.set_title(f"random search: {len(trials)} trials")
    if ok or bad:
        ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    apply_umask(tmp)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ the search
def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a search whose recorded settings differ (its trials would not be comparable)."""
    path = out_dir / "search.json"
    if not path.is_file():
        _write_atomic(path, json.dumps(settings, indent=2) + "\n")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    for key, value in settings.items():
        if recorded.get(key) == value:
            continue
        if key == "base":
            old, new = _leaves(recorded.get(key) or {}), _leaves(value)
            keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            what = f"holds a search with base recipe differing in {', '.join(keys)}"
        else:
            what = f"holds a search with {key} = {recorded.get(key)!r}, not {value!r}"
        raise ValueError(
            f"{key}: {out_dir} {what}; use another out_dir (CLI: --output), or the same settings to resume it"
        )


def run_search(
    base: Recipe,
    *,
    trials: int,
    out_dir: str | os.PathLike[str],
    lr_range: tuple[float, float] = LECTURE_RANGE,
    wd_range: tuple[float, float] = LECTURE_RANGE,
    seed: int = 0,
    epochs: int | None = None,
    trial_fn: Callable[[Recipe], float] | None = None,
    metric_name: str = "val top-1",
    progress: Callable[[str], None] | None = print,
) -> SearchResult:
    """Run (or resume) a random search of ``trials`` trials of ``base`` over lr and weight decay.

    Args:
        base: the recipe to tune; each trial changes only ``optim.lr``, ``optim.weight_decay``, its name and
            output folder (and its length, with ``epochs``).
        trials: how many trials in all (trials already recorded in ``out_dir`` count and are not rerun).
        out_dir: folder of the search's tables, plot, best recipe and the trials' own run folders.
        lr_range: exponents ``(a, b)``: lr = 10^U[a, b]. Default the lecture's (-5, -2).
        wd_range: the same for the weight decay.
        seed: the same seed gives the same samples.
        epochs: shorten each trial to this many epochs (``None``: the recipe's).
        trial_fn: runs one trial and returns its validation metric, higher is better (NaN: diverged).
            Default: :func:`timm_recipes.train.fit` and its ``best_metric``.
        metric_name: the metric's name in the tables and the plot.
        progress: called with one line per trial (``None``: silent).

    Raises:
        ValueError: ``trials`` < 1, an empty or inverted range, ``epochs`` < 1, a negative seed, or an
            ``out_dir`` holding a search with other settings. Nothing is written before these checks.
    """
    if not isinstance(base, Recipe):
        raise TypeError(f"base: expected a Recipe, got {type(base).__name__}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials: expected an integer >= 1, got {trials!r}")
    ranges = (_check_range("lr_range", lr_range), _check_range("wd_range", wd_range))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs: expected an integer >= 1 or None, got {epochs!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir (CLI: --output): {out} exists and is not a folder")
    check_writable(out, "search output folder")
    trial_fn = trial_fn or _fit_metric
    say = progress or (lambda _line: None)

    settings = {
        "seed": seed,
        "lr_range": list(ranges[0]),
        "wd_range": list(ranges[1]),
        "epochs": epochs,
        "base": recipe_to_dict(base),
    }
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    done = _read_trials(out / "trials.jsonl")

    for i in range(trials):
        lr, wd = sample_trial(i, seed=seed, lr_range=ranges[0], wd_range=ranges[1])
        if i in done:
            if not (
                math.isclose(done[i].lr, lr, rel_tol=1e-12) and math.isclose(done[i].weight_decay, wd, rel_tol=1e-12)
            ):
                raise ValueError(
                    f"out_dir (CLI: --output): trial {i} in {out / 'trials.jsonl'} was not sampled by this search"
                )
            continue
        recipe = trial_recipe(base, i, lr, wd, out, epochs)
        say(f"trial {i} ({i + 1} of {trials}): lr {lr:.3e}  wd {wd:.3e}  training ...")
        start = time.perf_counter()
        metric = float(trial_fn(recipe))
        done[i] = Trial(i, lr, wd, metric, time.perf_counter() - start)
        _write_tables(out, done, metric_name)
        say(f"trial {i} ({i + 1} of {trials}): lr {lr:.3e}  wd {wd:.3e}  ->  {metric_name} {metric:.4f}")

    finished = tuple(done[i] for i in range(trials))
    _write_tables(out, done, metric_name)
    best = _best(finished)
    if best is None:
        raise RuntimeError(f"all {trials} trials diverged (NaN metric); see {out / 'trials.csv'}")
    best_recipe = apply_overrides(
        base,
        {
            "optim.lr": best.lr,
            "optim.weight_decay": best.weight_decay,
            "source": f"{base.source}; lr and weight decay: random search, trial {best.index} of {trials}".lstrip("; "),
        },
    )
    best_path = save_recipe(best_recipe, out / "best_recipe.yaml")
    _plot(out / "search.png", finished, ranges, metric_name)
    return SearchResult(
        trials=finished,
        best=best,
        best_recipe=best_recipe,
        out_dir=out,
        csv_path=out / "trials.csv",
        markdown_path=out / "trials.md",
        plot_path=out / "search.png",
        best_recipe_path=best_path,
    )

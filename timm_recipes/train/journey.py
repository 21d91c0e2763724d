"""The recipe journey: one base recipe, ingredients added one at a time, each step trained at several seeds.

The lecture's last slides (the torchvision case study, https://pytorch.org/blog/how-to-train-state-of-the-art-
models-using-torchvision-latest-primitives/) show the accuracy of ResNet-50 climbing as ingredients are added
cumulatively. :func:`run_journey` measures that staircase for any recipe and any data the trainer reads:

* a :class:`Journey` is a base recipe, a list of named :class:`JourneyStep` s and the seeds. A ``train`` step is a
  set of recipe overrides applied on top of everything before it; a ``fixres`` step runs FixRes
  (:func:`~timm_recipes.train.fixres.run_fixres`) on the runs of the last trained step; an ``ensemble`` step averages
  the logits of those runs over the seeds (:func:`~timm_recipes.cli.evaluate.evaluate_checkpoints`);
* every ``(step, seed)`` is a run folder ``<out>/<NN>-<step>/seed<k>/`` made by :func:`~timm_recipes.train.fit`,
  stamped with the fingerprint of its resolved recipe. A killed journey reruns only what is missing (a run killed
  mid-way continues from its last checkpoint); a folder whose stamp differs from the current definition is refused
  with the names of the changed steps, or recomputed when the caller says so (``recompute=True``), never mixed;
* the statistics (paired gains by seed, mean ± std, cumulative gain) are the pure functions of
  :mod:`~timm_recipes.train.journey_stats`; :mod:`~timm_recipes.train.journey_report` writes the table (Markdown),
  JSON, CSV and the staircase picture.

The score of a run is the test top-1 (the validation top-1 when the data has no test split) of its best checkpoint,
from the weights it monitors (EMA weights once the EMA step has switched them on).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from timm_recipes.config import Recipe, apply_overrides, recipe_from_dict, recipe_to_dict
from timm_recipes.train.journey_stats import StepStats, journey_statistics

__all__ = [
    "KINDS",
    "Journey",
    "JourneyError",
    "JourneyResult",
    "JourneyStep",
    "default_journey",
    "journey_from_dict",
    "journey_to_dict",
    "load_journey",
    "plan_journey",
    "run_journey",
]

_LOG = logging.getLogger("timm_recipes.journey")

KINDS = ("train", "fixres", "ensemble")
STAMP = "journey-step.json"
"""The ensemble step's record in its folder; a (step, seed) run's record is ``<step folder>/seed<k>.json``, beside
its run folder (which holds only what ``fit`` / FixRes write)."""
_IGNORED_KEYS = (
    "name", "run.seed", "run.output_dir", "run.progress", "run.log_interval", "run.sanity_check", "data.num_workers",
)  # fmt: skip
"""Recipe keys that do not change what a step computes (the seed is the folder, the rest is presentation)."""


class JourneyError(ValueError):
    """A journey definition that is malformed, or results on disk that belong to another definition."""


@dataclass(frozen=True)
class JourneyStep:
    """One step of a journey.

    Attributes:
        name: Shown in the table and the picture (unique within the journey).
        kind: ``"train"`` (the overrides are added to the recipe and every seed is trained), ``"fixres"`` (FixRes
            on the runs of the last trained step, the overrides may set ``fixres.*``) or ``"ensemble"`` (the logit
            average of the last trained step's runs over the seeds).
        overrides: Dotted recipe keys and values, as for :func:`~timm_recipes.config.apply_overrides`.
        note: Why the step is there or how it differs from the lecture's / blog's ingredient.
    """

    name: str
    kind: str = "train"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise JourneyError(f"steps[].name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise JourneyError(f"step {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.overrides, Mapping):
            raise JourneyError(f"step {self.name!r}: set must be a mapping of recipe keys, got {self.overrides!r}")
        if self.kind == "ensemble" and self.overrides:
            raise JourneyError(f"step {self.name!r}: an ensemble step takes no overrides")
        if self.kind == "fixres" and any(not str(k).startswith("fixres.") for k in self.overrides):
            raise JourneyError(f"step {self.name!r}: a fixres step may only set fixres.* keys")


@dataclass(frozen=True)
class Journey:
    """A base recipe, its steps (the first one is the baseline and must be a ``train`` step) and the seeds."""

    base: Recipe
    steps: tuple[JourneyStep, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    name: str = "journey"

    def __post_init__(self) -> None:
        if not isinstance(self.base, Recipe):
            raise JourneyError(f"base must be a Recipe, got {type(self.base).__name__}")
        if not self.steps:
            raise JourneyError("steps: a journey needs at least one step")
        if self.steps[0].kind != "train":
            raise JourneyError(f"steps[0] ({self.steps[0].name!r}) is the baseline and must be a train step")
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise JourneyError(f"steps: names must be unique, repeated: {dup}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise JourneyError(f"seeds must be a non-empty list of integers >= 0, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise JourneyError(f"seeds must be distinct, got {list(self.seeds)}")


# ================================================================================================ definition I/O
def journey_from_dict(data: Mapping[str, Any], *, seeds: Sequence[int] | None = None) -> Journey:
    """A :class:`Journey` from its YAML form::

        name: my-journey
        base: demo                 # a preset name or a recipe YAML file, or a mapping (a recipe)
        base_set: {data.train_per_class: 20}   # optional overrides of the base
        seeds: [0, 1, 2]
        steps:
          - {name: baseline}
          - {name: warm-up + cosine, set: {schedule.name: cosine, schedule.warmup_epochs: 2}}
          - {name: FixRes, kind: fixres}
          - {name: ensemble, kind: ensemble}

    Raises:
        JourneyError: a malformed definition (the message names the key); a bad override raises ``RecipeError``.
    """
    from timm_recipes.recipes import load_recipe

    if not isinstance(data, Mapping):
        raise JourneyError(f"a journey must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"name", "base", "base_set", "seeds", "steps"})
    if unknown:
        raise JourneyError(f"unknown journey keys {unknown} (known: name, base, base_set, seeds, steps)")
    base = data.get("base")
    if base is None:
        raise JourneyError("base: a journey needs a base recipe (a preset name, a YAML file or a mapping)")
    recipe = recipe_from_dict(base) if isinstance(base, Mapping) else load_recipe(str(base))
    if data.get("base_set"):
        recipe = apply_overrides(recipe, dict(data["base_set"]))
    steps_data = data.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise JourneyError("steps: expected a non-empty list of steps")
    steps = []
    for i, s in enumerate(steps_data):
        if not isinstance(s, Mapping):
            raise JourneyError(f"steps[{i}]: expected a mapping with name, kind, set, note; got {s!r}")
        bad = sorted(set(s) - {"name", "kind", "set", "note"})
        if bad:
            raise JourneyError(f"steps[{i}]: unknown keys {bad} (known: name, kind, set, note)")
        steps.append(
            JourneyStep(s.get("name", ""), s.get("kind", "train"), dict(s.get("set") or {}), s.get("note", ""))
        )
    chosen = list(seeds) if seeds is not None else list(data.get("seeds", (0, 1, 2)))
    return Journey(recipe, tuple(steps), tuple(chosen), str(data.get("name", "journey")))


def journey_to_dict(journey: Journey) -> dict[str, Any]:
    """The journey with its base resolved into a full recipe (what is saved beside the results)."""
    return {
        "name": journey.name,
        "base": recipe_to_dict(journey.base),
        "seeds": list(journey.seeds),
        "steps": [
            {"name": s.name, "kind": s.kind, "set": dict(s.overrides), **({"note": s.note} if s.note else {})}
            for s in journey.steps
        ],
    }


def load_journey(path_or_name: str, *, seeds: Sequence[int] | None = None) -> Journey:
    """A journey from a YAML file, or a built-in one by name (``"default"``, ``"fixres"``; a file of that name wins)."""
    from timm_recipes.train.journey_default import BUILTIN_JOURNEYS

    path = Path(path_or_name)
    if path_or_name in BUILTIN_JOURNEYS and not path.is_file():
        return journey_from_dict(BUILTIN_JOURNEYS[path_or_name], seeds=seeds)
    if not path.is_file():
        raise FileNotFoundError(f"journey: no file {str(path)!r} (built-in journeys: {', '.join(BUILTIN_JOURNEYS)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise JourneyError(f"{path}: not valid YAML: {err}") from None
    return journey_from_dict(data or {}, seeds=seeds)


def default_journey() -> Journey:
    """The built-in journey on the data-starved digits (see :mod:`timm_recipes.train.journey_default`)."""
    from timm_recipes.train.journey_default import DEFAULT_JOURNEY

    return journey_from_dict(DEFAULT_JOURNEY)


# ================================================================================================ the plan
def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "step"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


@functools.cache
def _default_flat() -> dict[str, Any]:
    return _flatten(recipe_to_dict(Recipe()))


def _defining_keys(recipe: Recipe) -> dict[str, Any]:
    """The recipe keys that define what a step computes: those that differ from :class:`Recipe`'s defaults.

    Keys at their default are left out, so that a key added to the recipe later (with a default that keeps the old
    behaviour) does not make finished journeys look stale; the seed, the folder and the presentation keys
    (:data:`_IGNORED_KEYS`) are left out too.
    """
    defaults = _default_flat()
    return {
        k: v
        for k, v in _flatten(recipe_to_dict(recipe)).items()
        if k not in _IGNORED_KEYS and (k not in defaults or defaults[k] != v)
    }


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A short SHA-256 of a JSON-able mapping (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedStep:
    """A step with everything resolved: its recipe, its folder, its fingerprint, the trained step it acts on."""

    index: int
    step: JourneyStep
    recipe: Recipe
    folder: Path
    fingerprint: str
    source: int | None  # fixres / ensemble: index of the train step whose runs they use
    compared_to: int | None

    def seed_dir(self, seed: int) -> Path:
        return self.folder / f"seed{seed}"

    def record_path(self, seed: int | str) -> Path:
        """The JSON record (fingerprint, score, time) of one seed's run, or of the ensemble."""
        return self.folder / STAMP if seed == "ensemble" else self.folder / f"seed{seed}.json"


def plan_journey(journey: Journey, output_dir: str | Path) -> list[PlannedStep]:
    """Resolve every step's cumulative recipe, folder and fingerprint (nothing is run or written)."""
    out = Path(output_dir)
    planned: list[PlannedStep] = []
    recipe, last_train = journey.base, None
    for i, step in enumerate(journey.steps):
        if step.kind == "train":
            recipe = apply_overrides(recipe, dict(step.overrides)) if step.overrides else recipe
            step_recipe, source = recipe, None
        else:
            if last_train is None:
                raise JourneyError(f"step {step.name!r} ({step.kind}) needs a train step before it")
            step_recipe = (
                apply_overrides(planned[last_train].recipe, dict(step.overrides))
                if step.overrides
                else (planned[last_train].recipe)
            )
            source = last_train
        flat = _defining_keys(step_recipe)
        src_fp = planned[source].fingerprint if source is not None else ""
        fp = fingerprint({"kind": step.kind, "recipe": flat, "source": src_fp})
        compared_to = None if i == 0 else (source if step.kind == "ensemble" else i - 1)
        planned.append(PlannedStep(i, step, step_recipe, out / f"{i:02d}-{_slug(step.name)}", fp, source, compared_to))
        if step.kind == "train":
            last_train = i
    return planned


def _stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, payload: Any) -> None:
    from timm_recipes.train.checkpoint import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(payload, indent=1, default=str) + "\n").encode())


def stale_folders(plan: Sequence[PlannedStep], seeds: Sequence[int]) -> list[tuple[str, Path]]:
    """``(step name, path)`` of every result on disk that another definition made (or that has no record)."""
    stale = []
    for p in plan:
        keys: list[int | str] = ["ensemble"] if p.step.kind == "ensemble" else list(seeds)
        for key in keys:
            record = p.record_path(key)
            folder = p.folder if key == "ensemble" else p.seed_dir(int(key))
            stamp = _stamp(record)
            if stamp is not None and stamp.get("fingerprint") != p.fingerprint:
                stale.append((p.step.name, record))
                if key != "ensemble" and folder.exists():
                    stale.append((p.step.name, folder))
            elif stamp is None and key != "ensemble" and folder.exists() and any(folder.iterdir()):
                stale.append((p.step.name, folder))  # results without a record: made by something else
    return stale


# ================================================================================================ running
@dataclass
class JourneyResult:
    """What :func:`run_journey` measured: the table rows, the per-run records and where the files are."""

    rows: list[StepStats]
    runs: list[dict[str, Any]]
    output_dir: Path
    files: dict[str, Path]
    wall_time_s: float
    computed: int
    reused: int


def _score(final: Mapping[str, Any], recipe: Recipe) -> tuple[float, str]:
    """The run's score: test (else val) top-1 of the monitored weights of its best checkpoint."""
    split = "test" if "test_top1" in final else "val"
    use_ema = recipe.ema.enabled and recipe.ema.eval and recipe.run.monitor == "ema" and f"ema_{split}_top1" in final
    key = f"ema_{split}_top1" if use_ema else f"{split}_top1"
    return float(final[key]), key


def _train_run(p: PlannedStep, seed: int, journey: Journey) -> dict[str, Any]:
    from timm_recipes.train.trainer import fit

    folder = p.seed_dir(seed)
    stamp = _stamp(p.record_path(seed))
    if stamp is not None and stamp.get("done"):
        return {**stamp, "reused": True}
    recipe = apply_overrides(p.recipe, {"run.seed": seed, "run.output_dir": str(folder)})
    recipe = recipe.replace(name=f"{journey.name}-{p.index:02d}-{_slug(p.step.name)}-seed{seed}")
    resume = (folder / "checkpoints" / "last.json").exists()
    if folder.exists() and not resume:  # killed before its first checkpoint: nothing worth keeping
        shutil.rmtree(folder)
    _write_json(p.record_path(seed), {"fingerprint": p.fingerprint, "step": p.step.name, "seed": seed, "done": False})
    start = time.perf_counter()
    result = fit(recipe, output_dir=folder, resume=resume)
    seconds = time.perf_counter() - start
    score, key = _score(result.final, recipe)
    record = {
        "fingerprint": p.fingerprint, "step": p.step.name, "kind": "train", "seed": seed, "done": True,
        "top1": score, "metric": key, "best_epoch": result.best_epoch, "epochs": result.epochs_completed,
        "seconds": seconds, "resumed": resume, "final": result.final,
    }  # fmt: skip
    _write_json(p.record_path(seed), record)
    return {**record, "reused": False}


def _fixres_run(p: PlannedStep, seed: int, plan: Sequence[PlannedStep]) -> dict[str, Any]:
    from timm_recipes.train.fixres import run_fixres

    folder = p.seed_dir(seed)
    stamp = _stamp(p.record_path(seed))
    if stamp is not None and stamp.get("done"):
        return {**stamp, "reused": True}
    _write_json(p.record_path(seed), {"fingerprint": p.fingerprint, "step": p.step.name, "seed": seed, "done": False})
    run_dir = plan[p.source].seed_dir(seed)
    recipe = apply_overrides(p.recipe, {"run.seed": seed})
    start = time.perf_counter()
    fx = run_fixres(run_dir, recipe, output_dir=folder)
    seconds = time.perf_counter() - start
    record = {
        "fingerprint": p.fingerprint, "step": p.step.name, "kind": "fixres", "seed": seed, "done": True,
        "top1": fx.accuracy["test_size_after"], "metric": f"{fx.eval_split} top-1 after FixRes",
        "test_size": fx.test_size, "test_crop_pct": fx.test_crop_pct, "accuracy": fx.accuracy,
        "table": fx.table, "holdout_split": fx.holdout_split, "seconds": seconds,
    }  # fmt: skip
    _write_json(p.record_path(seed), record)
    return {**record, "reused": False}


def _ensemble_run(p: PlannedStep, seeds: Sequence[int], plan: Sequence[PlannedStep]) -> dict[str, Any]:
    from timm_recipes.cli.evaluate import evaluate_checkpoints

    stamp = _stamp(p.record_path("ensemble"))
    key = [int(s) for s in seeds]
    if stamp is not None and stamp.get("done") and stamp.get("seeds") == key:
        return {**stamp, "reused": True}
    src = plan[p.source]
    split = "test" if _has_test(src, seeds[0]) else "val"
    start = time.perf_counter()
    report = evaluate_checkpoints([str(src.seed_dir(s)) for s in seeds], split=split, weights="auto", device="cpu")
    seconds = time.perf_counter() - start
    ens = report["ensemble"] or {k: report["models"][0][k] for k in ("top1", "top5", "loss", "n")}
    record = {
        "fingerprint": p.fingerprint, "step": p.step.name, "kind": "ensemble", "seeds": key, "done": True,
        "top1": ens["top1"], "metric": f"{split} top-1 of the logit average", "members": report["models"],
        "seconds": seconds,
    }  # fmt: skip
    _write_json(p.record_path("ensemble"), record)
    return {**record, "reused": False}


def _has_test(p: PlannedStep, seed: int) -> bool:
    try:
        return "test_top1" in json.loads((p.seed_dir(seed) / "final.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def run_journey(
    journey: Journey,
    output_dir: str | Path,
    *,
    recompute: bool = False,
    only_plan: bool = False,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> JourneyResult:
    """Run (or finish) every ``(step, seed)`` of ``journey`` under ``output_dir`` and write the report.

    Args:
        journey: The journey.
        output_dir: Its folder (``journey.yaml``, one folder per step, the report files).
        recompute: Results stamped with another definition (a changed step, or anything after one) are deleted and
            recomputed. Without it they are refused.
        only_plan: Check the folder against the definition and report what is done, without computing anything.
        on_run: Called with each run's record as it finishes (progress reporting).

    Returns:
        A :class:`JourneyResult`.

    Raises:
        JourneyError: results on disk from another definition (without ``recompute``), naming the steps.
    """
    from timm_recipes.train.journey_report import write_report

    out = Path(output_dir)
    plan = plan_journey(journey, out)
    stale = stale_folders(plan, journey.seeds)
    if stale and not recompute:
        names = list(dict.fromkeys(name for name, _ in stale))
        raise JourneyError(
            f"{out} holds results of another definition of the steps {names} (first: {stale[0][1]}); "
            "rerun with the original definition, another output folder, or recompute=True (--recompute) to delete "
            "and recompute them"
        )
    for name, path in [] if only_plan else stale:
        _LOG.info("recomputing %s: %s was made by another definition", name, path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not only_plan:  # the definition the results below belong to
        out.mkdir(parents=True, exist_ok=True)
        (out / "journey.yaml").write_text(
            yaml.safe_dump(journey_to_dict(journey), sort_keys=False, width=120), encoding="utf-8"
        )
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    scores: list[tuple[str, str, dict[Any, float]]] = []
    refs: list[int | None] = []
    row_of: dict[int, int] = {}  # plan index -> its row in the table
    for p in plan:
        if p.step.kind == "ensemble":
            todo = [("ensemble", lambda p=p: _ensemble_run(p, journey.seeds, plan))]
        elif p.step.kind == "fixres":
            todo = [(s, lambda p=p, s=s: _fixres_run(p, s, plan)) for s in journey.seeds]
        else:
            todo = [(s, lambda p=p, s=s: _train_run(p, s, journey)) for s in journey.seeds]
        records = []
        for seed, job in todo:
            if only_plan:
                stamp = _stamp(p.record_path(seed)) or {}
                if stamp.get("done"):
                    records.append((seed, {**stamp, "reused": True}))
                continue
            record = job()
            records.append((seed, record))
            if on_run is not None:
                on_run(record)
        runs.extend(r for _, r in records)
        if len(records) < len(todo):  # only_plan: the table stops at the first incomplete step
            break
        prev = len(scores) - 1 if scores else None
        if p.step.kind == "fixres":  # (a) the test size chosen on held-out data, then (b) the fine-tuning
            before = {seed: float(r["accuracy"]["test_size_before"]) for seed, r in records}
            scores.append((f"{p.step.name}: test size only", "fixres", before))
            refs.append(prev)
            prev = len(scores) - 1
        scores.append((p.step.name, p.step.kind, {seed: float(r["top1"]) for seed, r in records}))
        refs.append(row_of[p.source] if p.step.kind == "ensemble" else prev)
        row_of[p.index] = len(scores) - 1
    rows = journey_statistics(scores, refs) if scores else []
    wall = time.perf_counter() - start
    files = write_report(rows, runs, journey, out, wall_time_s=wall) if rows and not only_plan else {}
    computed = sum(1 for r in runs if not r.get("reused"))
    return JourneyResult(rows, runs, out, files, wall, computed, len(runs) - computed)

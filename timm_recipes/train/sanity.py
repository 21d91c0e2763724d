"""`timm-recipes check` and ``run.sanity_check``: every sanity check of the lecture for one recipe, one report.

:func:`run_checks` builds the recipe's datasets with :func:`~timm_recipes.train.builders.build_datasets` (so it
reads every source the trainer reads), surveys their raw images (:mod:`timm_recipes.data.survey`), writes preview
grids of raw and augmented samples, measures the initial loss of the recipe's model against ln C on a training
batch with the recipe's targets (smoothed, mixed), and overfits one small batch without regularisation
(:mod:`timm_recipes.train.check`). The :class:`SanityReport` prints as a short text and saves as JSON; it has
failed when any check has.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from timm_recipes.config import Recipe, apply_overrides
from timm_recipes.train.check import (
    CheckResult,
    expected_initial_loss,
    measure_initial_loss,
    overfit_one_batch,
    sample_batch,
)

__all__ = ["ALL_CHECKS", "SanityCheckError", "SanityReport", "run_checks"]

ALL_CHECKS = ("data", "initial_loss", "overfit")
MEAN_TOLERANCE = 0.1
"""A channel mean further than this (in [0, 1] units) from the recipe's ``aug.mean`` is worth a warning."""
STD_RATIO = (0.5, 2.0)
"""A channel std outside these multiples of the recipe's ``aug.std`` is worth a warning."""


class SanityCheckError(ValueError):
    """A sanity check failed before training (``run.sanity_check``); the message lists the failures."""


@dataclass
class SanityReport:
    """The checks that ran, in order, and the survey of the data."""

    checks: list[CheckResult] = field(default_factory=list)
    survey: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks], "survey": self.survey, "files": self.files}

    def text(self) -> str:
        marks = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL"}
        lines = [f"[{marks[c.status]}] {c.name:14s} {c.message}" for c in self.checks]
        lines.append("all checks passed" if self.ok else f"{len(self.failed)} check(s) failed")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from timm_recipes.train.checkpoint import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, (json.dumps(self.as_dict(), indent=1, default=str) + "\n").encode())


# ================================================================================================ data
def _raw_splits(recipe: Recipe, report: SanityReport, limit: int | None) -> tuple[dict[str, Any], Any]:
    """``{split: (classes, raw samples)}`` and the built :class:`DataSplits` (``None`` if they could not be built)."""
    from timm_recipes.data.survey import folder_raw_samples, iter_raw_samples
    from timm_recipes.train.builders import build_datasets

    try:
        data = build_datasets(recipe)
    except (FileNotFoundError, ValueError) as err:
        report.checks.append(CheckResult("datasets", "fail", f"the trainer cannot build the datasets: {err}"))
        root = recipe.data.root
        if recipe.data.dataset != "folder" or root is None or not Path(root).is_dir():
            return {}, None
        raw = {s: folder_raw_samples(Path(root) / s) for s in ("train", "val", "test") if (Path(root) / s).is_dir()}
        return raw, None
    splits = {"train": data.train, "val": data.val, **({"test": data.test} if data.test is not None else {})}
    report.checks.append(CheckResult("datasets", "pass", f"{data.origin}: " + ", ".join(
        f"{len(d)} {s}" for s, d in splits.items()) + f" images, {data.num_classes} classes"))  # fmt: skip
    return {s: (list(getattr(d, "classes", data.classes)), iter_raw_samples(d, limit)) for s, d in splits.items()}, data


def _data_checks(recipe: Recipe, raw: dict[str, Any], out: Path | None, report: SanityReport) -> None:
    from timm_recipes.data.survey import survey_splits

    if not raw:
        return
    survey = survey_splits(raw)
    previews = survey.pop("previews")
    report.survey = survey
    splits = survey["splits"]
    empty = [f"{c!r} in {s}" for s, v in splits.items() for c, n in v["per_class"].items() if n == 0]
    counts = {s: v["count"] for s, v in splits.items()}
    train_counts = [n for n in splits.get("train", {}).get("per_class", {}).values() if n > 0]
    imbalance = max(train_counts) / min(train_counts) if train_counts else 1.0
    report.checks.append(
        CheckResult("class_counts", "fail", f"classes with no images: {', '.join(empty)}", {"counts": counts})
        if empty
        else CheckResult(
            "class_counts",
            "warn" if imbalance > 10 else "pass",
            f"{counts}; largest / smallest train class {imbalance:.2f}",
            {"counts": counts},
        )
    )
    bad = {s: v["sizes"]["unreadable_count"] for s, v in splits.items() if v["sizes"]["unreadable_count"]}
    listed = [u["key"] for v in splits.values() for u in v["unreadable"]]
    report.checks.append(
        CheckResult("unreadable", "fail", f"unreadable images {bad}: {', '.join(listed[:5])}", {"files": listed})
        if bad
        else CheckResult("unreadable", "pass", "every image decodes")
    )
    leaks = survey["leaks"]
    within = {s: v["sizes"]["duplicate_images"] for s, v in splits.items() if v["sizes"]["duplicate_images"]}
    if leaks:
        text = "; ".join(f"{lk['count']} identical image(s) in {lk['splits'][0]} and {lk['splits'][1]} "
                         f"(e.g. {lk['examples'][0][0]} = {lk['examples'][0][1]})" for lk in leaks)  # fmt: skip
        report.checks.append(CheckResult("duplicates", "fail", f"leakage across splits: {text}", {"leaks": leaks}))
    else:
        msg = f"no image shared between splits; within a split: {within or 'none'}"
        report.checks.append(CheckResult("duplicates", "warn" if within else "pass", msg, {"within": within}))
    train = splits.get("train") or next(iter(splits.values()))
    sizes = train["sizes"]
    if sizes.get("height"):
        h, w, ar = sizes["height"], sizes["width"], sizes["aspect_ratio"]
        small = min(h["min"], w["min"]) < recipe.aug.train_size / 2
        report.checks.append(CheckResult(
            "image_sizes", "warn" if small else "pass",
            f"train H {h['min']:g}/{h['median']:g}/{h['max']:g}, W {w['min']:g}/{w['median']:g}/{w['max']:g} "
            f"(min/median/max), aspect {ar['min']:.2f}..{ar['max']:.2f}, {sizes['distinct']} distinct sizes"
            + (f"; some images are under half the train size {recipe.aug.train_size}" if small else ""),
            {"sizes": sizes},
        ))  # fmt: skip
    if train.get("mean") is not None:
        mean, std = train["mean"], train["std"]
        off = max(abs(a - b) for a, b in zip(mean, recipe.aug.mean))
        ratio = [s / r for s, r in zip(std, recipe.aug.std)]
        warn = off > MEAN_TOLERANCE or not all(STD_RATIO[0] <= r <= STD_RATIO[1] for r in ratio)
        fmt = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v) + ")"  # noqa: E731
        report.checks.append(CheckResult(
            "normalisation", "warn" if warn else "pass",
            f"train pixels mean {fmt(mean)} std {fmt(std)} vs aug.mean {fmt(recipe.aug.mean)} aug.std "
            f"{fmt(recipe.aug.std)}" + ("; consider the data's own statistics" if warn else ""),
            {"mean": mean, "std": std},
        ))  # fmt: skip
    if out is not None:
        _previews(recipe, previews, out, report)


def _previews(recipe: Recipe, previews: dict[str, list[Any]], out: Path, report: SanityReport) -> None:
    from timm_recipes.data.preview import preview_pipeline, preview_samples
    from timm_recipes.train.builders import train_pipeline

    shown = [s for s in previews.get("train", []) if s.image is not None]
    if not shown:
        return
    names = report.survey["splits"]["train"]["per_class"]
    classes = list(names)
    caption = lambda s: classes[s.label] if 0 <= s.label < len(classes) else str(s.label)  # noqa: E731
    raw = preview_samples([s.image for s in shown], [caption(s) for s in shown], out / "preview_raw.png")
    aug = preview_pipeline(shown[0].image, train_pipeline(recipe), 7, out / "preview_augmented.png", seed=0)
    report.files.update({"preview_raw": str(raw.path), "preview_augmented": str(aug.path)})


# ================================================================================================ model checks
def _initial_loss(recipe: Recipe, data: Any, report: SanityReport, tolerance: float) -> None:
    from timm_recipes.train.builders import create_mixing, create_recipe_model
    from timm_recipes.train.losses import smoothed_targets

    torch.manual_seed(recipe.run.seed)
    model = create_recipe_model(recipe, num_classes=data.num_classes)
    n = min(len(data.train), max(2, recipe.data.batch_size))
    images, labels = sample_batch(data.train, n, seed=recipe.run.seed)
    mixing = apply_overrides(recipe, {"mix.prob": 1.0}) if recipe.mix.enabled else recipe  # a batch that is mixed
    collate, _ = create_mixing(mixing, data.num_classes, torch.device("cpu"), torch.Generator().manual_seed(0))
    if collate is not None:  # the recipe's own Mixup/CutMix targets (smoothing included)
        images, targets = collate([(im, int(y)) for im, y in zip(images, labels)])
        eps = recipe.optim.label_smoothing
        what = "a Mixup/CutMix-mixed batch" + (f", smoothing {eps:g}" if eps else "")
    else:
        targets = smoothed_targets(labels, data.num_classes, recipe.optim.label_smoothing)
        what = f"smoothing {recipe.optim.label_smoothing:g}" if recipe.optim.label_smoothing else "one-hot targets"
    expected = expected_initial_loss(targets)
    measured = measure_initial_loss(model, images.float(), targets)
    ok = math.isfinite(measured) and abs(measured - expected["cross_entropy"]) <= tolerance
    details = {**expected, "measured": measured, "tolerance": tolerance, "targets": what, "batch": n}
    msg = (
        f"{measured:.3f} at initialisation vs ln C = {expected['cross_entropy']:.3f} ({what}; target entropy "
        f"{expected['target_entropy']:.3f}, so a KL loss would start at {expected['kl']:.3f})"
    )
    if not ok:
        msg += (f"; off by more than {tolerance:g}: the classifier does not start neutral (a large initial weight "
                "or bias scale, unnormalised inputs), or model.num_classes does not match the labels")  # fmt: skip
    report.checks.append(CheckResult("initial_loss", "pass" if ok else "fail", msg, details))


def _overfit(recipe: Recipe, data: Any, report: SanityReport, batch: int, steps: int) -> None:
    from timm_recipes.train.builders import create_recipe_model, eval_pipeline_for
    from timm_recipes.train.fixres import with_transform

    plain = apply_overrides(recipe, {"model.drop_rate": 0.0, "model.drop_path_rate": 0.0})
    torch.manual_seed(recipe.run.seed)
    model = create_recipe_model(plain, num_classes=data.num_classes)
    try:
        dataset = with_transform(data.train, eval_pipeline_for(recipe))  # no augmentation
    except TypeError:
        dataset = data.train
    images, labels = sample_batch(dataset, min(batch, len(dataset)), seed=recipe.run.seed)
    opt = recipe.optim
    lr = opt.lr * recipe.data.batch_size / opt.lr_base_batch if opt.lr_base_batch else opt.lr
    result = overfit_one_batch(model, images, labels, optimizer_name=opt.name, lr=lr, momentum=opt.momentum,
                               max_steps=steps)  # fmt: skip
    report.checks.append(result)


# ================================================================================================ all of it
def run_checks(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None = None,
    *,
    checks: tuple[str, ...] = ALL_CHECKS,
    overfit_batch: int = 16,
    overfit_steps: int = 200,
    loss_tolerance: float | None = None,
    max_images: int | None = None,
) -> SanityReport:
    """Run the sanity checks of ``recipe``; write ``sanity_check.json`` and the previews into ``output_dir``.

    Args:
        recipe: The recipe (its data, pipelines, model, targets and optimizer are the ones checked).
        output_dir: Where the report and the preview grids go (``None``: nothing written).
        checks: A subset of :data:`ALL_CHECKS`.
        overfit_batch: Images in the batch to overfit.
        overfit_steps: Steps allowed to reach 100 %.
        loss_tolerance: Allowed |initial loss - ln C| (default: 0.1 ln C, at least 0.1).
        max_images: Survey at most this many images per split (spread evenly; default: all). Duplicates and
            leakage are then only searched among those.

    Returns:
        The :class:`SanityReport` (``report.ok`` is false when a check failed).
    """
    unknown = [c for c in checks if c not in ALL_CHECKS]
    if unknown or not checks:
        raise ValueError(f"checks must be a non-empty subset of {ALL_CHECKS}, got {list(checks)}")
    if isinstance(overfit_batch, bool) or not isinstance(overfit_batch, int) or overfit_batch < 1:
        raise ValueError(f"overfit_batch must be an integer >= 1, got {overfit_batch!r}")
    out = Path(output_dir) if output_dir is not None else None
    report = SanityReport()
    raw, data = _raw_splits(recipe, report, max_images)
    if "data" in checks:
        _data_checks(recipe, raw, out, report)
    if data is not None:
        tol = loss_tolerance if loss_tolerance is not None else max(0.1, 0.1 * math.log(data.num_classes))
        if "initial_loss" in checks:
            _initial_loss(recipe, data, report, tol)
        if "overfit" in checks:
            _overfit(recipe, data, report, overfit_batch, overfit_steps)
    if out is not None:
        report.files["report"] = str(out / "sanity_check.json")
        report.save(out / "sanity_check.json")
    return report

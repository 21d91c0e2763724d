"""Export the weights of a training run: raw, EMA or FixRes, with the accuracies the run measured.

A run folder written by :func:`timm_recipes.train.fit` holds the checkpoints (raw and EMA weights, the recipe),
``final.json`` (the best checkpoint evaluated on val and test) and, after ``timm-recipes fixres``, ``fixres/``
(``model.safetensors`` and ``fixres.json`` with the chosen test size and the accuracies before and after
fine-tuning). :func:`export_run` turns one of its weight variants into an export folder whose card reports exactly
those measurements (:func:`run_measurements`), nothing else.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from timm_recipes.hub.card import Measurement
from timm_recipes.hub.exporting import export

__all__ = ["dataset_classes", "export_run", "run_measurements"]

WEIGHTS = ("auto", "ema", "raw", "fixres")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _count(doc: dict[str, Any] | None, key: str) -> int | None:
    value = (doc or {}).get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1 else None


def run_measurements(run_dir: str | os.PathLike[str], recipe: Any, epoch: int | None = None) -> list[Measurement]:
    """The accuracies a run measured, as card measurements.

    From ``final.json`` (only when it evaluated the checkpoint of ``epoch``): top-1/top-5 of the raw and EMA
    weights on val and test, at the recipe's test size and crop. From ``fixres/fixres.json``: the starting weights
    at the train size and at the chosen test size, and the FixRes weights at the chosen test size.
    """
    run_dir, aug = Path(run_dir), recipe.aug
    found: dict[tuple, Measurement] = {}

    def add(m: Measurement) -> None:
        found.setdefault((m.variant, m.img_size, m.crop_pct, m.split, m.metric), m)

    final = _read_json(run_dir / "final.json")
    sizes = {split: _count(final, f"{split}_n") for split in ("val", "test")}  # images evaluated: the error bars
    if final is not None and (epoch is None or final.get("epoch") == epoch):
        for prefix, variant in (("", "raw"), ("ema_", "ema")):
            for split in ("val", "test"):
                for metric in ("top1", "top5"):
                    value = final.get(f"{prefix}{split}_{metric}")
                    if value is not None:
                        n = _count(final, f"{prefix}{split}_n") or sizes[split]
                        add(Measurement(float(value), variant, aug.test_size, aug.test_crop_pct, metric, split, n))
    report = _read_json(run_dir / "fixres" / "fixres.json")
    if report is not None:
        start = "ema" if report.get("weights") == "ema" else "raw"
        acc, split = report["accuracy"], str(report.get("eval_split", "test"))
        size, crop = int(report["test_input_size"][-1]), float(report["test_crop_pct"])
        n = sizes.get(split)
        train_size = int(report["train_size"])
        add(Measurement(float(acc["train_size"]), start, train_size, aug.test_crop_pct, split=split, num_samples=n))
        add(Measurement(float(acc["test_size_before"]), start, size, crop, split=split, num_samples=n))
        add(Measurement(float(acc["test_size_after"]), "fixres", size, crop, split=split, num_samples=n))
    return list(found.values())


def dataset_classes(recipe: Any) -> list[str] | None:
    """Class names of the recipe's data: ``0`` … ``9`` for the digits, the sub-folders of ``root/train``, the classes
    of a shard directory's ``_info.json`` or of a Hugging Face dataset's ``ClassLabel``."""
    if recipe.data.dataset == "digits":
        return [str(d) for d in range(10)]
    if recipe.data.dataset in ("wds", "hfds"):  # _info.json's classes, a ClassLabel's names
        from timm_recipes.data.sources import source_classes

        try:
            return source_classes(recipe)
        except (OSError, ValueError):
            return None
    train = Path(recipe.data.root or "") / "train"
    if recipe.data.root and train.is_dir():
        return sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
    return None


def export_run(
    source: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    weights: str = "auto",
    checkpoint: str = "best",
    tag: str | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export one weight variant of a training run (see :func:`timm_recipes.hub.export`).

    Args:
        source: A run folder, its ``checkpoints/`` folder, a tag file or a checkpoint folder.
        folder: The export folder to write.
        weights: ``"ema"``, ``"raw"``, ``"fixres"`` (the run's ``fixres/`` weights) or ``"auto"`` (EMA when the
            checkpoint has it).
        checkpoint: ``"best"`` (falling back to ``"last"`` for runs without one) or ``"last"``.
        tag: The variant's tag; default :func:`~timm_recipes.hub.exporting.default_tag`.
        repo_id: Where it will be published (for the card).
        overwrite: Replace an existing export folder.
    """
    from timm_recipes.train.builders import load_checkpoint_model
    from timm_recipes.train.fixres import set_test_resolution
    from timm_recipes.train.trainer import EMA_WORSE_POINTS, ema_gap

    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    which = "auto" if weights == "fixres" else weights
    try:
        model, recipe, ckpt = load_checkpoint_model(source, which=which, tag=checkpoint)
    except FileNotFoundError:
        if checkpoint != "best" or not Path(source).exists():
            raise
        model, recipe, ckpt = load_checkpoint_model(source, which=which, tag="last")
    if weights == "auto" and ckpt.has_ema:
        final = _read_json(ckpt.run_dir / "final.json") or {}
        gap = ema_gap(final) if final.get("epoch") == ckpt.epoch else None
        if gap is not None and gap >= EMA_WORSE_POINTS:
            warnings.warn(
                f"exporting the raw weights of {ckpt.path}: its EMA weights are {gap:.1f} points below the raw ones on "
                f"val ({final['ema_val_top1']:.2f} % vs {final['val_top1']:.2f} %); pass weights='ema' (CLI: --ema) "
                "to export them anyway",
                stacklevel=2,
            )
            model, recipe, ckpt = load_checkpoint_model(ckpt.path, which="raw")
            weights = "raw"
    if weights == "fixres":
        from safetensors.torch import load_file

        fixres_dir = ckpt.run_dir / "fixres"
        report = _read_json(fixres_dir / "fixres.json")
        if report is None or not (fixres_dir / "model.safetensors").is_file():
            raise FileNotFoundError(f"no FixRes weights in {fixres_dir}: run `timm-recipes fixres {source}` first")
        model.load_state_dict(load_file(str(fixres_dir / "model.safetensors")), strict=True)
        set_test_resolution(model, int(report["test_input_size"][-1]), float(report["test_crop_pct"]))
        variant = "fixres"
    else:
        variant = "ema" if weights == "ema" or (weights == "auto" and ckpt.has_ema) else "raw"
    return export(
        model,
        folder,
        recipe=recipe,
        metrics=run_measurements(ckpt.run_dir, recipe, ckpt.epoch),
        variant=variant,
        tag=tag,
        label_names=dataset_classes(recipe),
        repo_id=repo_id,
        overwrite=overwrite,
        protect=[ckpt.run_dir, source],
    )

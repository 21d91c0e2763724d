"""Does fine-tuning pretrained weights beat training from scratch when data are scarce? Measured on real digits.

1. Source model: the recipe below trained on the digits 0-4 (every training scan of those classes).
2. Target task: the digits 5-9 from only ``PER_CLASS`` training scans per class (drawn per seed), the same recipe
   and schedule either fine-tuned from the source's weights (``model.init`` = the source run, classifier
   re-initialised for the new classes) or from random weights. Top-1 on the fixed test scans of 5-9.

Run: ``python benchmarks/finetune_digits.py`` (about 10 minutes of one CPU core); writes
``benchmarks/results/finetune_digits.{json,md}``. ``--source RUN`` reuses a source run this script trained before
(its ``src-run`` folder) instead of training it again.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results

# ------------------------------------------------------------------------------------------------ settings
SIZE = 16  # image side (half the demo's 32 px: the whole measurement fits in ~10 CPU minutes)
SOURCE_CLASSES, TARGET_CLASSES = "01234", "56789"
SOURCE_EPOCHS = 8
PER_CLASS = 10  # training scans per target class
TARGET_EPOCHS = 15
SEEDS = (0, 1, 2)
LR = 0.05
THREADS = 1  # one intra-op thread: on a shared machine two threads spin-wait on each other


ARMS: dict[str, dict] = {
    "fine-tuned": {"finetune": True},  # the same recipe, from the source's weights
    "from scratch": {"finetune": False},  # the same recipe, from random weights
    # a fine-tuning practice on top: the backbone at a tenth of the lr, the new classifier at the full lr
    "fine-tuned, backbone lr / 10": {"finetune": True, "optim.lr": LR / 10, "optim.head_lr_scale": 10.0},
}
DEFAULT_ARMS = ("fine-tuned", "from scratch")


def recipe_for(
    root: Path, classes: int, epochs: int, *, init: str | None, seed: int, batch: int, extra: dict | None = None
):
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import get_preset

    return apply_overrides(
        get_preset("demo"),
        {
            "name": "finetune-digits",
            "data.dataset": "folder", "data.root": str(root), "data.batch_size": batch, "model.num_classes": classes,
            "model.init": init, "aug.train_size": SIZE, "aug.test_size": SIZE, "aug.scale_range": [SIZE, SIZE + 8],
            "optim.lr": LR, "schedule.epochs": epochs, "schedule.warmup_epochs": 0, "ema.enabled": False,
            "run.monitor": "raw", "run.patience": None, "run.seed": seed, "run.progress": False, **(extra or {}),
        },
    )  # fmt: skip


def subset(full: Path, out: Path, classes: str, per_class: int | None, seed: int) -> Path:
    """``out/{train,val,test}/<class>`` with only ``classes``, ``per_class`` random training scans each."""
    rng = random.Random(seed)
    for split in ("train", "val", "test"):
        for c in classes:
            files = sorted((full / split / c).iterdir())
            if split == "train" and per_class is not None:
                files = rng.sample(files, per_class)
            (out / split / c).mkdir(parents=True)
            for f in files:
                shutil.copy(f, out / split / c / f.name)
    return out


def main() -> None:
    import argparse

    import torch

    from timm_recipes.data.datasets import DigitsDataset
    from timm_recipes.train.trainer import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="a source run trained by this script before")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(DEFAULT_ARMS), help="what to compare")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    work = Path(tempfile.mkdtemp(prefix="finetune-digits-"))
    start = time.perf_counter()
    try:
        full = DigitsDataset.export_folder(work / "all", size=SIZE)
        if args.source is None:
            src_data = subset(full, work / "source", SOURCE_CLASSES, None, 0)
            recipe = recipe_for(src_data, 5, SOURCE_EPOCHS, init=None, seed=0, batch=64)
            source_dir = fit(recipe, output_dir=work / "src-run").run_dir
        else:
            source_dir = args.source
        source_top1 = json.loads((source_dir / "final.json").read_text())["test_top1"]
        runs: dict[str, list[float]] = {arm: [] for arm in args.arms}
        for seed in SEEDS:
            data = subset(full, work / f"target-{seed}", TARGET_CLASSES, PER_CLASS, seed)
            for i, label in enumerate(args.arms):
                extra = {k: v for k, v in ARMS[label].items() if k != "finetune"}
                init = str(source_dir) if ARMS[label]["finetune"] else None
                recipe = recipe_for(data, 5, TARGET_EPOCHS, init=init, seed=seed, batch=10, extra=extra)
                result = fit(recipe, output_dir=work / f"arm{i}-{seed}")
                runs[label].append(float(result.final["test_top1"]))
                print(f"seed {seed} {label}: test top-1 {runs[label][-1]:.2f} %", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, results = [], {"source_test_top1": source_top1, "seconds": time.perf_counter() - start}
    for label, values in runs.items():
        mean, std = statistics.mean(values), statistics.stdev(values)
        results[label] = {"test_top1": values, "mean": mean, "std": std}
        rows.append([label, f"{mean:.2f} ± {std:.2f}", ", ".join(f"{v:.2f}" for v in values)])
    table = markdown_table(["digits 5-9, 10 training scans per class", "test top-1 % (mean ± std)", "per seed"], rows)
    notes = (
        f"Source: recipe_resnet18 trained from scratch on every training scan of the digits 0-4 "
        f"({SOURCE_EPOCHS} epochs, {SIZE} px; its test top-1 on 0-4: {source_top1:.2f} %). Target: digits 5-9 from "
        f"{PER_CLASS} training scans per class, drawn per seed ({', '.join(map(str, SEEDS))}); the same recipe "
        f"(the demo's augmentation, SGD lr {LR}, cosine over {TARGET_EPOCHS} epochs, batch 10, no EMA) started from "
        "the source run's weights (classifier re-initialised) or from random weights; the checkpoint with the best "
        "validation top-1 is evaluated on the test scans of 5-9. Standard deviation over seeds (n - 1)."
    )
    changed = {arm: {k: v for k, v in ARMS[arm].items() if k != "finetune"} for arm in args.arms}
    notes += "".join(f" Arm {arm!r} changes {c}." for arm, c in changed.items() if c)
    name = (
        "finetune_digits"
        if tuple(args.arms) == DEFAULT_ARMS
        else "finetune_digits_" + "_".join(str(list(ARMS).index(a)) for a in args.arms)
    )
    write_results(name, results, table, title="Fine-tuning vs training from scratch", notes=notes)


if __name__ == "__main__":
    main()

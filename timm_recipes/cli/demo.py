"""`timm-recipes demo`: the built-in main job, the whole pipeline end to end on real data with no download.

A recipe ResNet-18 with stochastic depth trained on scikit-learn's handwritten digits (real 8×8 scans rendered at
32×32): multi-scale crops with Cutout, Mixup/CutMix, label smoothing, SGD with Nesterov momentum and a cosine
schedule with linear warm-up, weight EMA and early stopping. Then FixRes (Touvron et al. 2019,
https://arxiv.org/abs/1906.06423): the test size is chosen on held-out training images and the classifier and the
last batch norm are fine-tuned at it, starting from the EMA weights. The EMA and the FixRes weights are exported as
two tags of one family (``recipe_resnet18.<tag>``) in timm's Hub layout with their model cards, and each export is
loaded back with ``timm.create_model("local-dir:...")``, which must give the logits of the in-memory model. A few
minutes on two CPU cores.

    timm-recipes demo                              # train, FixRes, export, load back; nothing leaves the machine
    timm-recipes demo --cards model_cards          # also copy the model cards (no weights) into model_cards/
    timm-recipes demo --push my-org                # also publish my-org/recipe_resnet18.<tag> (token: HF_TOKEN)

The flow is a short sequence of steps, one function each, read top to bottom in :func:`run`.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from timm_recipes.cli._common import UsageError, add_overrides

if TYPE_CHECKING:
    from torch import nn

    from timm_recipes.config import Recipe
    from timm_recipes.hub import Measurement, PublishResult
    from timm_recipes.train.fixres import FixResResult
    from timm_recipes.train.trainer import FitResult

HELP = (
    "run the built-in demo: train the 'demo' recipe on the built-in digits, FixRes, export the EMA and FixRes "
    "weights with their model cards, load them back with timm (--push publishes them to the Hub)"
)

TARGET_EMA_TEST_TOP1 = 97.0  # percent
CARD_FILES = ("README.md", "config.json", "recipe.yaml")
"""What ``--cards`` copies from each export: the card and what it describes, never the weights."""
CHECK_BATCH = 64
"""Test images in the fixed batch on which a reloaded export must give the in-memory model's logits."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default=None, help="run folder (default: runs/demo, or runs/demo-N if taken)")
    add_overrides(parser, "override a value of the demo recipe, e.g. --set schedule.epochs=5 (repeatable)")
    parser.add_argument(
        "--cards", type=Path, default=None, metavar="DIR",
        help="also write the model cards (README.md, config.json, recipe.yaml; no weights) to DIR/<name>/, replacing "
        "cards an earlier demo wrote there",
    )  # fmt: skip
    parser.add_argument(
        "--push", default=None, metavar="OWNER[/FAMILY]",
        help="publish both variants to the Hugging Face Hub as OWNER/FAMILY.<tag> (FAMILY default recipe_resnet18); "
        "token from HF_TOKEN or `hf auth login`",
    )  # fmt: skip
    parser.add_argument("--private", action="store_true", help="with --push: create the repositories private")
    parser.add_argument("--overwrite", action="store_true", help="with --push: replace weights already published")


@dataclass(frozen=True)
class Exported:
    """One exported weight variant: its name (``recipe_resnet18.<tag>``), the in-memory model, the folder."""

    name: str
    variant: str
    model: nn.Module
    folder: Path
    repo_id: str | None

    @property
    def card(self) -> Path:
        return self.folder / "README.md"


# ------------------------------------------------------------------------------------------------ before training


def demo_recipe(overrides: Sequence[str]) -> Recipe:
    """The ``demo`` preset with FixRes on (candidate test sizes 1 to 1.5 times the train size) and the overrides."""
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import get_preset
    from timm_recipes.train.fixres import DEFAULT_SIZE_FACTORS

    recipe = apply_overrides(get_preset("demo"), ["fixres.enabled=true", *overrides])
    if recipe.fixres.enabled and not recipe.fixres.test_sizes:  # recorded in the recipe, hence in the cards
        sizes = sorted({round(recipe.aug.train_size * f) for f in DEFAULT_SIZE_FACTORS})
        recipe = apply_overrides(recipe, {"fixres.test_sizes": sizes})
    return recipe


def push_target(push: str | None) -> tuple[str, str] | None:
    """``(owner, family)`` of ``--push OWNER[/FAMILY]``, with a token checked against the Hub before any training."""
    if push is None:
        return None
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import validate_repo_id

    from timm_recipes.hub import HubAuthError, HubError

    owner, _, family = push.partition("/")
    family = family or "recipe_resnet18"
    if not owner or "/" in family:
        raise UsageError(f"--push must be OWNER or OWNER/FAMILY, got {push!r}")
    validate_repo_id(f"{owner}/{family}.ema_digits32")  # the shape of the repository ids to come
    token = get_token()
    if not token:
        raise HubAuthError("--push needs a Hugging Face token with write access: set HF_TOKEN or run `hf auth login`")
    api = HfApi()
    try:
        api.whoami(token=token)  # a rejected token or an unreachable Hub fails now, not after minutes of training
    except Exception as err:  # the message names the failure, never the token
        status = getattr(getattr(err, "response", None), "status_code", None)
        why = f"HTTP {status}" if status is not None else type(err).__name__
        raise HubError(
            f"--push: the Hub at {api.endpoint} did not accept the token ({why}); nothing was trained"
        ) from err
    return owner, family


@contextmanager
def timed(times: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        times[step] = time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ the steps


def train_step(recipe: Recipe, output: str | None) -> FitResult:
    """Step 1: train with the full recipe (checkpoints, metrics, curves in the run folder)."""
    from timm_recipes.cli.train import configure_logging
    from timm_recipes.config import recipe_summary
    from timm_recipes.train.trainer import fit

    configure_logging()
    print(f"timm-recipes demo: recipe {recipe.name!r}")
    for ingredient, setting in recipe_summary(recipe):
        print(f"  {ingredient:26s} {setting}")
    return fit(recipe, output_dir=output)


def report_training(result: FitResult, seconds: float) -> None:
    """Print the test accuracy of the raw and EMA weights of the best checkpoint, and where the files are."""
    final = result.final
    split = "test" if "test_top1" in final else "val"
    print(f"\ntrained in {seconds / 60:.1f} min; best epoch {result.best_epoch} of {result.epochs_completed}"
          f"{' (early stopping)' if result.stopped_early else ''}, chosen on {result.monitor} val top-1")  # fmt: skip
    print(f"{split} top-1 of the best checkpoint (epoch {result.best_epoch}):")
    print(f"  raw weights: {final[f'{split}_top1']:6.2f} %   (top-5 {final[f'{split}_top5']:.2f} %)")
    if f"ema_{split}_top1" in final:
        ema = final[f"ema_{split}_top1"]
        verdict = "meets" if ema >= TARGET_EMA_TEST_TOP1 else "MISSES"
        target = f"{verdict} the {TARGET_EMA_TEST_TOP1:g} % target"
        print(f"  EMA weights: {ema:6.2f} %   (top-5 {final[f'ema_{split}_top5']:.2f} %)  {target}")
    print(f"run folder: {result.run_dir}")
    for label, path in (
        ("recipe", result.recipe_yaml),
        ("metrics", result.metrics_jsonl),
        ("metrics (CSV)", result.metrics_csv),
        ("curves", result.curves_png),
        ("best checkpoint", result.best_checkpoint),
    ):
        print(f"  {label:16s} {path}")


def fixres_step(result: FitResult) -> FixResResult:
    """Step 2: FixRes from the EMA weights of the best checkpoint; writes ``<run>/fixres/``."""
    from timm_recipes.train.fixres import run_fixres

    print("\nFixRes: choosing the test size on held-out training data, then fine-tuning at it")
    fixres = run_fixres(result.run_dir)
    print(f"held-out selection on {fixres.holdout_split} (top-1 %):")
    for row in fixres.table:
        chosen = " <- chosen" if (row["size"], row["crop_pct"]) == (fixres.test_size, fixres.test_crop_pct) else ""
        print(f"  {row['size']:>4} px crop {row['crop_pct']:<5g} {row['top1']:6.2f} %{chosen}")
    print(fixres.summary())
    return fixres


def measurements(result: FitResult, recipe: Recipe) -> list[Measurement]:
    """What the run measured (``final.json``, ``fixres/fixres.json``), with the size of each evaluated split."""
    from timm_recipes.hub import run_measurements
    from timm_recipes.train.builders import build_datasets

    splits = build_datasets(recipe)
    sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test or ())}
    return [
        replace(m, num_samples=sizes.get(m.split) or None)
        for m in run_measurements(result.run_dir, recipe, result.best_epoch)
    ]


def export_step(result: FitResult, fixres: FixResResult | None, target: tuple[str, str] | None) -> list[Exported]:
    """Step 3: export the EMA weights (the best checkpoint's) and the FixRes weights as tags of one family."""
    from timm_recipes.hub import default_tag, export, variant_name
    from timm_recipes.hub.runs import dataset_classes
    from timm_recipes.train.builders import load_checkpoint_model

    ema_model, recipe, ckpt = load_checkpoint_model(result.run_dir, which="auto", tag="best")
    models = [("ema" if ckpt.has_ema else "raw", ema_model)] + ([("fixres", fixres.model)] if fixres else [])
    metrics = measurements(result, recipe)
    exported = []
    for variant, model in models:
        test_size = int(model.pretrained_cfg.get("test_input_size", (recipe.aug.test_size,))[-1])
        tag = default_tag(variant, recipe.data.dataset, recipe.aug.train_size, test_size)
        name = variant_name(recipe.model.name, tag)
        repo_id = f"{target[0]}/{target[1]}.{tag}" if target else None
        folder = export(
            model,
            result.run_dir / "export" / name,
            recipe=recipe,
            metrics=metrics,
            variant=variant,
            tag=tag,
            label_names=dataset_classes(recipe),
            repo_id=repo_id,
        )
        exported.append(Exported(name, variant, model, folder, repo_id))
    return exported


def load_back_step(exported: Sequence[Exported], recipe: Recipe) -> dict[str, float]:
    """Step 4: load each export with ``timm.create_model("local-dir:...")``; it must give the in-memory logits.

    The batch is the first :data:`CHECK_BATCH` test images through the test-time pipeline that the export's own
    ``config.json`` describes. Then the reloaded model is evaluated on the whole test split with that pipeline, which
    reproduces the test top-1 of its model card.

    Returns:
        Test top-1 (percent) of each reloaded export, by name.

    Raises:
        ExportError: a reloaded export's logits differ from its in-memory model's.
    """
    import timm
    import torch

    from timm_recipes.data.pipelines import eval_pipeline_from_model
    from timm_recipes.hub import ExportError
    from timm_recipes.train.builders import build_eval_dataset, create_eval_loader
    from timm_recipes.train.engine import evaluate
    from timm_recipes.train.fixres import with_transform

    top1 = {}
    for e in exported:
        loaded = timm.create_model(f"local-dir:{e.folder}", pretrained=True).eval()
        test = with_transform(build_eval_dataset(recipe, "test"), eval_pipeline_from_model(loaded))
        batch = torch.stack([test[i][0] for i in range(min(CHECK_BATCH, len(test)))])
        reference = e.model if next(e.model.parameters()).device.type == "cpu" else copy.deepcopy(e.model).cpu()
        with torch.no_grad():
            expected, got = reference.eval()(batch), loaded(batch)
        if not torch.equal(expected, got):
            diff = (expected - got).abs().max().item() if expected.shape == got.shape else float("nan")
            raise ExportError(
                f"{e.folder} loaded back with timm.create_model('local-dir:...') gives other logits than the trained "
                f"{e.name} on {len(batch)} test images (max |difference| {diff:.3g}): not exported"
            )
        top1[e.name] = evaluate(loaded, create_eval_loader(recipe, test), device=torch.device("cpu"))["top1"]
    return top1


def cards_step(exported: Sequence[Exported], folder: Path) -> list[Path]:
    """Copy each export's card, ``config.json`` and ``recipe.yaml`` (never the weights) to ``folder/<name>/``.

    Cards an earlier demo wrote to ``folder`` (sub-folders holding only those files, with a timm-recipes
    ``config.json``) are removed first, so that a variant whose tag changed leaves no stale card behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(p for p in folder.iterdir() if _is_generated_card(p)):
        shutil.rmtree(old)
    written = []
    for e in exported:
        (folder / e.name).mkdir()
        for file in CARD_FILES:
            shutil.copyfile(e.folder / file, folder / e.name / file)
        written.append(folder / e.name / "README.md")
    (folder / "README.md").write_text(_cards_index(exported), encoding="utf-8")
    return written


def _is_generated_card(path: Path) -> bool:
    if not path.is_dir() or not {p.name for p in path.iterdir()} <= set(CARD_FILES):
        return False
    try:
        return "timm_recipes" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _cards_index(exported: Sequence[Exported]) -> str:
    rows = []
    for e in exported:
        cfg = json.loads((e.folder / "config.json").read_text(encoding="utf-8"))["pretrained_cfg"]
        test = cfg.get("test_input_size") or cfg["input_size"]
        rows.append(f"| [`{e.name}`]({e.name}/README.md) | {e.variant} | {cfg['input_size'][-1]} px | {test[-1]} px |")
    return (
        "# Model cards of the weights this project trained\n\n"
        "Written by the built-in demo (`timm-recipes demo --cards model_cards`), which trains the `demo` recipe on "
        "the built-in digits, runs FixRes and exports the weights; every number in a card was measured by that run. "
        "The weights themselves are not kept in the repository: the demo writes them to `<run>/export/<name>/`, "
        "and `--push OWNER` publishes them to the Hugging Face Hub.\n\n"
        "| Card | Weights | Train size | Test size |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def push_step(exported: Sequence[Exported], *, private: bool, overwrite: bool) -> list[PublishResult]:
    """Step 5 (``--push``): publish each export in one commit to its repository."""
    from timm_recipes.hub import publish

    return [publish(e.folder, e.repo_id, private=private, overwrite=overwrite) for e in exported if e.repo_id]


# ------------------------------------------------------------------------------------------------ the report


def report(
    recipe: Recipe,
    result: FitResult,
    fixres: FixResResult | None,
    exported: Sequence[Exported],
    reloaded: dict[str, float],
    cards: Sequence[Path],
    published: Sequence[PublishResult],
    times: dict[str, float],
) -> None:
    """The accuracies (raw, EMA, FixRes), the exports and cards, and the wall time of each step."""
    final, aug = result.final, recipe.aug
    split = "test" if "test_top1" in final else "val"
    size = f"{aug.test_size} px crop {aug.test_crop_pct:g}" + (
        " (train size)" if aug.test_size == aug.train_size else ""
    )
    rows = [("raw", size, final.get(f"{split}_top1")), ("EMA", size, final.get(f"ema_{split}_top1"))]
    if fixres is not None:
        chosen, acc = f"{fixres.test_size} px crop {fixres.test_crop_pct:g}", fixres.accuracy
        start = "EMA" if fixres.weights == "ema" else "raw"
        if aug.test_size != aug.train_size:
            rows.append((start, f"{fixres.train_size} px crop {aug.test_crop_pct:g} (train size)", acc["train_size"]))
        rows += [
            (start, f"{chosen} (FixRes test size, before)", acc["test_size_before"]),
            ("FixRes", f"{chosen} (after fine-tuning)", acc["test_size_after"]),
        ]
    print(f"\n== timm-recipes demo: {split} top-1, single centre crop ==")
    for weights, where, value in rows:
        if value is not None:
            print(f"  {weights:7s} {where:42s} {value:6.2f} %")
    if fixres is not None and fixres.test_size == fixres.train_size:
        print(f"  (FixRes kept the train size: no larger test size did better on {fixres.holdout_split}; see above)")
    print("exports (loaded back with timm.create_model('local-dir:...'): identical logits on a fixed test batch):")
    for e in exported:
        print(f"  {e.name:34s} {e.folder}")
        print(f"  {'':34s} reloaded {split} top-1 {reloaded[e.name]:.2f} %; card {e.card}")
    for card in cards:
        print(f"  card copy: {card}")
    for p in published:
        print(f"  published: {p.commit_url}  (timm.create_model('hf-hub:{p.repo_id}', pretrained=True))")
    steps = ", ".join(f"{step} {seconds / 60:.1f} min" for step, seconds in times.items())
    print(f"wall time: {steps}; total {sum(times.values()) / 60:.1f} min")


def run(args: argparse.Namespace) -> int:
    recipe = demo_recipe(args.overrides)
    target = push_target(args.push)
    times: dict[str, float] = {}
    with timed(times, "training"):
        result = train_step(recipe, args.output)
    report_training(result, times["training"])
    if result.best_checkpoint is None:
        raise RuntimeError(f"the run in {result.run_dir} saved no best checkpoint: nothing to export")
    fixres = None
    if recipe.fixres.enabled:
        with timed(times, "FixRes"):
            fixres = fixres_step(result)
    with timed(times, "export + load-back"):
        exported = export_step(result, fixres, target)
        reloaded = load_back_step(exported, recipe)
    cards = cards_step(exported, args.cards) if args.cards is not None else []
    published: list[PublishResult] = []
    if target is not None:
        with timed(times, "publishing"):
            published = push_step(exported, private=args.private, overwrite=args.overwrite)
    report(recipe, result, fixres, exported, reloaded, cards, published, times)
    return 0

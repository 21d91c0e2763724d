"""Ensembles: `timm-recipes train --seeds`, `timm-recipes evaluate` with several checkpoints, refused combinations.

Tiny settings: the real digits written as an image folder (6 per class and split, 16 px), recipe_resnet18, batches
of 16, 2 epochs, one thread. The ensemble's numbers are checked against logits computed by hand: each checkpoint's
``ema.safetensors`` loaded into a fresh ``timm.create_model`` and run over the test images, the logits averaged.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from timm_recipes.cli import main
from timm_recipes.cli.evaluate import check_ensemble_members, evaluate_checkpoints
from timm_recipes.config import apply_overrides, save_recipe
from timm_recipes.data.datasets import DigitsDataset, ImageFolderDataset
from timm_recipes.recipes import get_preset, load_recipe
from timm_recipes.train.checkpoint import open_checkpoint
from timm_recipes.train.trainer import build_eval_dataset, fit

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return DigitsDataset.export_folder(tmp_path_factory.mktemp("digits") / "data", size=16, per_class=6)


def _recipe(root: Path, **overrides):
    changes = {
        "data.dataset": "folder", "data.root": str(root), "data.batch_size": 16, "data.num_workers": 0,
        "aug.train_size": 16, "aug.scale_range": [16, 20], "aug.test_size": 16, "aug.test_crop_pct": 1.0,
        "schedule.epochs": 2, "schedule.warmup_epochs": 0.0, "ema.every_k": 1, "ema.decay": 0.9,
        "run.patience": None, "run.progress": False,
    }  # fmt: skip
    return apply_overrides(get_preset("demo"), {**changes, **overrides})


@pytest.fixture(scope="module")
def seeds_run(data_root, tmp_path_factory) -> tuple[int, str, Path]:
    """``timm-recipes train --seeds 0,1`` in-process."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("seeds")
    recipe_file = save_recipe(_recipe(data_root), base / "tiny.yaml")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--recipe", str(recipe_file), "--seeds", "0,1", "--output", str(base / "tiny")])
    return code, printed.getvalue(), base


def _logits_by_hand(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """EMA weights of the best checkpoint in a fresh timm model, over the test images, no library evaluation code."""
    ckpt = open_checkpoint(run, tag="best")
    model = timm.create_model(ckpt.model_name, num_classes=ckpt.num_classes)
    model.load_state_dict(load_file(ckpt.path / "ema.safetensors"))
    dataset = build_eval_dataset(load_recipe(run / "recipe.yaml"), "test")
    images, targets = zip(*(dataset[i] for i in range(len(dataset))))
    with torch.no_grad():
        return model.eval()(torch.stack(images)), torch.tensor(targets)


def _by_hand_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    top5 = logits.topk(5, dim=1).indices
    return {
        "top1": 100.0 * (logits.argmax(1) == targets).sum().item() / len(targets),
        "top5": 100.0 * (top5 == targets[:, None]).any(1).sum().item() / len(targets),
        "loss": F.cross_entropy(logits, targets).item(),
    }


def test_train_seeds_trains_each_seed_then_reports_the_ensemble(seeds_run) -> None:
    code, printed, base = seeds_run
    assert code == 0
    runs = [base / "tiny-seed0", base / "tiny-seed1"]
    assert "seed 0:" in printed and "seed 1:" in printed and "ensemble: mean of 2 models' logits" in printed
    assert "ensemble top-1 gain:" in printed
    report = json.loads((base / "tiny-seeds.json").read_text())
    assert report["seeds"] == [0, 1] and report["split"] == "test"
    for run, seed, entry in zip(runs, (0, 1), report["models"]):
        assert open_checkpoint(run).recipe()["run"]["seed"] == seed
        final = json.loads((run / "final.json").read_text())  # fit's own evaluation of the same best EMA weights
        assert entry["weights"] == "ema" and entry["top1"] == final["ema_test_top1"] and entry["n"] == 60
        assert entry["loss"] == pytest.approx(final["ema_test_loss"], rel=1e-6)
    a, b = (open_checkpoint(run).weights("model") for run in runs)
    assert not torch.equal(a["fc.weight"], b["fc.weight"])  # two different models


def test_ensemble_is_the_average_of_the_logits(seeds_run) -> None:
    report = json.loads((seeds_run[2] / "tiny-seeds.json").read_text())
    outputs = [_logits_by_hand(seeds_run[2] / f"tiny-seed{s}") for s in (0, 1)]
    targets = outputs[0][1]
    for (logits, _), entry in zip(outputs, report["models"]):
        by_hand = _by_hand_metrics(logits, targets)
        assert entry["top1"] == by_hand["top1"] and entry["top5"] == by_hand["top5"]
        assert entry["loss"] == pytest.approx(by_hand["loss"], rel=1e-5)
    mean = (outputs[0][0] + outputs[1][0]) / 2
    by_hand = _by_hand_metrics(mean, targets)
    assert report["ensemble"]["members"] == 2 and report["ensemble"]["n"] == 60
    assert report["ensemble"]["top1"] == by_hand["top1"] and report["ensemble"]["top5"] == by_hand["top5"]
    assert report["ensemble"]["loss"] == pytest.approx(by_hand["loss"], rel=1e-5)


def test_members_of_different_architectures_are_averaged(seeds_run, data_root, tmp_path) -> None:
    other = fit(
        _recipe(data_root, **{"model.name": "test_resnet", "model.drop_path_rate": None}),
        output_dir=tmp_path / "other",
        stop_after_epoch=1,
    )
    runs = [seeds_run[2] / "tiny-seed0", other.run_dir]
    report = evaluate_checkpoints([str(r) for r in runs], split="test")
    assert [m["model"] for m in report["models"]] == ["recipe_resnet18", "test_resnet"]
    outputs = [_logits_by_hand(r) for r in runs]
    by_hand = _by_hand_metrics((outputs[0][0] + outputs[1][0]) / 2, outputs[0][1])
    assert report["ensemble"]["top1"] == by_hand["top1"]
    assert report["ensemble"]["loss"] == pytest.approx(by_hand["loss"], rel=1e-5)


def test_mismatched_class_counts_names_or_images_are_refused(seeds_run, data_root, tmp_path, capsys) -> None:
    five = tmp_path / "five"
    for split in ("train", "val", "test"):
        for digit in "01234":
            shutil.copytree(data_root / split / digit, five / split / digit)
    small = fit(_recipe(five, **{"model.num_classes": 5}), output_dir=tmp_path / "five-run", stop_after_epoch=1)
    seed0 = seeds_run[2] / "tiny-seed0"
    assert main(["evaluate", str(seed0), str(small.run_dir)]) == 1
    err = capsys.readouterr().err
    assert "(recipe_resnet18, 5 classes)" in err and "(recipe_resnet18, 10 classes)" in err
    assert "the class counts must match" in err
    # Same class count, other class names; the same classes on other images: both refused, naming the member.
    ckpts = [open_checkpoint(seed0, tag="best")] * 2
    reference = ImageFolderDataset(data_root / "test")
    renamed = tmp_path / "renamed"
    for digit in "0123456789":
        shutil.copytree(data_root / "test" / digit, renamed / f"digit-{digit}")
    with pytest.raises(ValueError, match="cannot ensemble b with a: their class names differ"):
        check_ensemble_members(["a", "b"], ckpts, [reference, ImageFolderDataset(renamed)])
    fewer = tmp_path / "fewer"
    shutil.copytree(data_root / "test", fewer)
    sorted((fewer / "7").iterdir())[0].unlink()
    with pytest.raises(ValueError, match=r"cannot ensemble b with a: their recipes evaluate different images \(59 vs"):
        check_ensemble_members(["a", "b"], ckpts, [reference, ImageFolderDataset(fewer)])
    check_ensemble_members(["a", "b"], ckpts, [reference, ImageFolderDataset(data_root / "test")])  # same: accepted


def test_seeds_bad_input_and_resume(seeds_run, capsys) -> None:
    base = seeds_run[2]
    recipe = str(base / "tiny.yaml")
    for seeds, message in (("1,1", "distinct"), ("0,x", "comma-separated"), ("-1", "non-negative")):
        assert main(["train", "--recipe", recipe, "--seeds", seeds]) == 2
        err = capsys.readouterr().err
        assert "--seeds must be" in err and message in err
    assert main(["train", "--recipe", recipe, "--seeds", "0", "--resume", str(base / "tiny-seed0")]) == 2
    assert "--resume alone" in capsys.readouterr().err
    # --resume continues each seed's run: both are finished, so nothing is trained again.
    before = [open_checkpoint(base / f"tiny-seed{s}").path for s in (0, 1)]
    assert main(["train", "--recipe", recipe, "--seeds", "0,1", "--resume", "--output", str(base / "tiny")]) == 0
    assert [open_checkpoint(base / f"tiny-seed{s}").path for s in (0, 1)] == before
    assert not (base / "tiny-seed0-2").exists()
    assert "ensemble: mean of 2 models' logits" in capsys.readouterr().out

"""fit(): exact resume (clean stop and SIGKILL), early stopping, run files, bad input, the CLI in-process.

Tiny settings: the real digits written as an image folder (6 per class and split, 16 px), recipe_resnet18,
batches of 16 (3 steps per epoch), 4 epochs, one thread, no loader workers.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from timm_recipes.cli import main
from timm_recipes.cli.demo import report_training
from timm_recipes.config import RecipeError, apply_overrides, recipe_to_dict, save_recipe
from timm_recipes.data.datasets import DigitsDataset
from timm_recipes.recipes import get_preset, load_recipe
from timm_recipes.train.checkpoint import CheckpointError, open_checkpoint
from timm_recipes.train.engine import collect_logits, metrics_from_logits
from timm_recipes.train.trainer import (
    EarlyStopping,
    FitResult,
    build_eval_dataset,
    create_eval_loader,
    fit,
    load_checkpoint_model,
)

EPOCHS = 4


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return DigitsDataset.export_folder(tmp_path_factory.mktemp("digits") / "data", size=16, per_class=6)


def _recipe(root: Path, **overrides):
    changes = {
        "data.dataset": "folder", "data.root": str(root), "data.batch_size": 16, "data.num_workers": 0,
        "aug.train_size": 16, "aug.scale_range": [16, 20], "aug.test_size": 16, "aug.test_crop_pct": 1.0,
        "schedule.epochs": EPOCHS, "schedule.warmup_epochs": 1.0, "ema.every_k": 1, "ema.decay": 0.9,
        "run.patience": None, "run.progress": False, "run.seed": 7,
    }  # fmt: skip
    return apply_overrides(get_preset("demo"), {**changes, **overrides})


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory) -> FitResult:
    torch.set_num_threads(1)
    return fit(_recipe(data_root), output_dir=tmp_path_factory.mktemp("runs") / "full")


def _assert_same_weights(run_a: Path, run_b: Path) -> None:
    a, b = open_checkpoint(run_a), open_checkpoint(run_b)
    assert a.epoch == b.epoch == EPOCHS and a.step == b.step
    for which in ("model", "ema"):
        wa, wb = a.weights(which), b.weights(which)
        assert wa.keys() == wb.keys()
        different = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not different, f"{which} tensors differ: {different[:5]}"


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith(("_s", "per_s"))} for r in history]


def test_two_epochs_then_resume_equals_four_in_one_go(uninterrupted, data_root, tmp_path) -> None:
    run = tmp_path / "split"
    half = fit(_recipe(data_root), output_dir=run, stop_after_epoch=2)
    assert half.epochs_completed == 2 and open_checkpoint(run).epoch == 2
    resumed = fit(_recipe(data_root), output_dir=run, resume=True)
    assert resumed.epochs_completed == EPOCHS
    _assert_same_weights(uninterrupted.run_dir, run)
    assert _comparable(resumed.history) == _comparable(uninterrupted.history)  # losses, accuracies, lr, best
    assert len((run / "metrics.csv").read_text().splitlines()) == EPOCHS + 1  # no duplicated epochs


def test_sigkill_mid_run_then_resume_equals_uninterrupted(uninterrupted, data_root, tmp_path) -> None:
    recipe_file = save_recipe(_recipe(data_root), tmp_path / "recipe.yaml")
    run = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from timm_recipes.recipes import load_recipe
        from timm_recipes.train.trainer import fit
        fit(load_recipe({str(recipe_file)!r}), output_dir={str(run)!r})
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    tag = run / "checkpoints" / "last.json"
    deadline = time.monotonic() + 120
    while not tag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # as soon as the first checkpoint is published: in epoch 2
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    killed_at = open_checkpoint(run).epoch
    assert killed_at < EPOCHS, "the process finished before it could be killed"
    resumed = fit(load_recipe(recipe_file), output_dir=run, resume=True)
    assert resumed.epochs_completed == EPOCHS
    _assert_same_weights(uninterrupted.run_dir, run)
    assert _comparable(resumed.history) == _comparable(uninterrupted.history)


def test_run_folder_holds_recipe_metrics_curves_and_checkpoints(uninterrupted, data_root) -> None:
    run = uninterrupted.run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_top1"]) for r in rows] == [r["val_top1"] for r in records]
    for key in ("train_loss", "lr", "val_top5", "ema_val_top1", "ema_val_top5", "train_images_per_s", "epoch_time_s"):
        assert all(r[key] is not None for r in records), key
    assert records[-1]["lr"] == 0.0  # the cosine schedule ends at min_lr
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_recipe(run / "recipe.yaml") == _recipe(data_root)
    # The best checkpoint is the first epoch with the highest EMA val top-1 (the default monitor).
    values = [(r["ema_val_top1"], -r["ema_val_loss"]) for r in records]
    best_epoch = values.index(max(values)) + 1  # highest top-1, ties broken by the lower loss
    assert uninterrupted.monitor == "ema" and uninterrupted.best_epoch == best_epoch
    best = open_checkpoint(run, tag="best")
    assert best.epoch == best_epoch and best.path == uninterrupted.best_checkpoint
    assert best.recipe() == recipe_to_dict(load_recipe(run / "recipe.yaml"))  # the recipe inside the checkpoint
    final = json.loads((run / "final.json").read_text())
    assert final == uninterrupted.final and final["epoch"] == best_epoch
    assert final["ema_val_top1"] == pytest.approx(max(values)[0])
    assert {"test_top1", "ema_test_top1", "test_top5", "ema_test_loss"} <= final.keys()


def test_early_stopping_rule() -> None:
    stopper = EarlyStopping(patience=2)
    improved = [stopper.update(v, e) for e, v in enumerate([10.0, 12.0, 12.0, 11.0], start=1)]
    assert improved == [True, True, False, False] and stopper.should_stop
    assert (stopper.best, stopper.best_epoch) == (12.0, 2)
    assert not EarlyStopping(None).should_stop
    # Equal top-1: a strictly lower validation loss is a new best (saturated small validation sets).
    ties = EarlyStopping(patience=2)
    updates = [(99.0, 0.5), (99.0, 0.4), (99.0, 0.4), (98.0, 0.1), (99.0, 0.3)]
    assert [ties.update(t, e, loss) for e, (t, loss) in enumerate(updates, start=1)] == [True, True, False, False, True]
    assert (ties.best_epoch, ties.best_loss, ties.bad_epochs) == (5, 0.3, 0)


def test_fit_stops_early_on_a_plateau_and_keeps_the_best(data_root, tmp_path) -> None:
    # lr = 0 and a model without BatchNorm statistics (GroupNorm): the validation metric cannot move after epoch 1.
    recipe = _recipe(
        data_root, **{"model.name": "test_efficientnet_gn", "model.drop_path_rate": None, "optim.lr": 0.0,
                      "schedule.epochs": 8, "run.patience": 2}
    )  # fmt: skip
    result = fit(recipe, output_dir=tmp_path / "plateau")
    assert result.stopped_early and result.epochs_completed == 3 and result.best_epoch == 1
    assert len({r["ema_val_top1"] for r in result.history}) == 1
    assert open_checkpoint(result.run_dir, tag="best").epoch == 1
    assert open_checkpoint(result.run_dir, tag="last").epoch == 3


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_bad_input_names_the_problem_and_writes_nothing(data_root, tmp_path, uninterrupted) -> None:
    out = tmp_path / "never"
    cases = [
        ({"data.root": str(tmp_path / "missing")}, FileNotFoundError, "missing"),
        ({"data.root": str(data_root / "train")}, FileNotFoundError, "no train/ folder"),
        ({"data.batch_size": 61}, ValueError, r"data\.batch_size=61 is larger than the 60 training images"),
        ({"model.num_classes": 12}, ValueError, r"model\.num_classes=12"),
        ({"schedule.epochs": 1, "schedule.warmup_epochs": 0.99}, ValueError, r"schedule\.warmup_epochs"),
        ({"run.amp": "fp16"}, ValueError, r"run\.amp='fp16' needs a CUDA device"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            fit(_recipe(data_root, **overrides), output_dir=out)
    with pytest.raises(RecipeError, match=r"optim\.lr"):
        _recipe(data_root, **{"optim.lr": -0.1})
    empty = tmp_path / "empty"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (empty / split / cls).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"train/a'? contains no image"):
        fit(_recipe(empty, **{"model.num_classes": 2}), output_dir=out)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        fit(_recipe(data_root), output_dir=out, resume=True)
    assert not out.exists()
    # A checkpoint of another architecture, then a corrupt one: clear errors, and the run loses nothing.
    run = uninterrupted.run_dir
    before = _digest(run)
    other_arch = _recipe(data_root, **{"model.name": "test_resnet", "model.drop_path_rate": None})
    with (
        pytest.warns(UserWarning, match=r"differs from the checkpoint's in model\.drop_path_rate, model\.name"),
        pytest.raises(CheckpointError, match=r"holds recipe_resnet18 with num_classes=10.*test_resnet"),
    ):
        fit(other_arch, resume=run)
    assert _digest(run) == before
    victim = open_checkpoint(run).path / "state.safetensors"
    intact = victim.read_bytes()
    victim.write_bytes(intact[:-10])
    try:
        with pytest.raises(CheckpointError, match=r"state\.safetensors is corrupt"):
            fit(_recipe(data_root), resume=run)
        changed = {k for k, v in _digest(run).items() if before.get(k) != v}
        assert changed == {str(victim.relative_to(run))}
    finally:
        victim.write_bytes(intact)


@pytest.fixture(scope="module")
def cli_run(data_root, tmp_path_factory) -> tuple[int, str, Path, Path]:
    """``timm-recipes train`` in-process into a folder that already holds a run."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cli")
    recipe_file = save_recipe(_recipe(data_root, **{"run.seed": 3}), base / "tiny.yaml")
    out = base / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")  # the folder holds a run: an explicit --output there is refused
    args = ["train", "--recipe", str(recipe_file), "--set", "schedule.epochs=2", "--set", "schedule.warmup_epochs=0"]
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert main([*args, "--output", str(out)]) == 2
    assert "already holds a run: add --resume to continue it or --overwrite" in errors.getvalue()
    assert len(errors.getvalue().strip().splitlines()) == 1
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([*args, "--output", str(base / "run-2")])
    return code, printed.getvalue(), base / "run-2", out


def test_cli_train_in_process(cli_run, capsys) -> None:
    code, printed, run, taken = cli_run
    assert code == 0
    assert f"run folder: {run}" in printed and "test top-1 (EMA)" in printed
    assert "optimizer" in printed and "recipe_resnet18" in printed  # the resolved recipe's summary, first
    assert open_checkpoint(run).epoch == 2 and (taken / "metrics.jsonl").read_text() == ""
    # Resuming a finished run (recipe from the checkpoint) trains nothing more and keeps the checkpoint.
    last = open_checkpoint(run).path
    assert main(["train", "--resume", str(run)]) == 0
    assert open_checkpoint(run).path == last
    assert "run folder" in capsys.readouterr().out


def test_cli_evaluate_reports_each_model_and_the_logit_average(uninterrupted, cli_run, tmp_path, capsys) -> None:
    runs = [uninterrupted.run_dir, cli_run[2]]
    report_file = tmp_path / "eval.json"
    args = ["evaluate", *map(str, runs), "--split", "test", "--weights", "raw", "--json", str(report_file)]
    assert main(args) == 0
    assert "ensemble: mean of 2 models' logits" in capsys.readouterr().out
    report = json.loads(report_file.read_text())
    logits = []
    for run in runs:  # by hand: each model's logits on the test split, then their mean
        model, recipe, _ = load_checkpoint_model(run, which="raw", tag="best")
        loader = create_eval_loader(recipe, build_eval_dataset(recipe, "test"))
        out, targets = collect_logits(model, loader, device=torch.device("cpu"))
        logits.append(out)
    for entry, out in zip(report["models"], logits):
        assert entry["top1"] == metrics_from_logits(out, targets)["top1"]
    by_hand = metrics_from_logits((logits[0] + logits[1]) / 2, targets)
    assert report["ensemble"]["top1"] == by_hand["top1"] and report["ensemble"]["n"] == 60
    assert report["ensemble"]["loss"] == pytest.approx(by_hand["loss"], rel=1e-6)


def test_demo_report_prints_raw_and_ema_accuracy(uninterrupted, capsys) -> None:
    report_training(uninterrupted, 12.0)
    printed = capsys.readouterr().out
    assert "EMA weights" in printed and "raw weights" in printed and str(uninterrupted.run_dir) in printed
    assert f"{uninterrupted.final['ema_test_top1']:6.2f} %" in printed

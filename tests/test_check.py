"""`timm-recipes check`: the data survey on real image files (a leak across splits, an empty class, an unreadable
file), the initial-loss expectation against a hand computation, the overfit check (healthy model, lr 0), the
pre-training hook, and the schedule pictures."""

from __future__ import annotations

import itertools
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from timm_recipes.config import apply_overrides
from timm_recipes.data.datasets import DigitsDataset
from timm_recipes.data.survey import iter_raw_samples
from timm_recipes.train.check import expected_initial_loss, measure_initial_loss
from timm_recipes.train.journey import default_journey
from timm_recipes.train.sanity import SanityCheckError, run_checks

pytestmark = pytest.mark.usefixtures("one_thread")


def _digits_recipe(**extra):
    return apply_overrides(
        default_journey().base,
        {"data.train_per_class": 2, "data.image_size": 16, "aug.train_size": 16, "aug.test_size": 16, **extra},
    )


# ------------------------------------------------------------------------------------------------ initial loss
def test_expected_initial_loss_by_hand() -> None:
    ln10 = math.log(10)
    one_hot = torch.nn.functional.one_hot(torch.tensor([3, 7]), 10).float()
    e = expected_initial_loss(one_hot)
    assert e["cross_entropy"] == pytest.approx(ln10) and e["target_entropy"] == 0.0 and e["kl"] == pytest.approx(ln10)
    # label smoothing eps = 0.1, C = 10: true class 0.91, the nine others 0.01 each
    smooth = torch.full((1, 10), 0.01)
    smooth[0, 4] = 0.91
    h = -(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01))  # = 0.50029
    e = expected_initial_loss(smooth)
    assert e["cross_entropy"] == pytest.approx(ln10) and e["target_entropy"] == pytest.approx(h)
    assert h == pytest.approx(0.50029, abs=1e-5) and e["kl"] == pytest.approx(ln10 - 0.50029, abs=1e-5)
    # a Mixup pair with lambda = 0.7 (no smoothing)
    mixed = torch.zeros(1, 10)
    mixed[0, 2], mixed[0, 5] = 0.7, 0.3
    e = expected_initial_loss(mixed)
    assert e["cross_entropy"] == pytest.approx(ln10)
    assert e["target_entropy"] == pytest.approx(-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)))  # 0.61086
    # a model that predicts exactly uniformly measures exactly ln C, whatever the targets
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    torch.nn.init.zeros_(flat[1].weight)
    torch.nn.init.zeros_(flat[1].bias)
    for targets in (one_hot, smooth.expand(2, 10), mixed.expand(2, 10)):
        assert measure_initial_loss(flat, torch.randn(2, 4), targets) == pytest.approx(ln10)
    with pytest.raises(ValueError, match="probabilities"):
        expected_initial_loss(torch.full((1, 10), 0.5))


def test_real_mixup_targets_still_expect_ln_c() -> None:
    from timm_recipes.data.mixing import MixupCutmix

    mixer = MixupCutmix(10, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, mode="elem",
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    _, soft = mixer(torch.zeros(8, 3, 8, 8), torch.arange(8))
    e = expected_initial_loss(soft)
    assert e["cross_entropy"] == pytest.approx(math.log(10))
    assert e["target_entropy"] > 0.5  # smoothing plus mixing: a higher floor than smoothing alone


# ------------------------------------------------------------------------------------------------ the data
def _write(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _folder(root, *, empty_class: bool):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b", "c"):
            if empty_class and split == "train" and cls == "c":
                (root / split / cls).mkdir(parents=True)
                continue
            for i in range(3):
                _write(root / split / cls / f"{i}.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    shutil.copyfile(root / "train" / "a" / "1.png", root / "val" / "b" / "leak.png")  # train/val leakage
    (root / "val" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return root


@pytest.mark.parametrize("empty_class", [False, True])
def test_check_reports_leak_empty_class_and_unreadable_file(tmp_path, empty_class: bool) -> None:
    root = _folder(tmp_path / "data", empty_class=empty_class)
    folder = {"data.dataset": "folder", "data.root": str(root), "data.train_per_class": None, "model.num_classes": 3}
    recipe = apply_overrides(_digits_recipe(), folder)
    report = run_checks(recipe, tmp_path / "out", checks=("data",))
    status = {c.name: c for c in report.checks}
    assert not report.ok
    assert status["duplicates"].failed and "train and val" in status["duplicates"].message
    assert "a/1.png" in status["duplicates"].message and "b/leak.png" in status["duplicates"].message
    assert status["unreadable"].failed and "a/broken.png" in status["unreadable"].message
    counts = report.survey["splits"]["val"]["per_class"]
    assert counts == {"a": 4, "b": 4, "c": 3}  # the broken file is counted, and reported, not dropped silently
    if empty_class:  # the trainer refuses such data; the check still surveys it and names the class
        assert status["datasets"].failed and "contains no image" in status["datasets"].message
        assert status["class_counts"].failed and "'c' in train" in status["class_counts"].message
    else:
        assert status["datasets"].status == "pass" and status["class_counts"].status == "pass"
        assert (tmp_path / "out" / "preview_raw.png").stat().st_size > 0
        assert (tmp_path / "out" / "preview_augmented.png").stat().st_size > 0
    sizes = report.survey["splits"]["train"]["sizes"]
    assert sizes["height"]["median"] == 12 and sizes["aspect_ratio"]["max"] == pytest.approx(10 / 12)
    assert (tmp_path / "out" / "sanity_check.json").is_file()


def test_survey_statistics_and_raw_iteration_duck_typing() -> None:
    ds = DigitsDataset("val", size=8)
    raw = list(iter_raw_samples(ds))
    assert len(raw) == len(ds) and all(np.array_equal(r.image, ds.image(i)) for i, r in enumerate(raw[:5]))

    spread = list(iter_raw_samples(ds, limit=10))  # spread evenly from the first to the last image
    where = [[r.key for r in raw].index(r.key) for r in spread]
    assert where[0] == 0 and where[-1] == len(ds) - 1
    assert all(abs((b - a) - (len(ds) - 1) / 9) <= 1 for a, b in itertools.pairwise(where))

    class Shards:  # a source with its own raw iteration (encoded bytes or arrays), like a WebDataset reader
        def iter_raw(self):
            _, png = cv2.imencode(".png", np.full((4, 6, 3), 7, np.uint8))
            yield "k0", png.tobytes(), 1
            yield "k1", np.zeros((5, 5, 3), np.uint8), 0
            yield "k2", b"garbage", 0

    assert len(list(iter_raw_samples(Shards(), limit=2))) == 2
    got = list(iter_raw_samples(Shards()))
    assert got[0].image.shape == (4, 6, 3) and int(got[0].image[0, 0, 0]) == 7 and got[0].label == 1
    assert got[1].image.shape == (5, 5, 3) and got[2].image is None and "k2" in got[2].error

    from timm_recipes.data.survey import survey_splits

    s = survey_splits({"val": (ds.classes, iter(raw))})["splits"]["val"]
    pixels = np.stack([r.image for r in raw]).astype(np.float64) / 255.0
    assert s["mean"] == pytest.approx(pixels.reshape(-1, 3).mean(0).tolist())
    assert s["std"] == pytest.approx(pixels.reshape(-1, 3).std(0).tolist())
    assert sum(s["per_class"].values()) == len(ds)


# ------------------------------------------------------------------------------------------------ overfit, hook
def test_overfit_passes_on_a_healthy_model_and_fails_at_lr_zero(tmp_path) -> None:
    healthy = run_checks(_digits_recipe(), checks=("initial_loss", "overfit"), overfit_steps=150)
    assert healthy.ok, healthy.text()
    overfit = healthy.checks[-1]
    assert overfit.details["steps_to_100"] is not None and overfit.details["steps_to_100"] <= 150
    assert abs(healthy.checks[-2].details["measured"] - math.log(10)) < 0.25

    frozen = run_checks(_digits_recipe(**{"optim.lr": 0.0}), checks=("overfit",), overfit_steps=30)
    check = frozen.checks[-1]
    assert check.failed and "optim.lr is 0" in check.message and "30 steps" in check.message
    assert check.details["first_loss"] == pytest.approx(check.details["last_loss"])  # nothing moved


def test_sanity_check_hook_stops_a_run_before_anything_is_written(tmp_path) -> None:
    from timm_recipes.train.trainer import fit

    recipe = _digits_recipe(**{"run.sanity_check": True, "optim.lr": 0.0, "schedule.epochs": 1,
                               "schedule.milestones_epochs": [], "data.batch_size": 10})  # fmt: skip
    with pytest.raises(SanityCheckError, match=r"overfit: did not reach 100 %.*optim\.lr is 0"):
        fit(recipe, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_check_command_exits_nonzero_on_failure(tmp_path, capsys) -> None:
    from timm_recipes.cli import main
    from timm_recipes.config import save_recipe

    path = save_recipe(_digits_recipe(), tmp_path / "r.yaml")
    code = main(["check", "--recipe", str(path), "--only", "overfit", "--overfit-steps", "5", "--set", "optim.lr=0",
                 "--output", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] overfit" in out and "1 check(s) failed" in out
    assert (tmp_path / "out" / "sanity_check.json").is_file()


# ------------------------------------------------------------------------------------------------ schedules
def test_schedule_trace_is_the_trainers_schedule(tmp_path) -> None:
    from timm_recipes.train.schedule_plot import lecture_schedules, plot_schedules, schedule_trace

    recipe = apply_overrides(_digits_recipe(), {"schedule.name": "cosine", "schedule.epochs": 10,
                                                "schedule.warmup_epochs": 2, "optim.lr": 0.1})  # fmt: skip
    tr = schedule_trace(recipe, 5)  # 50 steps, 10 of warm-up from 0
    lr = tr["lr"]
    assert len(lr) == 51 and lr[0] == 0.0 and lr[5] == pytest.approx(0.05) and lr[10] == pytest.approx(0.1)
    assert lr[30] == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * 20 / 40)))  # the lecture's cosine
    assert lr[50] == pytest.approx(0.0, abs=1e-12) and set(tr["momentum"]) == {0.9}
    variants = lecture_schedules(recipe)
    assert [r.schedule.name for _, r in variants] == ["step", "cosine", "linear", "cosine", "one_cycle"]
    step = schedule_trace(variants[0][1], 5)["lr"]
    assert step[0] == step[14] == pytest.approx(0.1) and step[15] == pytest.approx(0.01)
    path = plot_schedules([(n, schedule_trace(r, 5)) for n, r in variants], tmp_path / "s.png")
    assert cv2.imread(str(path)).shape[1] > 1000

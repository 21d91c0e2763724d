"""The recipe journey: its statistics against a hand computation, resume, changed-definition detection, the data-
starved digits; one tiny journey (two train steps, FixRes, ensemble; one seed, one epoch, 8-pixel digits)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from timm_recipes.config import RecipeError, apply_overrides
from timm_recipes.data.datasets import DigitsDataset
from timm_recipes.train.journey import (
    Journey,
    JourneyError,
    JourneyStep,
    default_journey,
    journey_from_dict,
    plan_journey,
    run_journey,
)
from timm_recipes.train.journey_stats import journey_statistics, mean_std, paired_differences

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ statistics
def test_statistics_match_a_hand_computation() -> None:
    steps = [
        ("baseline", "train", {0: 90.0, 1: 92.0, 2: 91.0}),
        ("A", "train", {0: 91.0, 1: 94.0, 2: 91.5}),
        ("B", "train", {0: 90.5, 1: 95.0, 2: 93.0}),
        ("ensemble", "ensemble", {"ensemble": 96.0}),
    ]
    rows = journey_statistics(steps, [None, 0, 1, 2])
    # by hand: means 91, 92.1667, 92.8333; A - baseline = (1, 2, 0.5); B - A = (-0.5, 1, 1.5); B - base = (0.5, 3, 2)
    assert [r.mean for r in rows[:3]] == pytest.approx([91.0, 276.5 / 3, 278.5 / 3])
    assert rows[0].std == pytest.approx(1.0)  # deviations (-1, 1, 0): sqrt(2 / 2)
    assert rows[0].gain is None and rows[0].cumulative is None
    assert rows[1].gain == pytest.approx(3.5 / 3) and rows[1].gain_std == pytest.approx(math.sqrt(0.5833333333))
    assert rows[1].cumulative == pytest.approx(rows[1].gain)
    assert rows[2].gain == pytest.approx(2.0 / 3) and rows[2].gain_std == pytest.approx(math.sqrt(1.0833333333))
    assert rows[2].cumulative == pytest.approx(5.5 / 3) and rows[2].cumulative_std == pytest.approx(
        math.sqrt(1.5833333)
    )
    ens = rows[3]
    assert (ens.n, ens.std, ens.compared_to) == (1, None, "B")
    assert ens.gain == pytest.approx(96.0 - 278.5 / 3) and ens.cumulative == pytest.approx(5.0)


def test_paired_gain_spread_is_not_the_spread_of_the_accuracies() -> None:
    # the seeds differ by a lot, the step adds exactly 1 point to each: paired std 0, unpaired spread large
    rows = journey_statistics([("a", "train", {0: 80.0, 1: 90.0}), ("b", "train", {0: 81.0, 1: 91.0})])
    assert rows[1].gain == pytest.approx(1.0) and rows[1].gain_std == pytest.approx(0.0)
    assert rows[1].std == pytest.approx(math.sqrt(50.0))


def test_statistics_refuse_what_cannot_be_paired() -> None:
    assert mean_std([3.0]) == (3.0, None)
    with pytest.raises(ValueError, match="seeds \\[2\\]"):
        paired_differences({0: 1.0, 2: 1.0}, {0: 0.5, 1: 0.5})
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])
    with pytest.raises(ValueError, match="earlier step"):
        journey_statistics([("a", "train", {0: 1.0}), ("b", "train", {0: 2.0})], [None, 1])


# ------------------------------------------------------------------------------------------------ definition
def test_default_journey_follows_the_lecture_order() -> None:
    j = default_journey()
    names = [s.name for s in j.steps]
    assert names[0] == "baseline" and names[-2:] == ["FixRes", "ensemble"]
    assert names.index("warm-up + cosine") < names.index("Cutout") < names.index("Mixup") < names.index("EMA")
    assert j.seeds == (0, 1, 2) and j.base.data.train_per_class == 20
    plan = plan_journey(j, "x")
    last = plan[names.index("EMA")].recipe  # cumulative: everything before is still on
    assert (last.aug.cutout_p, last.optim.label_smoothing, last.mix.cutmix_alpha, last.ema.enabled) == (
        0.5,
        0.1,
        1.0,
        True,
    )
    assert plan[-1].source == plan[-2].source == names.index("EMA")


def test_a_changed_step_changes_its_fingerprint_and_every_later_one(tmp_path) -> None:
    j = default_journey()
    steps = list(j.steps)
    steps[3] = JourneyStep("Cutout", "train", {"aug.cutout_p": 0.25})
    changed = plan_journey(Journey(j.base, tuple(steps), j.seeds, j.name), tmp_path)
    original = plan_journey(j, tmp_path)
    same = [a.fingerprint == b.fingerprint for a, b in zip(original, changed)]
    assert same == [True, True, True] + [False] * (len(steps) - 3)


def test_malformed_definitions_are_refused() -> None:
    base = {"base": "demo", "steps": [{"name": "baseline"}]}
    assert journey_from_dict(base).steps[0].kind == "train"
    with pytest.raises(JourneyError, match="unique"):
        journey_from_dict({**base, "steps": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(JourneyError, match="baseline and must be a train step"):
        journey_from_dict({**base, "steps": [{"name": "f", "kind": "fixres"}]})
    with pytest.raises(JourneyError, match="kind must be one of"):
        journey_from_dict({**base, "steps": [{"name": "a", "kind": "magic"}]})
    with pytest.raises(JourneyError, match="only set fixres"):
        journey_from_dict({**base, "steps": [{"name": "a"}, {"name": "f", "kind": "fixres", "set": {"optim.lr": 1}}]})
    with pytest.raises(RecipeError, match=r"optim\.lrr"):
        plan_journey(journey_from_dict({**base, "steps": [{"name": "a", "set": {"optim.lrr": 1}}]}), "x")


def test_print_default_round_trips(capsys) -> None:
    from timm_recipes.cli import main

    assert main(["journey", "--print-default"]) == 0
    printed = journey_from_dict(yaml.safe_load(capsys.readouterr().out))
    assert [p.fingerprint for p in plan_journey(printed, "x")] == [
        p.fingerprint for p in plan_journey(default_journey(), "x")
    ]


# ------------------------------------------------------------------------------------------------ data-starved digits
def test_digits_train_per_class_keeps_k_per_class_and_leaves_val_test_alone() -> None:
    full = DigitsDataset("train")
    k5, k10 = DigitsDataset("train", train_per_class=5), DigitsDataset("train", train_per_class=10)
    assert np.bincount(k5.targets).tolist() == [5] * 10 and len(k10) == 100
    assert set(k5.indices) < set(k10.indices) < set(full.indices)  # nested, drawn from the train split
    assert (DigitsDataset("val", train_per_class=5).indices == DigitsDataset("val").indices).all()
    assert (DigitsDataset("test", train_per_class=5).indices == DigitsDataset("test").indices).all()
    with pytest.raises(ValueError, match="train_per_class=500 exceeds"):
        DigitsDataset("train", train_per_class=500)
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        DigitsDataset("train", train_per_class=0)
    with pytest.raises(RecipeError, match=r"data\.train_per_class: applies to the built-in digits only"):
        apply_overrides(default_journey().base, {"data.dataset": "folder", "data.root": "x"})


# ------------------------------------------------------------------------------------------------ a tiny journey
def _tiny(smoothing: float = 0.1) -> Journey:
    base = apply_overrides(
        default_journey().base,
        {
            "data.train_per_class": 2, "data.image_size": 8, "data.batch_size": 10, "aug.train_size": 8,
            "aug.test_size": 8, "schedule.epochs": 1, "schedule.milestones_epochs": [], "fixres.test_sizes": [8, 10],
            "fixres.epochs": 1,
        },
    )  # fmt: skip
    steps = (
        JourneyStep("baseline"),
        JourneyStep("label smoothing", "train", {"optim.label_smoothing": smoothing}),
        JourneyStep("FixRes", "fixres"),
        JourneyStep("ensemble", "ensemble"),
    )
    return Journey(base, steps, (0,), "tiny")


def test_tiny_journey_runs_resumes_and_refuses_a_changed_definition(tmp_path, capsys) -> None:
    out = tmp_path / "j"
    first = run_journey(_tiny(), out)
    assert (first.computed, first.reused) == (4, 0)
    names = [r.name for r in first.rows]
    assert names == ["baseline", "label smoothing", "FixRes: test size only", "FixRes", "ensemble"]
    by_name = {r.name: r for r in first.rows}
    stamp = json.loads((out / "01-label-smoothing" / "seed0.json").read_text())
    final = json.loads((out / "01-label-smoothing" / "seed0" / "final.json").read_text())
    assert by_name["label smoothing"].mean == stamp["top1"] == final["test_top1"]  # EMA off: the raw weights
    fixres = json.loads((out / "02-fixres" / "seed0" / "fixres.json").read_text())
    assert by_name["FixRes"].mean == fixres["accuracy"]["test_size_after"]
    assert by_name["FixRes: test size only"].mean == fixres["accuracy"]["test_size_before"]
    # FixRes starts from the step's weights: its accuracy at the recipe's test size is the step's test top-1
    assert fixres["accuracy"]["recipe_test"] == pytest.approx(final["test_top1"])
    # one seed: the "ensemble" is that one model, evaluated by the ensemble code: the same number
    assert by_name["ensemble"].mean == pytest.approx(final["test_top1"])
    assert by_name["label smoothing"].gain == pytest.approx(final["test_top1"] - by_name["baseline"].mean)
    for f in ("json", "csv", "md", "png"):
        assert first.files[f].stat().st_size > 0
    saved = json.loads(first.files["json"].read_text())
    assert [r["name"] for r in saved["rows"]] == names
    assert "| label smoothing | 1 |" in first.files["md"].read_text()

    again = run_journey(_tiny(), out)  # nothing missing: nothing trained
    assert (again.computed, again.reused) == (0, 4)
    assert [r.mean for r in again.rows] == [r.mean for r in first.rows]

    from timm_recipes.cli import main
    from timm_recipes.train.journey import journey_to_dict

    definition = tmp_path / "tiny.yaml"
    definition.write_text(yaml.safe_dump(journey_to_dict(_tiny())))
    assert main(["journey", str(definition), "--output", str(out), "--status"]) == 0
    printed = capsys.readouterr().out
    assert "| FixRes: test size only | 1 |" in printed and "4 runs done (nothing computed)" in printed

    record = out / "02-fixres" / "seed0.json"  # as if killed while FixRes ran: a record not done, a partial folder
    record.write_text(json.dumps({**json.loads(record.read_text()), "done": False}))
    (out / "02-fixres" / "seed0" / "fixres.json").unlink()
    resumed = run_journey(_tiny(), out)
    assert (resumed.computed, resumed.reused) == (1, 3)

    with pytest.raises(
        JourneyError, match=r"another definition of the steps \['label smoothing', 'FixRes', 'ensemble'\]"
    ):
        run_journey(_tiny(smoothing=0.2), out)
    assert stamp == json.loads((out / "01-label-smoothing" / "seed0.json").read_text())  # untouched
    redone = run_journey(_tiny(smoothing=0.2), out, recompute=True)
    assert (redone.computed, redone.reused) == (3, 1)  # the changed step and what depends on it; not the baseline

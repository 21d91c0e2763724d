"""Random search: log-uniform sampling (KS test), seeding, resume, outputs, bad input, and one real search."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import stats

from timm_recipes.config import Recipe, apply_overrides, recipe_to_dict
from timm_recipes.recipes import PRESETS, load_recipe
from timm_recipes.train.search import run_search, sample_trial

BASE = PRESETS["demo"]


def bowl(recipe: Recipe) -> float:
    """A cheap deterministic 'validation metric', best at lr = 1e-3, wd = 1e-4."""
    return 1.0 - 0.1 * ((math.log10(recipe.optim.lr) + 3) ** 2 + (math.log10(recipe.optim.weight_decay) + 4) ** 2)


class Recorder:
    """A trial function that records the recipes it is given and can fail at a chosen call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.recipes: list[Recipe] = []
        self.fail_at = fail_at

    def __call__(self, recipe: Recipe) -> float:
        if self.fail_at is not None and len(self.recipes) == self.fail_at:
            raise KeyboardInterrupt("killed")
        self.recipes.append(recipe)
        return bowl(recipe)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ sampling
def test_sampling_is_log_uniform_ks() -> None:
    n = 2000
    lo, hi = -5.0, -2.0
    samples = np.array([sample_trial(i, seed=0) for i in range(n)])
    for column in samples.T:
        exponents = np.log10(column)
        assert exponents.min() >= lo and exponents.max() <= hi
        assert stats.kstest(exponents, stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 0.01
        # the test has power: the same exponents are far from what a uniform lr in [1e-5, 1e-2] would give
        linear = stats.uniform(loc=10**lo, scale=10**hi - 10**lo)
        assert stats.kstest(column, linear.cdf).pvalue < 1e-6
    # lr and wd are drawn independently
    assert abs(stats.pearsonr(np.log10(samples[:, 0]), np.log10(samples[:, 1])).statistic) < 4 / math.sqrt(n)


def test_sampling_respects_other_ranges() -> None:
    n = 1000
    exps = np.log10([sample_trial(i, seed=3, lr_range=(-4, -1), wd_range=(-6, -5.5)) for i in range(n)])
    assert stats.kstest(exps[:, 0], stats.uniform(loc=-4, scale=3).cdf).pvalue > 0.01
    assert stats.kstest(exps[:, 1], stats.uniform(loc=-6, scale=0.5).cdf).pvalue > 0.01


def test_sampling_is_seeded_and_does_not_depend_on_the_number_of_trials(tmp_path: Path) -> None:
    assert sample_trial(4, seed=7) == sample_trial(4, seed=7)
    assert sample_trial(4, seed=7) != sample_trial(4, seed=8)
    assert sample_trial(4, seed=7) != sample_trial(5, seed=7)
    short = run_search(BASE, trials=3, out_dir=tmp_path / "a", seed=7, epochs=2, trial_fn=bowl, progress=None)
    long = run_search(BASE, trials=6, out_dir=tmp_path / "b", seed=7, epochs=2, trial_fn=bowl, progress=None)
    assert [(t.lr, t.weight_decay) for t in short.trials] == [(t.lr, t.weight_decay) for t in long.trials[:3]]
    assert [(t.lr, t.weight_decay) for t in long.trials] == [sample_trial(i, seed=7) for i in range(6)]


# ------------------------------------------------------------------------------------------------ a search
def test_search_runs_trials_and_writes_its_outputs(tmp_path: Path) -> None:
    fn = Recorder()
    result = run_search(BASE, trials=6, out_dir=tmp_path, seed=1, epochs=3, trial_fn=fn, progress=None)

    # each trial got the base recipe with only the sampled lr/wd, a shorter schedule and its own folder
    assert len(fn.recipes) == 6
    for i, recipe in enumerate(fn.recipes):
        lr, wd = sample_trial(i, seed=1)
        assert (recipe.optim.lr, recipe.optim.weight_decay, recipe.schedule.epochs) == (lr, wd, 3)
        assert recipe.schedule.warmup_epochs == pytest.approx(BASE.schedule.warmup_epochs * 3 / BASE.schedule.epochs)
        assert recipe.run.output_dir == str(tmp_path / "trials" / f"trial_{i:03d}")
        expected = apply_overrides(
            BASE,
            {"name": recipe.name, "optim.lr": lr, "optim.weight_decay": wd, "run.output_dir": recipe.run.output_dir,
             "schedule.epochs": 3, "schedule.warmup_epochs": recipe.schedule.warmup_epochs},
        )  # fmt: skip
        assert recipe == expected
    assert len({r.name for r in fn.recipes}) == 6

    # the best trial is the arg-max of the metric, and the best recipe is the base with its lr and wd
    metrics = [bowl(r) for r in fn.recipes]
    assert result.best.index == int(np.argmax(metrics))
    assert result.best.metric == max(metrics)
    best = load_recipe(result.best_recipe_path)
    assert best == result.best_recipe
    assert (best.optim.lr, best.optim.weight_decay) == (result.best.lr, result.best.weight_decay)
    assert best.schedule.epochs == BASE.schedule.epochs  # the full-length recipe, not the short trial's
    changed = {k for k, v in recipe_to_dict(best).items() if recipe_to_dict(BASE)[k] != v}
    assert changed == {"optim", "source"}

    # the tables
    rows = read_csv(result.csv_path)
    assert [int(r["trial"]) for r in rows] == list(range(6))
    for row, recipe, metric in zip(rows, fn.recipes, metrics):
        assert float(row["lr"]) == recipe.optim.lr and float(row["weight_decay"]) == recipe.optim.weight_decay
        assert float(row["log10_lr"]) == pytest.approx(math.log10(recipe.optim.lr))
        assert float(row["metric"]) == metric
    md = result.markdown_path.read_text().splitlines()
    assert len(md) == 2 + 6 and md[0].startswith("| trial | lr | weight decay |")
    assert md[2].startswith(f"| **{result.best.index}** |")  # sorted best first

    # the plot is a real PNG
    image = matplotlib.image.imread(result.plot_path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert json.loads((tmp_path / "search.json").read_text())["seed"] == 1


def test_a_killed_search_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    first = Recorder(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_search(BASE, trials=5, out_dir=tmp_path, seed=2, trial_fn=first, progress=None)
    assert len(first.recipes) == 3
    before = read_csv(tmp_path / "trials.csv")
    assert [int(r["trial"]) for r in before] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.json", "trials.csv", "trials.jsonl", "trials.md"]

    second = Recorder()
    result = run_search(BASE, trials=5, out_dir=tmp_path, seed=2, trial_fn=second, progress=None)
    assert [r.name for r in second.recipes] == [f"demo-trial{i:03d}" for i in (3, 4)]  # only the 2 missing ones
    after = read_csv(result.csv_path)
    assert len(after) == 5 and after[:3] == before  # the recorded trials kept, seconds and all
    assert len(result.trials) == 5

    # a finished search resumed again runs nothing; asking for more trials runs only the new ones
    third = Recorder()
    run_search(BASE, trials=5, out_dir=tmp_path, seed=2, trial_fn=third, progress=None)
    run_search(BASE, trials=7, out_dir=tmp_path, seed=2, trial_fn=third, progress=None)
    assert [r.name for r in third.recipes] == ["demo-trial005", "demo-trial006"]
    assert len(read_csv(tmp_path / "trials.csv")) == 7


def test_diverged_trials_rank_last(tmp_path: Path) -> None:
    def fn(recipe: Recipe) -> float:
        return float("nan") if recipe.optim.lr > 1e-3 else bowl(recipe)

    result = run_search(BASE, trials=8, out_dir=tmp_path, seed=0, trial_fn=fn, progress=None)
    nan = [t for t in result.trials if math.isnan(t.metric)]
    assert nan and not math.isnan(result.best.metric)
    assert result.best.metric == max(t.metric for t in result.trials if not math.isnan(t.metric))
    assert result.markdown_path.read_text().count("diverged") == len(nan)

    with pytest.raises(RuntimeError, match="all 3 trials diverged"):
        run_search(BASE, trials=3, out_dir=tmp_path / "nan", trial_fn=lambda r: float("nan"), progress=None)
    assert len(read_csv(tmp_path / "nan" / "trials.csv")) == 3  # recorded all the same


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def finished_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    run_search(BASE, trials=2, out_dir=out, seed=0, trial_fn=bowl, progress=None)
    return out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trials": 0}, r"^trials: expected an integer >= 1, got 0"),
        ({"trials": -2}, r"^trials: expected an integer >= 1, got -2"),
        ({"trials": 2.5}, r"^trials: "),
        ({"trials": True}, r"^trials: "),
        ({"lr_range": (-2, -5)}, r"^lr_range: the range is inverted"),
        ({"lr_range": (-3, -3)}, r"^lr_range: the range is empty"),
        ({"lr_range": (-3,)}, r"^lr_range: expected \(low, high\)"),
        ({"lr_range": (float("nan"), -2)}, r"^lr_range: expected two finite numbers"),
        ({"wd_range": (-1, -4)}, r"^wd_range: the range is inverted"),
        ({"wd_range": (0, 0)}, r"^wd_range: the range is empty"),
        ({"epochs": 0}, r"^epochs: expected an integer >= 1"),
        ({"seed": -1}, r"^seed: expected an integer >= 0"),
        ({"seed": 9}, r"^seed: .* holds a search with seed = 0, not 9"),
        ({"lr_range": (-4, -2)}, r"^lr_range: .* holds a search with lr_range = \[-5.0, -2.0\]"),
        (
            {"base": apply_overrides(BASE, {"optim.momentum": 0.8})},
            r"^base: .* holds a search with base recipe differing in optim\.momentum;",
        ),
    ],
)
def test_bad_input_names_the_argument_and_loses_nothing(
    finished_search: Path, tmp_path: Path, kwargs: dict, message: str
) -> None:
    shutil.copytree(finished_search, tmp_path, dirs_exist_ok=True)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "best_recipe.yaml" in files
    calls = Recorder()
    args = {"base": BASE, "trials": 4, "out_dir": tmp_path, "seed": 0, "trial_fn": calls, "progress": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_search(**args)
    assert calls.recipes == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_base_must_be_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^base: expected a Recipe"):
        run_search({"name": "x"}, trials=1, out_dir=tmp_path, trial_fn=bowl)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ for real
HAS_TRAINER = importlib.util.find_spec("timm_recipes.train.trainer") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAINER, reason="timm_recipes.train.trainer (fit) is not in this checkout yet")
def test_real_search_with_fit(tmp_path: Path) -> None:
    """Two one-epoch trials of a tiny model through the command line; the table holds what fit measured."""
    from timm_recipes.cli import main

    out = tmp_path / "search"
    tiny = {
        "model.name": "test_resnet", "model.drop_path_rate": 0.0, "ema.enabled": False, "run.monitor": "raw",
        "data.image_size": 16, "aug.train_size": 16, "aug.scale_range": "16,18", "aug.test_size": 16,
        "data.batch_size": 256, "run.progress": False, "run.output_dir": str(tmp_path / "unused"),
    }  # fmt: skip
    argv = ["search", "demo", "--trials", "2", "--epochs", "1", "--out", str(out), "--lr-range", "-3", "-1"]
    for key, value in tiny.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 2
    for i, row in enumerate(rows):
        records = [json.loads(line) for line in (out / "trials" / f"trial_{i:03d}" / "metrics.jsonl").open()]
        assert float(row["metric"]) == max(r["val_top1"] for r in records)  # the trial's own validation top-1
        assert (float(row["lr"]), float(row["weight_decay"])) == sample_trial(i, seed=0, lr_range=(-3, -1))
    best = load_recipe(out / "best_recipe.yaml")
    best_row = max(rows, key=lambda r: float(r["metric"]))  # the first of equals, as the search ranks them
    assert best.optim.lr == float(best_row["lr"]) and best.optim.weight_decay == float(best_row["weight_decay"])
    assert best.schedule.epochs == BASE.schedule.epochs and best.model.name == "test_resnet"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "argument --trials: must be an integer >= 1"),
        (["--lr-range", "-2", "-5"], "--lr-range: LOW must be below HIGH"),
    ],
)
def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    from timm_recipes.cli import main

    assert main(["search", "demo", "--out", str(tmp_path / "s"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()

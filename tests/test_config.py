"""The Recipe: YAML and dict round trips, ``--set`` overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from timm_recipes.config import (
    AugConfig,
    OptimConfig,
    Recipe,
    RecipeError,
    ScheduleConfig,
    apply_overrides,
    recipe_from_dict,
    recipe_summary,
    recipe_to_dict,
    save_recipe,
)
from timm_recipes.recipes import PRESETS, load_recipe

PRESET_NAMES = sorted(PRESETS)


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_round_trips_through_yaml(name: str, tmp_path: Path) -> None:
    recipe = PRESETS[name]
    path = save_recipe(recipe, tmp_path / "sub" / "recipe.yaml")
    assert load_recipe(path) == recipe
    # the file is plain YAML (safe_load) holding every key with its value
    raw = yaml.safe_load(path.read_text())
    assert _leaves(raw) == _leaves(recipe_to_dict(recipe))
    assert [p.name for p in path.parent.iterdir()] == ["recipe.yaml"]  # no temp file left behind


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_validates_and_round_trips_through_dicts(name: str) -> None:
    recipe = PRESETS[name]
    d = recipe_to_dict(recipe)
    assert recipe_from_dict(d) == recipe
    # all values are plain YAML types (tuples became lists)
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in _leaves(d).values())
    # every field of every section appears
    for section in Recipe.SECTIONS:
        assert set(d[section]) == {f.name for f in dataclasses.fields(getattr(recipe, section))}


def test_missing_keys_take_defaults_and_tuples_come_back_as_tuples() -> None:
    r = recipe_from_dict({"name": "x", "aug": {"scale_range": [300, 400]}, "optim": {"lr": 1}})
    assert r.aug.scale_range == (300, 400) and isinstance(r.aug.scale_range, tuple)
    assert r.optim.lr == 1.0 and type(r.optim.lr) is float  # an int given for a float field becomes a float
    assert r.model == Recipe().model and r.schedule == Recipe().schedule


def test_recipes_are_frozen() -> None:
    r = Recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.optim.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "y"  # type: ignore[misc]


def test_load_recipe_by_preset_name_and_missing_file(tmp_path: Path) -> None:
    assert load_recipe("demo") is PRESETS["demo"]
    with pytest.raises(FileNotFoundError, match="no-such"):
        load_recipe(tmp_path / "no-such.yaml")


def test_load_recipe_refuses_python_tags(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_load_recipe_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 0.1\n  wieght_decay: 1e-4\n")
    with pytest.raises(RecipeError, match=r"^optim\.wieght_decay: unknown key .*bad\.yaml"):
        load_recipe(path)


def test_yaml_floats_without_a_dot_are_read_as_floats(tmp_path: Path) -> None:
    # YAML 1.1 reads "1e-4" as a string; the recipe accepts it where a float is expected
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  weight_decay: 1e-4\n")
    assert load_recipe(path).optim.weight_decay == pytest.approx(1e-4, rel=0, abs=0)


# ------------------------------------------------------------------------------------------------ overrides
def test_overrides_nested_values_with_their_types() -> None:
    base = PRESETS["demo"]
    r = apply_overrides(
        base,
        [
            "optim.lr=0.2",
            "optim.weight_decay=1e-4",
            "schedule.epochs=12",
            "run.patience=null",
            "model.drop_path_rate=None",
            "optim.decay_norm_and_bias=true",
            "ema.enabled=no",
            "aug.scale_range=[34, 46]",
            "schedule.milestones_epochs=3,6,9",
            "hub.tag=2024",
        ],
    )
    assert (r.optim.lr, r.optim.weight_decay, r.schedule.epochs) == (0.2, 1e-4, 12)
    assert r.run.patience is None and r.model.drop_path_rate is None
    assert r.optim.decay_norm_and_bias is True and r.ema.enabled is False
    assert r.aug.scale_range == (34, 46) and r.schedule.milestones_epochs == (3, 6, 9)
    assert r.hub.tag == "2024"  # a string field keeps the text as written
    # nothing else changed, and the input recipe is untouched
    changed = {k for k, v in _leaves(recipe_to_dict(r)).items() if _leaves(recipe_to_dict(base))[k] != v}
    assert changed == {
        "optim.lr", "optim.weight_decay", "schedule.epochs", "run.patience", "model.drop_path_rate",
        "optim.decay_norm_and_bias", "ema.enabled", "aug.scale_range", "schedule.milestones_epochs", "hub.tag",
    }  # fmt: skip
    assert base == PRESETS["demo"] and base.optim.lr == 0.1


def test_overrides_from_a_mapping_and_empty_tuples() -> None:
    r = apply_overrides(Recipe(), {"optim.lr": 3, "fixres.test_sizes": [224, 256], "schedule.milestones_epochs": []})
    assert r.optim.lr == 3.0 and r.fixres.test_sizes == (224, 256) and r.schedule.milestones_epochs == ()
    r2 = apply_overrides(r, ["schedule.milestones_epochs=[]", "fixres.test_sizes=288"])
    assert r2.schedule.milestones_epochs == () and r2.fixres.test_sizes == (288,)


def test_overriding_a_whole_section_merges_it() -> None:
    r = apply_overrides(Recipe(), ["mix={mixup_alpha: 0.3, cutmix_alpha: 1.0}"])
    assert (r.mix.mixup_alpha, r.mix.cutmix_alpha, r.mix.prob) == (0.3, 1.0, Recipe().mix.prob)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=abc", r"^optim\.lr: expected float, got 'abc'$"),
        ("optim.momentun=0.9", r"^optim\.momentun: unknown key"),
        ("optimizer.lr=0.1", r"^optimizer: unknown key"),
        ("optim.lr.x=1", r"^optim\.lr: is not a section"),
        ("data.batch_size=null", r"^data\.batch_size: expected int, got None"),  # model.num_classes may be null
        ("model.num_classes=2.5", r"^model\.num_classes: expected int, got 2\.5"),
        ("data.batch_size=true", r"^data\.batch_size: expected int, got True"),
        ("ema.enabled=1", r"^ema\.enabled: expected bool, got 1"),
        ("aug.scale_range=[1, 2, 3]", r"^aug\.scale_range: expected a list of 2 values, got 3 values"),
        ("aug.mean=[0.5, x, 0.5]", r"^aug\.mean\[1\]: expected float, got 'x'"),
        ("run.amp=fp8", r"^run\.amp: expected one of 'none' \| 'bf16' \| 'fp16', got 'fp8'"),
        ("schedule.name=cosin", r"^schedule\.name: expected one of .*'cosine'"),
        ("optim.name=sgdd", r"^optim\.name: unknown optimizer 'sgdd'"),
        ("optim.lr", r"expected 'section\.key=value'"),
        ("mix={mixup_alfa: 0.3}", r"^mix\.mixup_alfa: unknown key"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        apply_overrides(Recipe(), [override])


def test_overrides_must_be_a_list_not_one_string() -> None:
    with pytest.raises(TypeError, match="overrides"):
        apply_overrides(Recipe(), "optim.lr=0.1")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ ranges
@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("optim.lr", -1e-3, 0.0),
        ("optim.weight_decay", -1e-5, 0.0),
        ("optim.label_smoothing", 1.0, 0.99),
        ("optim.momentum", 1.0, 0.0),
        ("optim.accum_steps", 0, 1),
        ("optim.grad_clip", 0.0, 1.0),
        ("mix.prob", 1.01, 1.0),
        ("mix.switch_prob", -0.01, 0.0),
        ("mix.mixup_alpha", -0.1, 0.0),
        ("aug.hflip", 1.5, 1.0),
        ("aug.cutout_p", -0.5, 0.0),
        ("aug.cutout_size", 0.0, 1.0),
        ("aug.test_crop_pct", 1.1, 1.0),
        ("model.drop_path_rate", 1.0, 0.5),
        ("model.drop_rate", -0.1, 0.0),
        ("model.num_classes", 0, 1),
        ("data.batch_size", 0, 1),
        ("data.num_workers", -1, 0),
        ("schedule.epochs", 0, 600),
        ("schedule.warmup_epochs", 600, 599.5),
        ("schedule.gamma", 0.0, 0.5),
        ("schedule.pct_start", 1.0, 0.5),
        ("ema.decay", 1.5, 1.0),
        ("ema.every_k", 0, 1),
        ("fixres.holdout_fraction", 0.0, 0.5),
        ("run.patience", 0, 1),
        ("run.seed", -1, 0),
    ],
)
def test_values_out_of_range_name_the_key_and_the_bound(key: str, bad: float, good: float) -> None:
    with pytest.raises(RecipeError, match=rf"^{key.replace('.', chr(92) + '.')}: must be .*got {bad!r}"):
        apply_overrides(Recipe(), {key: bad})
    assert _leaves(recipe_to_dict(apply_overrides(Recipe(), {key: good})))[key] == good  # the boundary is allowed


def test_non_finite_numbers_are_refused() -> None:
    for text in ("nan", ".inf", "-inf"):
        with pytest.raises(RecipeError, match=r"^optim\.lr: must be a finite number"):
            apply_overrides(Recipe(), [f"optim.lr={text}"])
    assert math.isfinite(apply_overrides(Recipe(), ["optim.lr=1e300"]).optim.lr)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aug.scale_range": [480, 256]}, r"^aug\.scale_range: expected \(low, high\) with low <= high"),
        ({"aug.rrc_scale": [0.9, 0.1]}, r"^aug\.rrc_scale: expected \(low, high\)"),
        ({"aug.rrc_scale": [0.0, 1.0]}, r"^aug\.rrc_scale\[0\]: must be > 0"),
        ({"schedule.milestones_epochs": [60, 30]}, r"^schedule\.milestones_epochs: must be strictly increasing"),
        ({"schedule.epochs": 5}, r"^schedule\.warmup_epochs: must be < schedule\.epochs = 5"),
        (
            {"aug.train_pipeline": "multiscale", "aug.scale_range": [128, 160]},
            r"^aug\.scale_range: .*>= aug\.train_size",
        ),
        ({"data.dataset": "digits"}, r"^model\.num_classes: the digits data set has 10 classes"),
        ({"name": "a/b"}, r"^name: must be a non-empty name without path separators"),
        ({"hub.repo_id": "no-owner"}, r"^hub\.repo_id: expected 'owner/name'"),
    ],
)
def test_cross_field_rules_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        apply_overrides(Recipe(), overrides)


def test_sections_validate_on_direct_construction() -> None:
    with pytest.raises(RecipeError, match=r"^lr: must be >= 0"):
        OptimConfig(lr=-1.0)
    with pytest.raises(RecipeError, match=r"^warmup_epochs: must be < schedule\.epochs"):
        ScheduleConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(RecipeError, match=r"^optim\.lr: expected float"):
        Recipe(optim={"lr": "fast"})  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match=r"^std\[2\]: must be > 0"):
        AugConfig(std=(0.2, 0.2, 0.0))
    # dataclasses.replace goes through the same checks
    with pytest.raises(RecipeError, match=r"^lr: must be >= 0"):
        dataclasses.replace(OptimConfig(), lr=-0.5)


def test_recipe_errors_are_value_errors() -> None:
    assert issubclass(RecipeError, ValueError)
    err = RecipeError("lr", "must be >= 0").under("optim")
    assert (err.key, str(err)) == ("optim.lr", "optim.lr: must be >= 0")


# ------------------------------------------------------------------------------------------------ summary
def test_recipe_summary_reports_the_ingredients() -> None:
    rows = dict(recipe_summary(PRESETS["resnet50_tv2"]))
    assert rows["epochs"] == "600"
    assert rows["optimizer"].startswith("momentum, lr 0.5 per 1024 images")
    assert rows["label smoothing"] == "0.1"
    assert rows["Mixup / CutMix"] == "alpha 0.2 / 1, p 1"
    assert rows["train / test size"] == "176 / 224 (resize 232)"
    assert "pytorch.org" in rows["source"]
    off = dict(recipe_summary(apply_overrides(Recipe(), {"ema.enabled": False, "mix.mixup_alpha": 0.0})))
    assert off["EMA"] == "off" and off["Mixup / CutMix"] == "off" and off["Cutout"] == "off"
    step = dict(recipe_summary(PRESETS["efficientnet_b0"]))
    assert step["schedule"] == "step, 5 warm-up epochs, x0.97 every 2.4 epochs"

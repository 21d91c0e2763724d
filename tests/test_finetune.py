"""Fine-tuning: ``model.init`` from a run folder or an export to another class count, layer-wise lr decay and a head
multiplier in the scheduler, frozen-backbone epochs, frozen BatchNorm statistics, and bad ``model.init`` values.

Real data: the built-in digits written as PNG folders (``DigitsDataset.export_folder``) at 16 px, a handful of scans
per class, one-epoch runs.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from timm.models import group_parameters

from timm_recipes.config import apply_overrides
from timm_recipes.data.datasets import DigitsDataset
from timm_recipes.hub.exporting import export
from timm_recipes.recipes import get_preset
from timm_recipes.train.builders import create_recipe_model, load_checkpoint_model, resolve_init
from timm_recipes.train.checkpoint import open_checkpoint
from timm_recipes.train.finetune import FineTuneControl
from timm_recipes.train.optim import create_optimizer
from timm_recipes.train.schedules import create_scheduler
from timm_recipes.train.trainer import fit

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
SOURCE_PREP = {"aug.mean": [0.5, 0.5, 0.5], "aug.std": [0.25, 0.25, 0.25], "aug.interpolation": "bicubic"}


def _recipe(root: Path, **changes):
    base = {
        "data.dataset": "folder", "data.root": str(root), "data.batch_size": 16, "model.num_classes": None,
        "aug.train_size": SIZE, "aug.test_size": SIZE, "aug.scale_range": [SIZE, SIZE + 4], "schedule.epochs": 1,
        "schedule.warmup_epochs": 0, "run.progress": False, "run.patience": None, "ema.every_k": 1,
    }  # fmt: skip
    if changes.get("model.init"):  # the demo sets its preprocessing: unset it, so that it comes from the source
        base.update({"aug.mean": None, "aug.std": None, "aug.interpolation": None})
    return apply_overrides(get_preset("demo"), {**base, **changes})


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Ten-class and five-class (digits 5-9) image folders, eight scans per class and split."""
    root = tmp_path_factory.mktemp("digits")
    ten = DigitsDataset.export_folder(root / "ten", size=SIZE, per_class=8)
    five = root / "five"
    shutil.copytree(ten, five)
    for split in ("train", "val", "test"):
        for c in "01234":
            shutil.rmtree(five / split / c)
    return {"ten": ten, "five": five}


@pytest.fixture(scope="module")
def source_run(folders, tmp_path_factory) -> Path:
    """A one-epoch ResNet-18 run on the ten digits, with its own normalisation and interpolation."""
    out = tmp_path_factory.mktemp("runs") / "source"
    return fit(_recipe(folders["ten"], **SOURCE_PREP), output_dir=out).run_dir


def _backbone_equal(state: dict, reference: dict) -> list[str]:
    """The backbone keys whose tensors differ (the classifier ``fc.*`` left out)."""
    return [k for k, v in reference.items() if not k.startswith("fc.") and not torch.equal(state[k], v)]


def test_from_a_run_folder_to_another_class_count(folders, source_run, tmp_path) -> None:
    recipe = _recipe(folders["five"], **{"model.init": str(source_run), "model.init_weights": "ema"})
    source = resolve_init(recipe)
    assert source.kind == "checkpoint" and source.weights == "ema" and source.num_classes == 10
    ema = open_checkpoint(source_run, tag="best").weights("ema")
    torch.manual_seed(123)
    model = create_recipe_model(recipe, num_classes=5, source=source)  # step 0 of the fine-tuning
    state = model.state_dict()
    assert _backbone_equal(state, ema) == []
    assert state["fc.weight"].shape == (5, 512) and ema["fc.weight"].shape == (10, 512)
    torch.manual_seed(123)
    fresh = create_recipe_model(recipe, num_classes=5)
    assert torch.equal(state["fc.weight"], fresh.fc.weight)  # the head is the model's own fresh initialisation
    raw = resolve_init(recipe.replace(model=recipe.model.__class__(**{**_fields(recipe.model), "init_weights": "raw"})))
    assert raw.weights == "raw" and not torch.equal(raw.state_dict["fc.weight"], ema["fc.weight"])


def _fields(section) -> dict:
    return {name: getattr(section, name) for name in section.__dataclass_fields__}


def test_frozen_backbone_epochs_leave_it_bit_identical_then_it_trains(folders, source_run, tmp_path) -> None:
    changes = {"model.init": str(source_run), "schedule.epochs": 2, "optim.freeze_backbone_epochs": 1}
    recipe = _recipe(folders["five"], **changes)
    first = fit(recipe, output_dir=tmp_path / "ft", stop_after_epoch=1)
    source = open_checkpoint(source_run, tag="best").weights("ema")  # init_weights "auto": the EMA weights
    after_one = open_checkpoint(first.run_dir, tag="last")
    for which in ("model", "ema"):
        weights = after_one.weights(which)
        assert _backbone_equal(weights, source) == [], which  # BatchNorm running statistics included
        assert weights["fc.weight"].shape == (5, 512)
    assert not torch.equal(
        after_one.weights("model")["fc.weight"], create_recipe_model(recipe, num_classes=5).fc.weight
    )
    saved = first.run_dir / "recipe.yaml"
    assert "bicubic" in saved.read_text()  # unset interpolation came from the source's recipe
    second = fit(recipe, resume=first.run_dir)  # epoch 2: everything trains
    changed = _backbone_equal(open_checkpoint(second.run_dir, tag="last").weights("model"), source)
    assert any(k.endswith("running_mean") for k in changed) and any(k.endswith("conv1.weight") for k in changed)


def test_preprocessing_comes_from_the_source_unless_the_recipe_sets_it(folders, source_run) -> None:
    from timm_recipes.train.builders import with_init_preprocessing

    unset = _recipe(folders["five"], **{"model.init": str(source_run)})
    assert unset.aug.mean is None and unset.aug.interpolation is None
    resolved = with_init_preprocessing(unset).aug
    assert (resolved.mean, resolved.std, resolved.interpolation) == ((0.5,) * 3, (0.25,) * 3, "bicubic")
    given = with_init_preprocessing(_recipe(folders["five"], **{"model.init": str(source_run), "aug.mean": [0.1] * 3}))
    assert given.aug.mean == (0.1,) * 3 and given.aug.interpolation == "bicubic"
    plain = _recipe(folders["five"])  # no model.init: the ImageNet defaults, as before
    assert plain.aug.interpolation == "bilinear" and plain.aug.mean == (0.485, 0.456, 0.406)


def test_from_an_export_folder_and_local_dir(folders, source_run, tmp_path) -> None:
    model, recipe, _ = load_checkpoint_model(source_run, which="ema")
    folder = export(model, tmp_path / "export", recipe=recipe, variant="ema")
    for init in (str(folder), f"local-dir:{folder}"):
        ft = _recipe(folders["five"], **{"model.init": init})
        source = resolve_init(ft)
        assert source.kind == "local-dir" and source.architecture == "resnet18" and source.num_classes == 10
        state = create_recipe_model(ft, num_classes=5, source=source).state_dict()
        assert _backbone_equal(state, model.state_dict()) == [] and state["fc.weight"].shape == (5, 512)
        assert source.pretrained_cfg["interpolation"] == "bicubic"


# ------------------------------------------------------------------------------------------------ learning rates
def test_layer_decay_and_head_scale_give_the_formulas_lrs() -> None:
    """lr of block l at step k = schedule(k) * decay ** (L - l) (BEiT), times head_lr_scale for the classifier."""
    model = create_recipe_model(get_preset("demo"))
    lr, decay, head_scale, total, warmup, min_lr = 0.1, 0.5, 10.0, 40, 5, 1e-3
    optimizer = create_optimizer(model, "sgd", lr, 1e-4, layer_decay=decay, head_lr_scale=head_scale)
    scheduler = create_scheduler("cosine", optimizer, total, warmup, warmup_lr=0.0, min_lr=min_lr)
    layer_of = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    num_layers = max(layer_of.values()) + 1
    names = {id(p): n for n, p in model.named_parameters()}

    def schedule(k: int) -> float:  # the lecture's warm-up then cosine
        if k < warmup:
            return lr * k / warmup
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))

    def expected(group: dict, k: int) -> float:
        layers = {layer_of[names[id(p)]] for p in group["params"]}
        heads = {names[id(p)].startswith("fc.") for p in group["params"]}
        assert len(layers) == 1 and len(heads) == 1  # one block and one kind per group
        return schedule(k) * decay ** (num_layers - 1 - layers.pop()) * (head_scale if heads.pop() else 1.0)

    assert num_layers > 5
    checked = 0
    for k in range(total + 1):
        if k in (0, 1, 3, warmup, 17, total):
            for group in optimizer.param_groups:
                assert group["lr"] == pytest.approx(expected(group, k), rel=1e-12, abs=1e-15)
                checked += 1
        optimizer.step()
        scheduler.step()
    assert checked >= 6 * len(optimizer.param_groups)
    stem = next(g for g in optimizer.param_groups if any(names[id(p)] == "conv1.weight" for p in g["params"]))
    head = next(g for g in optimizer.param_groups if any(names[id(p)] == "fc.weight" for p in g["params"]))
    assert head["lr_scale"] / stem["lr_scale"] == pytest.approx(head_scale / decay ** (num_layers - 1))


def test_frozen_batchnorm_statistics_stay_and_affine_weights_train() -> None:
    model = create_recipe_model(get_preset("demo"))
    control = FineTuneControl(model, freeze_bn=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(torch.randn(8, 3, 16, 16)).square().mean().backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if "running_" in k or "num_batches" in k)
    assert not torch.equal(after["bn1.weight"], before["bn1.weight"])
    control.close()
    model.train()
    model(torch.randn(8, 3, 16, 16))
    assert not torch.equal(model.bn1.running_mean, before["bn1.running_mean"])  # hooks removed


# ------------------------------------------------------------------------------------------------ bad values
def test_bad_init_values_name_them_and_write_nothing(folders, source_run, tmp_path) -> None:
    pickle_file = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, pickle_file)  # written here, never loaded
    cases = [
        (str(tmp_path / "missing"), FileNotFoundError, "no file or folder"),
        (str(pickle_file), ValueError, "is not a safetensors file"),
        (
            str(source_run),
            ValueError,
            "holds weights of recipe_resnet18, which do not fit model.name='recipe_resnet34'",
        ),
        (str(folders["ten"]), FileNotFoundError, "neither an export folder"),
        ("hf-hub:nobody/nothing", FileNotFoundError, "nobody/nothing"),
    ]
    for init, error, message in cases:
        recipe = _recipe(folders["five"], **{"model.init": init, "model.name": "recipe_resnet34"})
        out = tmp_path / "run"
        with pytest.raises(error, match=message) as info:
            fit(recipe, output_dir=out)
        assert "model.init" in str(info.value) and (init.removeprefix("hf-hub:") in str(info.value))
        assert not out.exists()

"""FixRes: the last BatchNorm before pooling, what is frozen, what moves, the test-time pipeline, the selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.data import resolve_data_config
from torch import nn
from torch.utils.data import Subset

from timm_recipes.cli import main as cli_main
from timm_recipes.config import apply_overrides, recipe_to_dict
from timm_recipes.data import DigitsDataset, eval_pipeline, eval_pipeline_from_model
from timm_recipes.recipes import get_preset
from timm_recipes.train.checkpoint import open_checkpoint, save_checkpoint
from timm_recipes.train.fixres import (
    find_last_batchnorm,
    fixres_finetune,
    freeze_for_fixres,
    run_fixres,
    select_test_resolution,
    set_test_resolution,
)

SIZE = 16  # digits rendered at 16 x 16: small enough for fast CPU tests


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("recipe_resnet18", num_classes=10)


def _digits(split: str, n: int | None = None) -> DigitsDataset | Subset:
    ds = DigitsDataset(split, size=SIZE)
    return ds if n is None else Subset(ds, list(range(n)))


# ------------------------------------------------------------------------------------------- the last BatchNorm
@pytest.mark.parametrize(
    "name, expected",
    [("recipe_resnet18", "layer4.1.bn2"), ("recipe_resnet50", "layer4.2.bn3"), ("recipe_efficientnet_b0", "bn2")],
)
def test_last_batchnorm_before_pooling(name: str, expected: str) -> None:
    model = timm.create_model(name, num_classes=10)
    model.train()
    found, module = find_last_batchnorm(model, probe_size=32)
    assert found == expected and module is model.get_submodule(expected)
    assert model.training  # the probe restored the mode


class _Registered(nn.Module):
    """BatchNorms registered in the opposite order to the one they run in."""

    def __init__(self) -> None:
        super().__init__()
        self.bn_late = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn_early = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_late(self.bn_early(self.conv(x)))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean((2, 3)))


def test_last_batchnorm_follows_forward_order_not_registration() -> None:
    assert find_last_batchnorm(_Registered())[0] == "bn_late"
    with pytest.raises(ValueError, match="BatchNorm"):
        find_last_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3)))


# ------------------------------------------------------------------------------------------------ what is frozen
def test_only_classifier_and_last_bn_get_gradients() -> None:
    model = _resnet18()
    bn_name, trainable = freeze_for_fixres(model)
    expected = {"fc.weight", "fc.bias", f"{bn_name}.weight", f"{bn_name}.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert {id(p) for p in trainable} == {id(p) for n, p in model.named_parameters() if n in expected}
    model(torch.randn(4, 3, SIZE, SIZE)).logsumexp(1).sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == expected


def test_finetune_moves_only_the_classifier_and_that_bn() -> None:
    model = _resnet18()
    model.layer1[0].conv1.weight.requires_grad_(False)  # a caller's own freezing is restored afterwards
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fixres_finetune(model, _digits("train", 96), test_size=20, crop_pct=1.0, epochs=1, lr=0.05, batch_size=32)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    bn = "layer4.1.bn2"
    tuned = {"fc.weight", "fc.bias"} | {f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
    assert changed == tuned | {f"{bn}.num_batches_tracked"}
    assert int(after[f"{bn}.num_batches_tracked"] - before[f"{bn}.num_batches_tracked"]) == 3  # 96 / 32 batches
    assert not model.training and all(not m.training for m in model.modules())
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grads["layer1.0.conv1.weight"] and all(v for n, v in grads.items() if n != "layer1.0.conv1.weight")
    assert model.pretrained_cfg["test_input_size"] == (3, 20, 20) and model.pretrained_cfg["test_crop_pct"] == 1.0


def test_bn_statistics_are_re_estimated_from_test_resolution_inputs() -> None:
    """With lr = 0 nothing learns; the tuned BatchNorm's running stats follow its inputs' batch statistics."""
    model = _resnet18()
    bn = model.get_submodule("layer4.1.bn2")
    bn.momentum = 0.5
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    seen: list[tuple[int, ...]] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        nonlocal mean, var
        if not module.training:  # the eval-mode probe that finds the layer
            return
        x = args[0].detach().double()
        n = x.numel() / x.shape[1]
        mean = 0.5 * mean + 0.5 * x.mean((0, 2, 3)).float()
        var = 0.5 * var + 0.5 * (x.var((0, 2, 3), unbiased=False) * n / (n - 1)).float()

    bn.register_forward_pre_hook(record)
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)) if bn.training else None)
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("layer4.1.bn2.running")}
    fixres_finetune(model, _digits("train", 64), test_size=24, crop_pct=0.875, epochs=2, lr=0.0, batch_size=32)
    assert seen == [(32, 3, 24, 24)] * 4  # every training batch at the test resolution
    assert torch.allclose(bn.running_mean, mean, rtol=1e-4, atol=1e-6)
    assert torch.allclose(bn.running_var, var, rtol=1e-4, atol=1e-6)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.endswith("num_batches_tracked"))


def test_finetune_feeds_training_images_through_the_test_pipeline() -> None:
    model = _resnet18()
    data = _digits("train", 40)
    pipe = eval_pipeline(input_size=20, crop_pct=0.8, interpolation="bilinear")
    expected = torch.stack([pipe(image=data.dataset.image(i))["image"] for i in range(40)])
    batches: list[torch.Tensor] = []
    bn = model.get_submodule("layer4.1.bn2")
    model.register_forward_pre_hook(lambda m, args: batches.append(args[0].clone()) if bn.training else None)
    fixres_finetune(model, data, test_size=20, crop_pct=0.8, epochs=1, lr=0.01, batch_size=20, interpolation="bilinear")
    fed = torch.cat(batches)
    assert fed.shape == expected.shape
    # Shuffled, but each fed image is exactly one of the test-pipeline images, and all of them are fed.
    matches = [{i for i, e in enumerate(expected) if torch.equal(f, e)} for f in fed]
    assert all(matches) and set().union(*matches) == set(range(40))


# ----------------------------------------------------------------------------------------------- the selection
def test_select_test_resolution_evaluates_each_candidate_on_the_holdout() -> None:
    model = _resnet18().eval()
    holdout = _digits("val", 60)
    sizes, crops = [16, 24], [1.0, 0.8]
    best_size, best_crop, table = select_test_resolution(model, holdout, sizes, crops, batch_size=32)
    assert [(r["size"], r["crop_pct"]) for r in table] == [(16, 1.0), (16, 0.8), (24, 1.0), (24, 0.8)]
    assert all(r["n"] == 60 for r in table)
    mean, std, interpolation = (model.pretrained_cfg[k] for k in ("mean", "std", "interpolation"))
    for row in table:  # recomputed here by hand, image by image, with the model's own preprocessing
        pipe = eval_pipeline(
            input_size=row["size"], crop_pct=row["crop_pct"], interpolation=interpolation, mean=mean, std=std
        )
        x = torch.stack([pipe(image=holdout.dataset.image(i))["image"] for i in range(60)])
        y = torch.as_tensor(holdout.dataset.targets[:60])
        with torch.no_grad():
            logits = model(x)
        assert row["top1"] == pytest.approx(100.0 * float((logits.argmax(1) == y).float().mean()))
        assert row["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    top = max(r["top1"] for r in table)
    best = min((r for r in table if r["top1"] == top), key=lambda r: r["loss"])
    assert (best_size, best_crop) == (best["size"], best["crop_pct"])


def test_test_resolution_goes_into_pretrained_cfg() -> None:
    model = _resnet18()
    set_test_resolution(model, 36, 0.9)
    cfg = resolve_data_config(model=model, use_test_size=True)
    assert cfg["input_size"] == (3, 36, 36) and cfg["crop_pct"] == 0.9
    assert resolve_data_config(model=model)["input_size"] == model.pretrained_cfg["input_size"]  # train size kept
    image = np.zeros((50, 60, 3), np.uint8)
    assert tuple(eval_pipeline_from_model(model)(image=image)["image"].shape) == (3, 36, 36)


def test_bad_input() -> None:
    model = _resnet18()
    with pytest.raises(ValueError, match="sizes"):
        select_test_resolution(model, _digits("val", 8), [], [1.0])
    with pytest.raises(ValueError, match="crop_pcts"):
        select_test_resolution(model, _digits("val", 8), [16], [0.0])
    with pytest.raises(ValueError, match="test_size"):
        fixres_finetune(model, _digits("train", 8), test_size=0, crop_pct=1.0)
    with pytest.raises(ValueError, match="crop_pct"):
        fixres_finetune(model, _digits("train", 8), test_size=16, crop_pct=1.5)
    with pytest.raises(TypeError, match="transform"):
        fixres_finetune(model, torch.utils.data.TensorDataset(torch.zeros(4, 3)), test_size=16, crop_pct=1.0)


# ------------------------------------------------------------------------------------------- the whole job + CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory):
    """A run folder holding a checkpoint of the demo recipe at 16 px (weights: a briefly fitted model)."""
    recipe = apply_overrides(
        get_preset("demo"),
        {
            "data.image_size": SIZE,
            "data.batch_size": 128,
            "aug.train_size": SIZE,
            "aug.scale_range": [SIZE, 20],
            "aug.test_size": SIZE,
            "aug.test_crop_pct": 0.9,
            "fixres.test_sizes": [SIZE, 20],
            "fixres.test_crop_pcts": [1.0],
            "fixres.epochs": 1,
        },
    )
    model = _resnet18()
    torch.manual_seed(1)  # distinct raw and EMA weights, so the test can tell which one was used
    ema = timm.create_model("recipe_resnet18", num_classes=10)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(
        run / "checkpoints",
        model_state=model.state_dict(),
        ema_state=ema.state_dict(),
        model_name="recipe_resnet18",
        num_classes=10,
        epoch=1,
        step=10,
        training_state={},
        recipe=recipe_to_dict(recipe),
        tags=("last", "best"),
    )
    return run, ema


def run_dir_raw_weight(run) -> torch.Tensor:
    return open_checkpoint(run).weights("model")["layer1.0.conv1.weight"]


def test_run_fixres_from_a_checkpoint(run_dir) -> None:
    run, ema = run_dir
    result = run_fixres(run, device="cpu")
    assert result.weights == "ema" and result.holdout_split == "val" and result.eval_split == "test"
    # Selection on the val split (179 scans), never on test; candidates: the grid plus the recipe's own.
    assert [(r["size"], r["crop_pct"], r["n"]) for r in result.table] == [
        (16, 1.0, 179),
        (20, 1.0, 179),
        (16, 0.9, 179),
    ]
    assert set(result.accuracy) == {"train_size", "recipe_test", "test_size_before", "test_size_after"}
    assert (result.test_size, result.test_crop_pct) in {(r["size"], r["crop_pct"]) for r in result.table}
    assert result.model.pretrained_cfg["test_input_size"] == (3, result.test_size, result.test_size)
    # Started from the EMA weights: everything but the tuned layers is still the EMA model's.
    state, ema_state = result.model.state_dict(), ema.state_dict()
    assert torch.equal(state["layer1.0.conv1.weight"], ema_state["layer1.0.conv1.weight"])
    assert not torch.equal(state["layer1.0.conv1.weight"], run_dir_raw_weight(run))
    report = json.loads((run / "fixres" / "fixres.json").read_text())
    assert report["test_input_size"] == [3, result.test_size, result.test_size]
    assert report["accuracy"] == pytest.approx(result.accuracy)
    assert report["checkpoint_epoch"] == 1 and report["holdout_split"] == "val" and report["eval_split"] == "test"
    saved = load_file(str(run / "fixres" / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in state.items())


def test_cli_fixres(tmp_path, capsys) -> None:
    root = DigitsDataset.export_folder(tmp_path / "data", size=SIZE, per_class=6)  # train, val and test folders
    recipe = apply_overrides(
        get_preset("demo"),
        {"data.dataset": "folder", "data.root": str(root), "aug.train_size": SIZE, "aug.scale_range": [SIZE, 20]},
    )
    save_checkpoint(
        tmp_path / "run" / "checkpoints",
        model_state=_resnet18().state_dict(),
        model_name="recipe_resnet18",
        num_classes=10,
        epoch=1,
        step=1,
        training_state={},
        recipe=recipe_to_dict(recipe),
    )  # no EMA weights and no "best" tag: --tag best falls back to "last", --ema to the raw weights
    out = tmp_path / "fx"
    argv = ["fixres", str(tmp_path / "run"), "--sizes", "16", "20", "--crop-pcts", "1.0", "--device", "cpu"]
    code = cli_main([*argv, "--set", "fixres.epochs=1", "--set", "aug.test_size=16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "top-1 on test" in printed
    report = json.loads((out / "fixres.json").read_text())
    assert report["weights"] == "model" and report["epochs"] == 1
    from timm_recipes._files import current_umask

    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not safetensors' 0600
    assert [(r["size"], r["crop_pct"], r["n"]) for r in report["table"]] == [
        (16, 1.0, 60),
        (20, 1.0, 60),
        (16, 0.9, 60),
    ]
    assert cli_main(["fixres", str(tmp_path / "nowhere")]) == 1  # a runtime failure in one line, not a traceback


def test_without_a_test_split_the_holdout_comes_from_train(tmp_path) -> None:
    """Image folders with train/ and val/ only: val reports the accuracy, so the selection uses part of train."""
    root = DigitsDataset.export_folder(tmp_path / "data", size=SIZE, splits=("train", "val"), per_class=10)
    recipe = apply_overrides(
        get_preset("demo"),
        {
            "data.dataset": "folder",
            "data.root": str(root),
            "aug.train_size": SIZE,
            "aug.scale_range": [SIZE, 20],
            "aug.test_size": SIZE,
            "fixres.test_sizes": [SIZE],
            "fixres.test_crop_pcts": [1.0],
            "fixres.holdout_fraction": 0.2,
            "fixres.epochs": 1,
        },
    )
    model = _resnet18()
    fed: list[int] = []
    bn = model.get_submodule("layer4.1.bn2")
    model.register_forward_pre_hook(lambda m, args: fed.append(args[0].shape[0]) if bn.training else None)
    result = run_fixres(model, recipe, batch_size=16, device="cpu")
    assert result.holdout_split.startswith("train") and result.eval_split == "val" and result.weights == "given"
    # 2 of the 10 training images of each class are held out for the selection and left out of the fine-tuning.
    assert [r["n"] for r in result.table] == [20, 20]
    assert sum(fed) == 80 // 16 * 16
    assert result.output_dir is None  # a model source writes nothing unless asked

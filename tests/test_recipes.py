"""The presets against their sources: torchvision's and timm's own published settings, and the papers."""

from __future__ import annotations

import re

import pytest
import timm
from timm.models import get_pretrained_cfg
from torchvision.models import ResNet50_Weights

from timm_recipes.recipes import EFFICIENTNET_VARIANTS, PRESETS, get_preset, list_presets


def effective_lr(recipe, world_size: int) -> float:
    """The lr the recipe asks for at ``world_size`` processes of ``data.batch_size`` (the documented rule)."""
    o, global_batch = recipe.optim, world_size * recipe.data.batch_size * recipe.optim.accum_steps
    return o.lr if o.lr_base_batch is None else o.lr * global_batch / o.lr_base_batch


def torchvision_ema_decay(recipe, world_size: int) -> float:
    """torchvision references/classification/train.py: ``adjust = world * batch * steps / epochs``."""
    adjust = world_size * recipe.data.batch_size * recipe.ema.every_k / recipe.schedule.epochs
    return 1.0 - min(1.0, (1.0 - recipe.ema.decay) * adjust)


def test_registry() -> None:
    assert list_presets() == list(PRESETS)
    assert {"resnet50_tv2", "resnet50_rsb_a3", "efficientnet_b0", "efficientnet_b7", "demo"} <= set(PRESETS)
    assert get_preset("demo") is PRESETS["demo"]
    with pytest.raises(ValueError, match=r"name: unknown preset 'resnet51'.*resnet50_tv2"):
        get_preset("resnet51")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_names_itself_and_its_source(name: str) -> None:
    recipe = PRESETS[name]
    assert recipe.name == name
    assert len(recipe.source) > 40
    if name != "demo":
        assert re.search(r"https://\S+", recipe.source)


def test_every_preset_model_is_a_registered_timm_model() -> None:
    import timm_recipes  # noqa: F401  (registers the recipe models)

    registered = set(timm.list_models("recipe_*"))
    if not registered:
        pytest.skip("the recipe models are not registered in this checkout")
    assert {r.model.name for r in PRESETS.values()} <= registered


def test_resnet50_tv2_matches_torchvision() -> None:
    r = PRESETS["resnet50_tv2"]
    # the published weights' own preprocessing: resize 232, center crop 224, bilinear
    t = ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert round(r.aug.test_size / r.aug.test_crop_pct) == t.resize_size[0] == 232
    assert r.aug.test_size == t.crop_size[0] == 224
    assert r.aug.interpolation == t.interpolation.value
    assert ResNet50_Weights.IMAGENET1K_V2.meta["recipe"] in r.source
    # the command line of the recipe (8 GPUs x --batch-size 128)
    assert effective_lr(r, world_size=8) == 0.5
    assert effective_lr(r, world_size=4) == 0.25  # the lr follows the global batch
    assert r.schedule.warmup_lr / effective_lr(r, 8) == pytest.approx(0.01)  # --lr-warmup-decay 0.01
    assert (r.schedule.name, r.schedule.epochs, r.schedule.warmup_epochs) == ("cosine", 600, 5)
    assert (r.optim.name, r.optim.momentum, r.optim.weight_decay) == ("momentum", 0.9, 2e-5)
    assert (r.optim.label_smoothing, r.mix.mixup_alpha, r.mix.cutmix_alpha) == (0.1, 0.2, 1.0)
    assert (r.aug.train_size, r.aug.cutout_p) == (176, 0.1)
    assert (r.ema.enabled, r.ema.decay, r.ema.every_k) == (True, 0.99998, 32)
    # torchvision's EMA adjustment at 8 x 128 over 600 epochs
    assert torchvision_ema_decay(r, 8) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)


def test_resnet50_rsb_a3_matches_timm_and_the_paper() -> None:
    r = PRESETS["resnet50_rsb_a3"]
    cfg = get_pretrained_cfg("resnet50.a3_in1k")  # the weights this procedure produced
    assert r.aug.train_size == cfg.input_size[-1] == 160
    assert r.aug.test_size == cfg.test_input_size[-1] == 224
    assert r.aug.test_crop_pct == cfg.test_crop_pct == 0.95
    assert r.aug.interpolation == cfg.interpolation
    assert effective_lr(r, world_size=8) == pytest.approx(8e-3)  # LAMB lr 8e-3 at batch 2048
    assert (r.optim.name, r.optim.weight_decay, r.schedule.epochs, r.schedule.warmup_epochs) == ("lamb", 0.02, 100, 5)
    assert (r.mix.mixup_alpha, r.mix.cutmix_alpha, r.ema.enabled) == (0.1, 1.0, False)


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET_VARIANTS))
def test_efficientnet_preprocessing_matches_timms_tf_ports(variant: str) -> None:
    r = PRESETS[f"efficientnet_{variant}"]
    tags = [n for n in timm.list_pretrained(f"tf_efficientnet_{variant}.*") if n.endswith((".in1k", ".aa_in1k"))]
    cfg = get_pretrained_cfg(tags[0])  # the ported reference weights' own preprocessing
    assert r.aug.train_size == r.aug.test_size == cfg.input_size[-1]
    assert r.aug.test_crop_pct == pytest.approx(cfg.crop_pct, abs=1e-3)  # timm rounds to 3 decimals
    assert r.aug.interpolation == cfg.interpolation
    assert r.model.name == f"recipe_efficientnet_{variant}"


def test_efficientnet_optimizer_schedule_and_ema_match_the_paper() -> None:
    r = PRESETS["efficientnet_b0"]
    # "initial learning rate 0.256" was at batch 4096 = 16 processes of 256
    assert effective_lr(r, world_size=16) == pytest.approx(0.256)
    assert (r.optim.name, r.optim.momentum, r.optim.weight_decay) == ("rmsproptf", 0.9, 1e-5)
    assert (r.schedule.name, r.schedule.gamma, r.schedule.step_size_epochs) == ("step", 0.97, 2.4)
    assert r.model.drop_path_rate == 0.2  # survival probability 0.8
    assert [PRESETS[f"efficientnet_b{i}"].model.drop_rate for i in range(8)] == [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]
    # EMA 0.9999 per step at the reference global batch of 2048 once torchvision's adjustment is applied
    assert torchvision_ema_decay(r, world_size=8) == pytest.approx(0.9999, abs=1e-12)


def test_demo_is_the_lectures_recipe_on_the_builtin_digits() -> None:
    r = PRESETS["demo"]
    assert (r.data.dataset, r.model.num_classes, r.model.name) == ("digits", 10, "recipe_resnet18")
    assert r.aug.train_pipeline == "multiscale" and r.aug.cutout_p > 0
    assert r.aug.hflip == 0.0  # a mirrored digit is not the same digit
    assert r.mix.enabled and r.optim.label_smoothing == 0.1
    assert r.schedule.name == "cosine" and 0 < r.schedule.warmup_epochs < r.schedule.epochs
    assert r.ema.enabled and r.run.patience is not None and r.run.monitor == "ema"
    # the EMA horizon (1 / (1 - decay) updates) stays a few epochs long, not the whole run
    assert 0.9 < torchvision_ema_decay(r, world_size=1) < 0.999

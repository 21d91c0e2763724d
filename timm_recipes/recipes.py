"""Named recipes: published ImageNet training procedures and the small built-in demo.

Every preset names its ``source``; the numbers taken from that source carry a comment saying so. Where a source
uses an ingredient this package does not ship (TrivialAugment, RandAugment, AutoAugment, repeated augmentation,
binary cross-entropy), the preset says so and leaves it out rather than pretending.

    from timm_recipes.recipes import get_preset, list_presets
    recipe = get_preset("resnet50_tv2")

Global batch: ``data.batch_size`` is per process. The presets give the per-process batch of the source's
8-process run and state their learning rate per reference batch (``optim.lr_base_batch``), so the learning rate
follows the global batch actually used (``lr * global_batch / lr_base_batch``).
"""

from __future__ import annotations

import os
from pathlib import Path

from timm_recipes.config import (
    AugConfig,
    DataConfig,
    EmaConfig,
    MixConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RunConfig,
    ScheduleConfig,
    read_recipe_yaml,
    recipe_from_file_data,
)

__all__ = ["EFFICIENTNET_VARIANTS", "PRESETS", "get_preset", "list_presets", "load_recipe"]


# --------------------------------------------------------------------------------------------------------------
# torchvision's "new recipe" ResNet-50 (IMAGENET1K_V2, 80.858 % top-1)
# --------------------------------------------------------------------------------------------------------------
TV2_SOURCE = (
    "torchvision ResNet-50 IMAGENET1K_V2 recipe: https://pytorch.org/blog/"
    "how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/ and "
    "https://github.com/pytorch/vision/tree/main/references/classification#resnet "
    "(the weights' recipe: https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621)"
)


def _resnet50_tv2() -> Recipe:
    """torchvision's V2 ResNet-50 recipe, as run by ``references/classification/train.py``::

        torchrun --nproc_per_node=8 train.py --model resnet50 --batch-size 128 --lr 0.5 \\
          --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \\
          --auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \\
          --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \\
          --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4

    Not shipped here, hence left out: TrivialAugment-wide (``--auto-augment ta_wide``) and the repeated-augment
    sampler (``--ra-sampler --ra-reps 4``). Approximations: torchvision's cosine is stepped per epoch, ours per
    iteration; torchvision keeps weight decay on biases (only norms get 0), ours exempts both; torchvision's
    RandomErasing draws a rectangle of 2-33 % of the area, ours is the lecture's Cutout square.
    """
    return Recipe(
        name="resnet50_tv2",
        source=TV2_SOURCE,
        model=ModelConfig(name="recipe_resnet50", num_classes=1000, drop_rate=0.0, drop_path_rate=0.0),
        data=DataConfig(dataset="folder", batch_size=128, num_workers=16),  # --batch-size 128 on 8 GPUs = 1024
        aug=AugConfig(
            train_pipeline="rrc",
            train_size=176,  # --train-crop-size 176
            rrc_scale=(0.08, 1.0),  # RandomResizedCrop defaults
            hflip=0.5,
            cutout_p=0.1,  # --random-erase 0.1 (RandomErasing p)
            cutout_size=0.5,  # a square of 25 % of the area, inside RandomErasing's 2-33 % range
            test_size=224,  # --val-crop-size 224 (default)
            test_crop_pct=224 / 232,  # --val-resize-size 232: resize 232, center crop 224 (the FixRes effect)
            interpolation="bilinear",  # --interpolation bilinear (default)
        ),
        mix=MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5),  # RandomChoice([MixUp, CutMix])
        optim=OptimConfig(
            name="momentum",  # --opt sgd: torch.optim.SGD(momentum=0.9, nesterov=False)
            lr=0.5,  # --lr 0.5 ...
            lr_base_batch=1024,  # ... for the global batch 8 x 128
            momentum=0.9,  # --momentum 0.9 (default)
            weight_decay=2e-5,  # --weight-decay 0.00002
            decay_norm_and_bias=False,  # --norm-weight-decay 0.0
            label_smoothing=0.1,  # --label-smoothing 0.1
        ),
        schedule=ScheduleConfig(
            name="cosine",  # --lr-scheduler cosineannealinglr, eta_min = --lr-min 0.0
            epochs=600,  # --epochs 600
            warmup_epochs=5,  # --lr-warmup-epochs 5 --lr-warmup-method linear
            warmup_lr=0.5 * 0.01,  # --lr-warmup-decay 0.01 (default): warm-up starts at 0.01 x lr
            min_lr=0.0,
        ),
        ema=EmaConfig(enabled=True, decay=0.99998, every_k=32),  # --model-ema-decay 0.99998, --model-ema-steps 32
        run=RunConfig(output_dir="runs/{name}", amp="none", monitor="ema"),
    )


# --------------------------------------------------------------------------------------------------------------
# ResNet strikes back, procedure A3 (78.1 % top-1 at 224)
# --------------------------------------------------------------------------------------------------------------
RSB_SOURCE = (
    "ResNet strikes back (Wightman, Touvron, Jegou 2021), procedure A3, Table 1: https://arxiv.org/abs/2110.00476"
)


def _resnet50_rsb_a3() -> Recipe:
    """RSB procedure A3 (Table 1 of the paper): 100 epochs at 160 px, tested at 224 px.

    Deviations: the paper trains with binary cross-entropy on the mixed targets; this package uses soft-target
    cross-entropy. RandAugment (m6, std 0.5) is not shipped. The paper's column lists no label smoothing, no
    stochastic depth and no EMA for A3 (A1/A2 use stochastic depth 0.05), so neither does this preset.
    """
    return Recipe(
        name="resnet50_rsb_a3",
        source=RSB_SOURCE,
        model=ModelConfig(name="recipe_resnet50", num_classes=1000, drop_rate=0.0, drop_path_rate=0.0),
        data=DataConfig(dataset="folder", batch_size=256, num_workers=16),  # batch size 2048 = 8 x 256
        aug=AugConfig(
            train_pipeline="rrc",  # RRC: yes
            train_size=160,  # train resolution 160
            rrc_scale=(0.08, 1.0),
            hflip=0.5,  # H. flip: yes
            cutout_p=0.0,  # erasing prob.: none
            test_size=224,  # test resolution 224
            test_crop_pct=0.95,  # test crop ratio 0.95
            interpolation="bicubic",  # timm's resnet50.a3_in1k pretrained_cfg
        ),
        mix=MixConfig(mixup_alpha=0.1, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5),  # Mixup 0.1, CutMix 1.0
        optim=OptimConfig(
            name="lamb",  # optimizer LAMB
            lr=8e-3,  # LR 8e-3 ...
            lr_base_batch=2048,  # ... for batch size 2048
            weight_decay=0.02,  # weight decay 0.02
            decay_norm_and_bias=False,  # timm's train.py excludes biases and norms from weight decay
            label_smoothing=0.0,  # label smoothing: none for A3 (BCE loss instead, see docstring)
        ),
        schedule=ScheduleConfig(
            name="cosine",  # LR decay: cosine
            epochs=100,  # epochs 100
            warmup_epochs=5,  # warmup epochs 5
            warmup_lr=1e-6,  # timm train.py's --warmup-lr and --min-lr of the time
            min_lr=1e-6,
        ),
        ema=EmaConfig(enabled=False),  # EMA: none
        run=RunConfig(output_dir="runs/{name}", amp="bf16"),  # mixed precision: yes
    )


# --------------------------------------------------------------------------------------------------------------
# EfficientNet B0-B7 (Tan & Le 2019) with the reference TPU implementation's hyper-parameters
# --------------------------------------------------------------------------------------------------------------
EFFICIENTNET_SOURCE = (
    "EfficientNet (Tan & Le 2019), Section 5.2: https://arxiv.org/abs/1905.11946, and its reference "
    "implementation https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet (main.py, utils.py)"
)

#: variant -> (resolution, dropout rate), from ``efficientnet_builder.efficientnet_params``.
EFFICIENTNET_VARIANTS: dict[str, tuple[int, float]] = {
    "b0": (224, 0.2),
    "b1": (240, 0.2),
    "b2": (260, 0.3),
    "b3": (300, 0.3),
    "b4": (380, 0.4),
    "b5": (456, 0.4),
    "b6": (528, 0.5),
    "b7": (600, 0.5),
}

_EFFNET_GLOBAL_BATCH = 2048  # main.py: --train_batch_size 2048
_EFFNET_EPOCHS = 350  # main.py: 218949 train steps x 2048 / 1281167 images = 350 epochs
_EFFNET_EMA = 0.9999  # main.py: --moving_average_decay 0.9999, applied every step, not adjusted


def _efficientnet(variant: str) -> Recipe:
    """EfficientNet-``variant`` as trained by the paper's reference implementation.

    The paper: RMSProp (decay 0.9, momentum 0.9), weight decay 1e-5, lr 0.256 decayed by 0.97 every 2.4 epochs,
    EMA 0.9999, stochastic depth with survival 0.8, dropout 0.2 (B0) to 0.5 (B7), AutoAugment. The reference
    code scales ``base_learning_rate = 0.016`` per 256 images (0.256 at batch 4096), warms up 5 epochs, uses
    epsilon 1e-3 and label smoothing 0.1, and crops ``size / (size + 32)`` at test time. Not shipped here:
    AutoAugment; batch-norm momentum 0.99 is the model's business. timm's ``rmsproptf`` reproduces TF's RMSProp.
    """
    size, dropout = EFFICIENTNET_VARIANTS[variant]
    per_process = _EFFNET_GLOBAL_BATCH // 8
    # torchvision-style EMA: the trainer uses decay_step = 1 - (1 - decay) * world * batch * every_k / epochs.
    # Store the decay that gives the reference 0.9999 per step at the reference global batch.
    ema_nominal = 1.0 - (1.0 - _EFFNET_EMA) * _EFFNET_EPOCHS / _EFFNET_GLOBAL_BATCH
    return Recipe(
        name=f"efficientnet_{variant}",
        source=EFFICIENTNET_SOURCE,
        model=ModelConfig(
            name=f"recipe_efficientnet_{variant}",
            num_classes=1000,
            drop_rate=dropout,  # dropout before the classifier
            drop_path_rate=0.2,  # survival probability 0.8 (drop_connect_rate 0.2)
            stochastic_depth_mode="row",  # TF's drop_connect drops whole samples
        ),
        data=DataConfig(dataset="folder", batch_size=per_process, num_workers=16),
        aug=AugConfig(
            train_pipeline="rrc",  # inception crop: area (0.08, 1), aspect (3/4, 4/3)
            train_size=size,
            rrc_scale=(0.08, 1.0),
            hflip=0.5,
            test_size=size,
            test_crop_pct=size / (size + 32),  # CROP_PADDING = 32
            interpolation="bicubic",
        ),
        mix=MixConfig(),  # no Mixup/CutMix in the EfficientNet recipe
        optim=OptimConfig(
            name="rmsproptf",  # RMSProp, decay (alpha) 0.9 = timm's default for rmsproptf
            lr=0.016,  # base_learning_rate 0.016 ...
            lr_base_batch=256,  # ... per 256 images
            momentum=0.9,
            eps=1e-3,  # RMSProp epsilon 0.001
            weight_decay=1e-5,  # weight decay 1e-5 (an L2 term: coupled, as RMSpropTF applies it)
            decay_norm_and_bias=False,  # the reference skips batch-norm variables
            label_smoothing=0.1,
        ),
        schedule=ScheduleConfig(
            name="step",  # exponential decay, staircase
            epochs=_EFFNET_EPOCHS,
            warmup_epochs=5,  # warmup_epochs 5, from lr 0
            warmup_lr=0.0,
            step_size_epochs=2.4,  # decay_epochs 2.4
            gamma=0.97,  # decay_factor 0.97
        ),
        ema=EmaConfig(enabled=True, decay=ema_nominal, every_k=1),
        run=RunConfig(output_dir="runs/{name}", amp="bf16"),
    )


# --------------------------------------------------------------------------------------------------------------
# The built-in demo: the whole recipe on the real 8x8 digits scans, a few minutes on 2 CPU cores
# --------------------------------------------------------------------------------------------------------------
DEMO_SOURCE = (
    "timm-recipes built-in demo: the lecture's recipe (multi-scale crops, Cutout, Mixup/CutMix, label smoothing, "
    "cosine with warm-up, EMA, early stopping) scaled down to scikit-learn's digits"
)


def _demo() -> Recipe:
    """ResNet-18 with stochastic depth on the built-in digits, sized for a CPU run of a few minutes."""
    return Recipe(
        name="demo",
        source=DEMO_SOURCE,
        model=ModelConfig(name="recipe_resnet18", num_classes=10, drop_rate=0.0, drop_path_rate=0.05),
        data=DataConfig(dataset="digits", image_size=32, batch_size=64, num_workers=0, pin_memory=False),
        aug=AugConfig(
            train_pipeline="multiscale",
            train_size=32,
            scale_range=(32, 40),  # short side S in [32, 40], then a random 32 x 32 crop
            hflip=0.0,  # a mirrored digit is another symbol
            cutout_p=0.5,  # the lecture's Cutout probability
            cutout_size=0.25,
            test_size=32,
            test_crop_pct=0.9,  # resize to floor(32 / 0.9) = 35 (timm's rule), center crop 32
            interpolation="bilinear",
        ),
        mix=MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.5, switch_prob=0.5),
        optim=OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1),
        schedule=ScheduleConfig(name="cosine", epochs=30, warmup_epochs=2, warmup_lr=0.0, min_lr=0.0),
        # decay per update = 1 - (1 - 0.995) * 64 * 4 / 30 = 0.957 (horizon ~ 23 updates ~ 90 steps ~ 4 epochs)
        ema=EmaConfig(enabled=True, decay=0.995, every_k=4, warmup=True),
        run=RunConfig(output_dir="runs/{name}", seed=0, patience=10, monitor="ema", log_interval=10),
    )


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning pretrained weights on a folder of your own images: BiT-HyperRule
# --------------------------------------------------------------------------------------------------------------
FINETUNE_SOURCE = (
    'BiT-HyperRule, the fine-tuning rule of Kolesnikov et al., "Big Transfer (BiT): General Visual Representation '
    'Learning", https://arxiv.org/abs/1912.11370, Sec. 3.3: SGD with momentum 0.9, lr 0.003 for a batch of 512, '
    "no weight decay, lr divided by 10 at 30 %, 60 % and 90 % of the steps, MixUp alpha 0.1"
)


def _finetune(name: str, model: str, init: str) -> Recipe:
    """Fine-tune ``init`` (timm's ImageNet-1k weights) on ``data.root`` with the BiT-HyperRule.

    BiT sets the number of steps by the data set's size (500 steps under 20k images, 10k up to 500k, 20k beyond);
    a recipe counts epochs, so the 30 epochs here (decays 9, 18, 27 epochs after the warm-up) are the horizon to
    change with ``--set schedule.epochs=... schedule.milestones_epochs=...``. Left to the source weights: mean, std and
    interpolation (unset here, taken from their ``pretrained_cfg``); ``model.num_classes`` comes from the data.
    Not from BiT: the random resized crop (BiT resizes, then takes random crops), a one-epoch linear warm-up, and
    the option of a frozen backbone (``optim.freeze_backbone_epochs``), a head lr multiplier
    (``optim.head_lr_scale``) and layer-wise lr decay (``optim.layer_decay``), all off here.
    """
    return Recipe(
        name=name,
        source=FINETUNE_SOURCE,
        model=ModelConfig(name=model, num_classes=None, init=init),  # classes: the sub-folders of data.root/train
        data=DataConfig(dataset="folder", batch_size=64, num_workers=8),
        aug=AugConfig(train_pipeline="rrc", train_size=224, test_size=224, test_crop_pct=0.875, hflip=0.5),
        mix=MixConfig(mixup_alpha=0.1, cutmix_alpha=0.0, prob=1.0),  # BiT: MixUp alpha 0.1
        optim=OptimConfig(
            name="momentum",  # BiT: SGD with momentum 0.9
            lr=0.003,  # BiT: 0.003 ...
            lr_base_batch=512,  # ... for a batch of 512
            momentum=0.9,
            weight_decay=0.0,  # BiT: no weight decay at fine-tuning
            label_smoothing=0.0,
        ),
        schedule=ScheduleConfig(
            name="step", epochs=30, warmup_epochs=1, milestones_epochs=(9, 18, 27), gamma=0.1
        ),  # BiT: / 10 at 30, 60, 90 % of the steps
        ema=EmaConfig(enabled=False),
        run=RunConfig(output_dir="runs/{name}", patience=None, monitor="raw"),
    )


PRESETS: dict[str, Recipe] = {
    "resnet50_tv2": _resnet50_tv2(),
    "resnet50_rsb_a3": _resnet50_rsb_a3(),
    **{f"efficientnet_{v}": _efficientnet(v) for v in EFFICIENTNET_VARIANTS},
    "demo": _demo(),
    "finetune_resnet50": _finetune("finetune_resnet50", "recipe_resnet50", "pretrained"),  # timm/resnet50.tv2_in1k
    "finetune_efficientnet_b0": _finetune(
        "finetune_efficientnet_b0", "recipe_efficientnet_b0", "pretrained"
    ),  # timm/efficientnet_b0.ra4_e3600_r224_in1k
}


def list_presets() -> list[str]:
    """The names of the built-in recipes."""
    return list(PRESETS)


def get_preset(name: str) -> Recipe:
    """The built-in recipe ``name`` (recipes are frozen, so the shared instance is safe to return).

    Raises:
        ValueError: no preset of that name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"name: unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def load_recipe(path_or_name: str | os.PathLike[str]) -> Recipe:
    """A recipe from a YAML file, or a preset by name (a file of that name wins).

    A file may extend a preset or another file with a top-level ``base:`` key; its own keys then override the
    base's, section by section (``name`` defaults to the file's stem)::

        base: demo            # a preset name, or a YAML file (relative to this file)
        optim: {lr: 0.2}
        schedule: {epochs: 10}

    Without ``base:``, keys the file leaves out take the built-in defaults (:class:`~timm_recipes.config.Recipe`:
    a ResNet-50 on an ImageNet folder for 600 epochs); a file that leaves keys out gets a warning saying so.

    Raises:
        FileNotFoundError: neither a file nor a preset of that name exists (also for a ``base``).
        RecipeError: the file is not valid YAML or not a valid recipe (the message names the key), or its ``base``
            chain loops.
    """
    return _load(path_or_name, ())


def _load(path_or_name: str | os.PathLike[str], chain: tuple[str, ...]) -> Recipe:
    import warnings

    from timm_recipes.config import RecipeError, recipe_from_dict, recipe_to_dict

    text, path = str(path_or_name), Path(path_or_name)
    if text in PRESETS and not path.is_file():
        return PRESETS[text]
    if not path.is_file():
        raise FileNotFoundError(f"recipe: no file {text!r} and no preset of that name (presets: {', '.join(PRESETS)})")
    data = read_recipe_yaml(path)
    if not isinstance(data, dict) or "base" not in data:
        if isinstance(data, dict):
            missing = _missing_keys(data)
            if missing:
                warnings.warn(
                    f"recipe {path} has no 'base:' key and leaves {len(missing)} keys to the built-in defaults "
                    f"(e.g. {', '.join(missing[:3])}: a ResNet-50 on ImageNet for 600 epochs); add 'base: <preset>' "
                    f"(e.g. base: demo) to extend a preset instead",
                    stacklevel=3,
                )
        return recipe_from_file_data(data, path)
    data = dict(data)
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise RecipeError("base", f"must name a preset or a recipe file, got {base!r} (in {path})")
    key = str(path.resolve())
    if key in chain:
        raise RecipeError("base", f"the base chain loops back to {path}")
    relative = path.parent / base
    base_recipe = _load(relative if relative.is_file() else base, (*chain, key))
    data.setdefault("name", path.stem)
    merged = _merge(recipe_to_dict(base_recipe), data)
    try:
        return recipe_from_dict(merged)
    except RecipeError as err:
        raise RecipeError(err.key, f"{err.reason} (in {path}, based on {base})") from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _missing_keys(data: dict) -> list[str]:
    from timm_recipes.config import Recipe, recipe_to_dict

    full = recipe_to_dict(Recipe())
    missing = []
    for section, values in full.items():
        given = data.get(section)
        if isinstance(values, dict):
            given = given if isinstance(given, dict) else {}
            missing += [f"{section}.{k}" for k in values if k not in given]
        elif section not in data and section not in ("source",):
            missing.append(section)
    return missing

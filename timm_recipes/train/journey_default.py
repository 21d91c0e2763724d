"""The built-in journey: the lecture's and the torchvision blog's ingredients, in their order, on data-starved digits.

``timm-recipes journey`` without a definition runs the first one (``journey fixres`` the second, see
:data:`FIXRES_JOURNEY`); ``timm-recipes journey --print-default`` writes it as
YAML to start a journey of one's own. The regime is chosen so that regularisation can matter and FixRes has
something to look for, sized for about 20 minutes on two CPU cores (its 31 runs took 7.4 min of wall time on a quiet
2-core machine when measured, 12.9 min of CPU time):

* **data**: the built-in digits with only 20 training images per class (200 images; val 179 and test 359
  unchanged), rendered at 32 px. On the full 1,259 images the demo recipe reaches 99.7 % test top-1, where one
  image is 0.28 points.
* **model**: timm's ``test_resnet`` (a 0.37 M-parameter ResNet with one BasicBlock per stage, BatchNorm, drop-path
  support), not ResNet-18: 27 trainings must fit in the time, and ResNet-18 trains an order of magnitude
  slower on a CPU at these sizes.
* **train size 24, test size 24** (crop 1.0): random-resized crops of a 32 px digit make it look *larger* during
  training than the centre view at test time, the train-test discrepancy FixRes corrects (test sizes 24–36).

Adjustments to the lecture's / blog's order, and why:

* the baseline has no augmentation at all (a full-image resize): a mirrored digit is another symbol, so the
  torchvision baseline's flip does not apply, and its random-resized crop is the *multi-scale crops* step here;
* *multi-scale crops* is a random-resized crop (area 35–100 %), the blog's and timm's form of the lecture's
  random-scale cropping, and the one whose object-size discrepancy FixRes is about;
* the blog's TrivialAugment, long training, weight-decay tuning and repeated augmentation are left out (not
  implemented in this package, or outside the time budget); its *inference resize tuning* is FixRes's test-size
  selection (reported as its own row);
* *stochastic depth* is not a step of the blog's ResNet-50 recipe; it is the lecture's and is kept;
* the *ensemble* averages the logits of the seeds' checkpoints of the last trained step (EMA weights), at the
  recipe's test size: it is compared with that step's mean, not with FixRes (FixRes weights are not checkpoints).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN_JOURNEYS", "DEFAULT_BASE", "DEFAULT_JOURNEY", "DEFAULT_STEPS", "FIXRES_JOURNEY"]

DEFAULT_BASE: dict[str, Any] = {
    "name": "journey-digits20",
    "source": "timm-recipes built-in journey (the lecture's ingredients on 20 digits per class)",
    "model": {"name": "test_resnet", "num_classes": 10, "drop_rate": 0.0, "drop_path_rate": 0.0},
    "data": {
        "dataset": "digits", "image_size": 32, "train_per_class": 20, "batch_size": 32, "num_workers": 0,
        "pin_memory": False,
    },
    "aug": {
        "train_pipeline": "rrc", "train_size": 24, "rrc_scale": [1.0, 1.0], "rrc_ratio": [1.0, 1.0], "hflip": 0.0,
        "cutout_p": 0.0, "cutout_size": 0.25, "test_size": 24, "test_crop_pct": 1.0, "interpolation": "bilinear",
    },
    "mix": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5},
    # torchvision's original ResNet recipe, scaled: SGD momentum 0.9, lr divided by 10 at 1/3 and 2/3 of training
    "optim": {"name": "momentum", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "label_smoothing": 0.0},
    "schedule": {"name": "step", "epochs": 40, "warmup_epochs": 0, "milestones_epochs": [13, 26], "gamma": 0.1},
    # per-step decay 1 - (1 - 0.95) * 32 / 40 = 0.96: a horizon of ~25 steps, about 4 of the 40 epochs
    "ema": {"enabled": False, "decay": 0.95, "every_k": 1, "warmup": True},
    "fixres": {"test_sizes": [24, 27, 30, 33, 36], "test_crop_pcts": [1.0], "epochs": 2, "lr": 1e-3},
    "run": {"seed": 0, "patience": None, "monitor": "raw", "progress": False, "log_interval": 50},
}  # fmt: skip

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"name": "baseline", "note": "SGD momentum, step schedule, no augmentation, no smoothing, no EMA"},
    {
        "name": "warm-up + cosine",
        "set": {"schedule.name": "cosine", "schedule.warmup_epochs": 2, "optim.name": "sgd"},
        "note": "the blog's 'LR optimizations' (Nesterov momentum, linear warm-up, cosine decay)",
    },
    {
        "name": "multi-scale crops",
        "set": {"aug.rrc_scale": [0.35, 1.0], "aug.rrc_ratio": [0.75, 1.3333]},
        "note": "random-resized crops, 35-100 % of the area",
    },
    {"name": "Cutout", "set": {"aug.cutout_p": 0.5}, "note": "the lecture's random erasing, p 0.5, a quarter side"},
    {"name": "label smoothing", "set": {"optim.label_smoothing": 0.1}},
    {"name": "Mixup", "set": {"mix.mixup_alpha": 0.2}, "note": "alpha 0.2 (the blog's), every batch"},
    {"name": "CutMix", "set": {"mix.cutmix_alpha": 1.0}, "note": "alpha 1.0, half of the batches (switch 0.5)"},
    {"name": "stochastic depth", "set": {"model.drop_path_rate": 0.05}, "note": "the lecture's linear rule"},
    {
        "name": "EMA",
        "set": {"ema.enabled": True, "run.monitor": "ema"},
        "note": "weights averaged every step (horizon ~4 epochs); the EMA weights are evaluated and chosen",
    },
    {"name": "FixRes", "kind": "fixres", "note": "test size chosen on val, then classifier + last BN fine-tuned"},
    {"name": "ensemble", "kind": "ensemble", "note": "logit average of the seeds' EMA checkpoints"},
]

DEFAULT_JOURNEY: dict[str, Any] = {
    "name": "digits20",
    "base": DEFAULT_BASE,
    "seeds": [0, 1, 2],
    "steps": DEFAULT_STEPS,
}

FIXRES_JOURNEY: dict[str, Any] = {
    "name": "fixres-digits",
    "base": {
        **DEFAULT_BASE,
        "name": "fixres-digits50",
        "source": "timm-recipes built-in FixRes journey (random-resized crops of 8-100 % at 24 px from 32 px digits)",
        "data": {**DEFAULT_BASE["data"], "train_per_class": 50},
        "aug": {**DEFAULT_BASE["aug"], "rrc_scale": [0.08, 1.0], "rrc_ratio": [0.75, 1.3333]},
        "optim": {**DEFAULT_BASE["optim"], "name": "sgd", "label_smoothing": 0.1},
        "schedule": {"name": "cosine", "epochs": 30, "warmup_epochs": 2},
        "fixres": {**DEFAULT_BASE["fixres"], "test_crop_pcts": [1.0, 0.875]},
    },
    "seeds": [0, 1, 2],
    "steps": [
        {"name": "RRC 8-100 % at 24 px", "note": "ImageNet's crop range: digits look larger in training than at test"},
        {"name": "FixRes", "kind": "fixres", "note": "test size and crop chosen on val, then classifier + last BN"},
    ],
}
"""A journey that isolates FixRes: random-resized crops of ImageNet's range, then FixRes (``journey fixres``)."""

BUILTIN_JOURNEYS: dict[str, dict[str, Any]] = {"default": DEFAULT_JOURNEY, "fixres": FIXRES_JOURNEY}

"""Training: schedules, losses, the engine, the trainer, FixRes and search.

Names are resolved lazily (PEP 562) so that ``import timm_recipes.train`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "create_scheduler": "schedules",
    "LRScheduler": "schedules",
    "SoftTargetCrossEntropy": "losses",
    "create_loss": "losses",
    "fit": "trainer",
    "FitResult": "trainer",
    "evaluate": "engine",
    "train_one_epoch": "engine",
    "fixres_finetune": "fixres",
    "select_test_resolution": "fixres",
    "run_fixres": "fixres",
    "FixResResult": "fixres",
    "find_last_batchnorm": "fixres",
    "create_optimizer": "optim",
    "kl_div_loss": "losses",
    "smoothed_targets": "losses",
    "WeightEma": "ema",
    "adjust_ema_decay": "ema",
    "EarlyStopping": "trainer",
    "load_checkpoint_model": "builders",
    "build_datasets": "builders",
    "create_recipe_model": "builders",
    "open_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "Distributed": "distributed",
    "ShardedTrainSampler": "distributed",
    "StridedEvalSampler": "distributed",
    "run_search": "search",
    "SearchResult": "search",
    "sample_trial": "search",
    "WeightsSource": "weights",
    "resolve_weights": "weights",
    "load_source_into": "weights",
    "load_model_reference": "weights",
    "FineTuneControl": "finetune",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

"""Everything between an image file and a training batch.

Names are resolved lazily (PEP 562) so that ``import timm_recipes.data`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # pipelines.py
    "multiscale_crop_pipeline": "pipelines",
    "random_resized_crop_pipeline": "pipelines",
    "eval_pipeline": "pipelines",
    "eval_pipeline_from_model": "pipelines",
    "CutoutConfig": "pipelines",
    # mixing.py
    "MixupCutmix": "mixing",
    "MixupCutmixCollator": "mixing",
    "MixParams": "mixing",
    "smooth_one_hot": "mixing",
    "mixup_batch": "mixing",
    "cutmix_batch": "mixing",
    # datasets.py
    "ImageFolderDataset": "datasets",
    "DigitsDataset": "datasets",
    "create_loader": "datasets",
    "load_sample_photos": "datasets",
    "decode_image": "datasets",
    "CorruptImageError": "datasets",
    "SeededLoader": "datasets",
    "sample_jpeg_bytes": "datasets",
    "sample_photo_paths": "datasets",
    "digits_split_indices": "datasets",
    "IMAGE_EXTENSIONS": "datasets",
    # preview.py
    "preview_pipeline": "preview",
    "preview_mixing": "preview",
    "PreviewGrid": "preview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

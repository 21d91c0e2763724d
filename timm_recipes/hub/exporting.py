"""Export trained weights in timm's Hugging Face Hub layout, and prove that the folder loads back to the same outputs.

The folder is what timm's own ``push_to_hf_hub`` uploads (written with its ``save_for_hf``, safetensors only), plus
the recipe and the card:

    model.safetensors   the bare model's ``state_dict`` (no pickle anywhere)
    config.json         ``architecture``, ``num_classes``, ``num_features``, ``global_pool``, ``label_names``,
                        ``model_args`` and a ``pretrained_cfg`` with input size, test size, crops, mean/std,
                        interpolation and label names
    recipe.yaml         the resolved training recipe
    README.md           the model card (:mod:`timm_recipes.hub.card`)

``architecture`` is timm's own name when the recipe model's inference architecture is a plain timm one
(``recipe_resnet50`` → ``resnet50``, ``recipe_efficientnet_b0`` → ``efficientnet_b0``): the recipe models change
training only, their ``state_dict`` keys and eval outputs are timm's, so plain timm loads the weights without this
package. Training-only model arguments (``stochastic_depth_mode``) are left out of ``model_args`` for that reason.

The weight variants of one run are tags of one family, ``recipe_<arch>.<tag>``, published to separate repositories
(``org/recipe_resnet18.ema_digits32``, ``org/recipe_resnet18.fixres40_digits``), see :func:`default_tag`.

Before :func:`export` returns, the folder is loaded back with ``timm.create_model("local-dir:<folder>",
pretrained=True)`` and must give outputs identical (``torch.equal``) to the source model on a fixed batch, at the
train and at the test size; otherwise nothing is left behind and :class:`ExportError` says what differs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import is_model
from timm.models._hub import save_for_hf
from torch import nn

from timm_recipes._files import apply_umask, check_writable
from timm_recipes.hub.card import VARIANTS, Measurement, build_model_card, coerce_recipe
from timm_recipes.hub.errors import ExportError

__all__ = [
    "EXPORT_FILES",
    "TRAINING_ONLY_ARGS",
    "check_replaceable_export",
    "default_tag",
    "export",
    "native_architecture",
    "unwrap_model",
    "variant_name",
    "verify_export",
]

EXPORT_FILES = ("model.safetensors", "config.json", "recipe.yaml", "README.md")
TRAINING_ONLY_ARGS = frozenset({"stochastic_depth_mode", "drop_rate", "drop_path_rate", "drop_block_rate"})
"""Model arguments that change training only, never the inference weights: left out of ``config.json``."""

_TAG = re.compile(r"[a-z0-9][a-z0-9_]*")
_PIL_INTERPOLATION = {"area": "box"}  # OpenCV's INTER_AREA is PIL's BOX filter (area averaging) for timm


def check_replaceable_export(folder: str | os.PathLike[str], *, protect: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse to let ``overwrite`` delete anything but a previous export.

    ``folder`` may be replaced only when it is a folder holding nothing but the files of an export
    (:data:`EXPORT_FILES`, with a ``config.json`` written by this package), and it is neither the current
    directory nor one of its parents, nor a folder that contains one of ``protect`` (the exported run).

    Raises:
        ValueError: naming the folder and the reason; nothing is deleted.
    """
    folder = Path(folder)
    real = folder.resolve()
    where = str(folder)
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise ValueError(f"--overwrite refuses to replace {where!r}: it is the current directory or one of its parents")
    for path in protect:
        p = Path(path).resolve()
        if p == real or real in p.parents:
            raise ValueError(f"--overwrite refuses to replace {where!r}: it contains {str(path)!r}, the source")
    if not folder.is_dir() or folder.is_symlink():
        raise ValueError(f"--overwrite refuses to replace {where!r}: it is not a folder written by an export")
    entries = sorted(e.name for e in folder.iterdir())
    foreign = [name for name in entries if name not in EXPORT_FILES]
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ValueError(
            f"--overwrite refuses to replace {where!r}: it is not a previous export, it holds {foreign[:5]}{more}"
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        ours = isinstance(config, dict) and isinstance(config.get("timm_recipes"), dict)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ValueError(f"--overwrite refuses to replace {where!r}: it has no config.json written by timm-recipes")


def native_architecture(model_name: str) -> str | None:
    """timm's own architecture for a recipe model (``recipe_resnet50`` → ``resnet50``), else None."""
    if not model_name.startswith("recipe_"):
        return None
    native = model_name.removeprefix("recipe_")
    return native if is_model(native) else None


def variant_name(model_name: str, tag: str) -> str:
    """``recipe_<arch>.<tag>``: the name of one weight variant (also its Hub repository's name)."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"tag must be lowercase letters, digits and '_' (e.g. 'ema_digits32'), got {tag!r}")
    return f"{model_name}.{tag}"


def default_tag(variant: str, dataset: str | None, train_size: int, test_size: int | None = None) -> str:
    """The tag of a variant: ``digits32`` (raw), ``ema_digits32`` (EMA), ``fixres40_digits`` (FixRes at 40 px)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    data = re.sub(r"[^a-z0-9]+", "_", (dataset or "custom").lower()).strip("_") or "custom"
    if variant == "fixres":
        return f"fixres{test_size or train_size}_{data}"
    return f"{'ema_' if variant == 'ema' else ''}{data}{train_size}"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare timm model inside ``torch.compile``, ``DistributedDataParallel``/``DataParallel`` or an EMA wrapper."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif not hasattr(model, "pretrained_cfg") and isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def _on_cpu_contiguous(model: nn.Module) -> nn.Module:
    """``model`` itself if all its tensors are contiguous CPU tensors, else such a copy (same values, bit for bit).

    safetensors stores contiguous CPU tensors, and the load-back check compares outputs on the CPU, where they
    are reproducible; a model on an accelerator or in ``channels_last`` is exported through a copy.
    """
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and t.is_contiguous() for t in tensors):
        return model
    return copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------------------------------ config


def _preprocessing(
    model: nn.Module, recipe: Any, variant: str, data_config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Input sizes, crops, normalisation and interpolation of the exported weights.

    Precedence: ``data_config`` > the recipe's sizes and eval preprocessing > ``model.pretrained_cfg``. FixRes
    weights keep the ``test_input_size`` / ``test_crop_pct`` that FixRes wrote into ``model.pretrained_cfg``.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    out: dict[str, Any] = {}
    if recipe is not None:
        a, c = recipe.aug, recipe.model.in_chans
        out.update(
            input_size=(c, a.train_size, a.train_size),
            crop_pct=a.test_crop_pct,
            test_input_size=(c, a.test_size, a.test_size),
            test_crop_pct=a.test_crop_pct,
            interpolation=a.interpolation,
            mean=tuple(a.mean),
            std=tuple(a.std),
        )
    if variant == "fixres":
        for key in ("test_input_size", "test_crop_pct"):
            if cfg.get(key) is not None:
                out[key] = cfg[key]
    out.update(data_config or {})
    for key in ("input_size", "test_input_size"):
        if out.get(key) is not None:
            out[key] = tuple(int(v) for v in out[key])
    if "interpolation" in out:
        out["interpolation"] = _PIL_INTERPOLATION.get(out["interpolation"], out["interpolation"])
    return out


_PROVENANCE = (
    "origin_url", "paper_ids", "paper_name", "notes", "description", "hf_hub_id", "hf_hub_filename", "license",
)  # fmt: skip
"""``pretrained_cfg`` keys describing where the *registry's* weights come from (the recipe models' default tags are
timm's ImageNet weights, with their licence): not true of exported weights, whose licence is the card's."""


def _rewrite_config(path: Path, *, architecture: str, model_name: str, variant: str, tag: str) -> dict[str, Any]:
    """timm's ``config.json`` with the native architecture, inference-only ``model_args`` and our provenance."""
    from timm_recipes import __version__

    config = json.loads(path.read_text(encoding="utf-8"))
    config["architecture"] = architecture
    config["model_args"] = {k: v for k, v in config.get("model_args", {}).items() if k not in TRAINING_ONLY_ARGS}
    config["pretrained_cfg"] = {k: v for k, v in config["pretrained_cfg"].items() if k not in _PROVENANCE}
    config["timm_recipes"] = {"model": model_name, "variant": variant, "tag": tag, "version": __version__}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def _write_recipe(recipe: Any, path: Path) -> None:
    if recipe is None:
        path.write_text("# The training recipe was not recorded with these weights.\n", encoding="utf-8")
        return
    from timm_recipes.config import save_recipe

    save_recipe(recipe, path)


# ------------------------------------------------------------------------------------------------ verification


def _check_batches(config: Mapping[str, Any], batch: torch.Tensor | None) -> list[torch.Tensor]:
    if batch is not None:
        return [batch]
    pcfg = config["pretrained_cfg"]
    sizes = dict.fromkeys(tuple(pcfg[k]) for k in ("input_size", "test_input_size") if pcfg.get(k))
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, *size, generator=generator) for size in sizes]


def verify_export(model: nn.Module, folder: str | os.PathLike[str], *, batch: torch.Tensor | None = None) -> None:
    """Load ``folder`` with ``timm.create_model("local-dir:...", pretrained=True)`` and compare it with ``model``.

    The state dicts must be equal tensor for tensor, and the eval outputs identical (``torch.equal``) on a fixed
    batch (``batch``, or two seeded normal images at the train and at the test size). ``model`` is left in the
    train/eval mode it was in.

    Raises:
        ExportError: naming what differs (keys, a tensor, or the largest output difference).
    """
    model = unwrap_model(model)
    folder = Path(folder)
    try:
        loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as err:
        raise ExportError(f"the exported folder {folder} does not load in timm: {type(err).__name__}: {err}") from err
    source, copy = model.state_dict(), loaded.state_dict()
    if source.keys() != copy.keys():
        missing, extra = sorted(source.keys() - copy.keys()), sorted(copy.keys() - source.keys())
        raise ExportError(f"the exported model's state_dict keys differ: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, tensor in source.items():
        if not torch.equal(tensor.detach().cpu(), copy[key]):
            raise ExportError(f"the exported tensor {key!r} differs from the source model's")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    loaded = loaded.to(device=device, dtype=dtype).eval()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in _check_batches(config, batch):
                x = x.to(device=device, dtype=dtype)
                expected, got = model(x), loaded(x)
                if expected.shape != got.shape or not torch.equal(expected, got):
                    diff = (expected - got).abs().max().item() if expected.shape == got.shape else float("nan")
                    raise ExportError(
                        f"the exported folder {folder} loads as {config['architecture']!r} but its outputs differ from "
                        f"the source model's on a fixed {tuple(x.shape)} batch (max |difference| {diff:.3g})"
                    )
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------------ export


def export(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    recipe: Any = None,
    metrics: Sequence[Measurement | Mapping[str, Any]] | None = None,
    variant: str = "raw",
    tag: str | None = None,
    label_names: Sequence[str] | None = None,
    dataset: str | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    data_config: Mapping[str, Any] | None = None,
    native: bool = True,
    check_batch: torch.Tensor | None = None,
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``model`` as a timm Hub folder (safetensors, config, recipe, card) and verify that it loads back.

    Args:
        model: A timm model (``recipe_*`` or any timm architecture), possibly inside ``torch.compile``, DDP or an
            EMA wrapper. Its ``pretrained_cfg["architecture"]`` names it.
        folder: The folder to create. It must not exist or be empty, unless ``overwrite``.
        recipe: The training recipe (``timm_recipes.config.Recipe`` or a dict of its sections), for
            ``recipe.yaml``, the card's recipe table and the input sizes.
        metrics: Evaluations that were actually run (:class:`~timm_recipes.hub.card.Measurement` or dicts of its
            fields), for the card; the ``model-index`` lists those of this ``variant``.
        variant: Which weights these are: ``"raw"``, ``"ema"`` or ``"fixres"``.
        tag: The variant's tag (``recipe_<arch>.<tag>``); default :func:`default_tag`.
        label_names: Class names, index by index (``config.json`` ``label_names``).
        dataset: The data set's name; default from the recipe (``digits`` or the image folder's name).
        license: Licence of the weights; default the recipe's ``hub.license``, else ``apache-2.0``.
        repo_id: Where the weights will be published (used in the card's usage snippets).
        data_config: Overrides of the preprocessing (``input_size``, ``test_input_size``, ``crop_pct``,
            ``test_crop_pct``, ``mean``, ``std``, ``interpolation``).
        native: Write timm's own architecture name when there is one (``recipe_resnet50`` → ``resnet50``).
        check_batch: The batch of the load-back check (default: seeded normal images at train and test size).
        overwrite: Replace an existing non-empty ``folder``, which must be a previous export
            (:func:`check_replaceable_export`).
        protect: Paths the replaced folder must not contain (e.g. the run being exported).

    Returns:
        The folder.

    Raises:
        ExportError: the folder does not load back to identical outputs (nothing is left behind).
        ValueError: bad arguments, or ``folder`` is not empty and ``overwrite`` is off.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    model = unwrap_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = _on_cpu_contiguous(model)
    model_name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not model_name or not is_model(model_name):
        raise ValueError("model: expected a timm model (created with timm.create_model, with a pretrained_cfg)")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not overwrite:
            raise ValueError(
                f"export folder {str(folder)!r} exists and is not empty; pass overwrite=True (CLI: --overwrite) to "
                "replace a previous export"
            )
        check_replaceable_export(folder, protect=protect)
    check_writable(folder, "export folder")
    recipe = coerce_recipe(recipe)
    measurements = [Measurement.coerce(m) for m in (metrics or ())]
    if recipe is not None and dataset is None:
        dataset = recipe.data.dataset if recipe.data.dataset != "folder" else Path(recipe.data.root or "custom").name
    if license is None:
        license = recipe.hub.license if recipe is not None else "apache-2.0"
    prep = _preprocessing(model, recipe, variant, data_config)
    if tag is None:
        train = (prep.get("input_size") or model.pretrained_cfg["input_size"])[-1]
        test = (prep.get("test_input_size") or model.pretrained_cfg.get("test_input_size") or (train,))[-1]
        tag = default_tag(variant, dataset, train, test)
    name = variant_name(model_name, tag)
    num_classes = getattr(model, "num_classes", None)
    if label_names is not None and (num_classes is None or len(label_names) != num_classes):
        raise ValueError(f"label_names: expected {num_classes} names (one per class), got {len(label_names)}")
    architecture = (native_architecture(model_name) if native else None) or model_name

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    apply_umask(staging, directory=True)  # mkdtemp made it 0700: the export keeps the user's umask
    try:
        model_config: dict[str, Any] = {"pretrained_cfg": {**prep, "architecture": model_name, "tag": tag}}
        if label_names is not None:
            model_config["label_names"] = [str(n) for n in label_names]
        save_for_hf(model, str(staging), model_config=model_config, safe_serialization=True)
        config = _rewrite_config(
            staging / "config.json", architecture=architecture, model_name=model_name, variant=variant, tag=tag
        )
        _write_recipe(recipe, staging / "recipe.yaml")
        card = build_model_card(
            config,
            model_name=name,
            variant=variant,
            recipe=recipe,
            measurements=measurements,
            dataset=dataset,
            license=license,
            repo_id=repo_id,
            num_params=sum(p.numel() for p in model.parameters()),
        )
        card.save(staging / "README.md")
        for written in staging.iterdir():  # safetensors writes 0600 files: give every file the umask's mode
            apply_umask(written, directory=written.is_dir())
        verify_export(model, staging, batch=check_batch)
        if folder.exists():
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder

"""Where a model's starting weights come from: one resolver for ``model.init``, ``evaluate`` and ``fixres``.

``model.init`` (and the ``MODEL`` argument of ``timm-recipes evaluate`` / ``fixres``) is one of:

* ``None``: random initialisation;
* ``"pretrained"``: the model's default tag (``recipe_resnet50`` → ``timm/resnet50.tv2_in1k``);
* a tag (``"a1_in1k"``) or a timm name with a tag (``"recipe_resnet50.a1_in1k"``, ``"resnet50.a1_in1k"``): the
  weights of that tag's ``hf_hub_id`` on the Hugging Face Hub;
* ``"hf-hub:org/name[@revision]"``: a Hub repository in timm's layout (``config.json`` + ``model.safetensors``);
* ``"local-dir:PATH"`` or an export folder (``timm-recipes export``): the same layout on disk;
* a run folder, ``checkpoints/`` folder, tag file or checkpoint folder of this project: its ``best`` checkpoint
  (``last`` when there is no ``best``), EMA weights when saved (``model.init_weights``: ``auto``/``ema``/``raw``);
* a ``.safetensors`` file: a bare ``state_dict`` of the model.

Only safetensors files are read; nothing is ever unpickled. Loading follows timm's ``load_pretrained``: when the
class count differs from the source, the classifier keeps its fresh initialisation, and every other tensor must
load exactly (a missing, unexpected or mis-shaped key is an error that lists them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "TAG_RECIPES",
    "WeightsSource",
    "checkpoint_source",
    "create_model_from_source",
    "describe_init",
    "is_model_reference",
    "load_model_reference",
    "load_source_into",
    "recipe_for_model",
    "resolve_weights",
    "source_preprocessing",
    "with_source_preprocessing",
]

TAG_RECIPES: dict[str, str] = {
    "tv2": "torchvision's V2 recipe (https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-"
    "torchvision-latest-primitives/)",
    "tv": "torchvision's original recipe (90 epochs, step decay; https://github.com/pytorch/vision)",
    "a1": "ResNet strikes back, procedure A1 (https://arxiv.org/abs/2110.00476)",
    "a1h": "ResNet strikes back, procedure A1 with stronger augmentation (https://arxiv.org/abs/2110.00476)",
    "a2": "ResNet strikes back, procedure A2 (https://arxiv.org/abs/2110.00476)",
    "a3": "ResNet strikes back, procedure A3 (https://arxiv.org/abs/2110.00476)",
    "ra": "timm's RandAugment recipe (https://arxiv.org/abs/1909.13719)",
    "ra2": "timm's RandAugment recipe, second version (https://arxiv.org/abs/1909.13719)",
    "ra4": "timm's RA4 recipe (as the timm model card describes it)",
    "sw": "pre-trained on ImageNet-12k, fine-tuned on ImageNet-1k (timm)",
    "gluon": "GluonCV's recipe (Bag of Tricks, https://arxiv.org/abs/1812.01187)",
    "fb": "Facebook's semi- / weakly-supervised pre-training, fine-tuned on ImageNet-1k (https://arxiv.org/abs/1905.00546)",
}
"""The recipe behind a timm tag, by the tag's first part (``tv2_in1k`` → ``tv2``)."""

_SAFETENSORS = "model.safetensors"


@dataclass(frozen=True)
class WeightsSource:
    """Resolved starting weights.

    Attributes:
        init: What was asked for (the ``model.init`` value).
        kind: ``"tag"``, ``"hf-hub"``, ``"local-dir"``, ``"checkpoint"`` or ``"file"``.
        location: The Hub repository, folder, checkpoint folder or file the weights were read from.
        state_dict: The tensors, on the CPU.
        architecture: The timm model they belong to (``None``: unknown, checked by the keys only).
        num_classes: The source's class count (``None``: unknown).
        pretrained_cfg: The source's preprocessing (mean, std, interpolation, input sizes, crops), may be empty.
        base_model: The Hub repository the weights come from (a model card's ``base_model``), if any.
        recipe: The recipe the source weights were trained with, in words.
        weights: ``"ema"`` or ``"raw"`` for a checkpoint, else ``None``.
    """

    init: str
    kind: str
    location: str
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    architecture: str | None
    num_classes: int | None
    pretrained_cfg: dict[str, Any] = field(default_factory=dict, repr=False)
    base_model: str | None = None
    recipe: str | None = None
    weights: str | None = None


# ------------------------------------------------------------------------------------------------ parsing
def _twin(name: str) -> str:
    """The timm architecture whose ``state_dict`` a model has (``recipe_resnet50`` → ``resnet50``)."""
    return name.split(".", 1)[0].removeprefix("recipe_")


def _tag_recipe(tag: str) -> str:
    head = tag.split("_", 1)[0]
    return TAG_RECIPES.get(head, f"timm tag {tag!r}")


def _read_safetensors(file: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{what}: {str(file)!r} is not a safetensors file ({err}); only safetensors weights are loaded, "
            f"never pickled ones (.pt, .pth, .bin)"
        ) from None


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{what}: {str(file)!r} is not a readable JSON file: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: {str(file)!r} does not hold a JSON object")
    return doc


def _from_timm_layout(init: str, kind: str, location: str, config: dict, weights: Path, what: str) -> WeightsSource:
    pcfg = dict(config.get("pretrained_cfg") or {})
    num_classes = config.get("num_classes", pcfg.get("num_classes"))
    return WeightsSource(
        init=init,
        kind=kind,
        location=location,
        state_dict=_read_safetensors(weights, what),
        architecture=config.get("architecture"),
        num_classes=int(num_classes) if num_classes is not None else None,
        pretrained_cfg=pcfg,
        base_model=location if kind == "hf-hub" else pcfg.get("hf_hub_id"),
        recipe=config.get("recipe") or pcfg.get("recipe"),
    )


def _from_folder(init: str, folder: Path, kind: str, what: str) -> WeightsSource:
    weights, config = folder / _SAFETENSORS, folder / "config.json"
    if not weights.is_file():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise FileNotFoundError(f"{what}: folder {str(folder)!r} has no {_SAFETENSORS} (it holds {found})")
    doc = _read_json(config, what) if config.is_file() else {}
    return _from_timm_layout(init, kind, str(folder), doc, weights, what)


def _from_hub(init: str, repo: str, what: str) -> WeightsSource:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1:
        raise ValueError(f"{what}: expected 'hf-hub:org/name[@revision]', got {init!r}")
    try:
        weights = Path(hf_hub_download(repo_id, _SAFETENSORS, revision=revision or None))
        try:
            config = _read_json(Path(hf_hub_download(repo_id, "config.json", revision=revision or None)), what)
        except EntryNotFoundError:
            config = {}
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise FileNotFoundError(
            f"{what}: could not download {_SAFETENSORS} of the Hub repository {repo!r} ({type(err).__name__}: {err})"
        ) from None
    return _from_timm_layout(init, "hf-hub", repo, config, weights, what)


def _from_tag(init: str, name: str, what: str) -> WeightsSource:
    from timm.models import get_pretrained_cfg

    import timm_recipes  # noqa: F401  (registers the recipe_* models and their tags)

    try:  # a name without a tag: its default tag
        cfg = get_pretrained_cfg(name, allow_unregistered=False) if timm.is_model(name.split(".", 1)[0]) else None
    except RuntimeError:  # a tag the architecture does not have
        cfg = None
    if cfg is None or not cfg.hf_hub_id:
        arch = name.split(".", 1)[0]
        known = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")] if timm.is_model(arch) else []
        raise ValueError(
            f"{what}: no pretrained weights {name!r} (tags of {arch}: {known or 'none'}); "
            f"use 'hf-hub:org/name', 'local-dir:PATH', an export folder or a run folder instead"
        )
    repo = cfg.hf_hub_id
    source = _from_hub(init, repo, what)
    arch = name.split(".", 1)[0]
    return WeightsSource(
        init=init,
        kind="tag",
        location=repo,
        state_dict=source.state_dict,
        architecture=arch,
        num_classes=cfg.num_classes,
        pretrained_cfg={k: v for k, v in cfg.to_dict().items() if k != "url"},
        base_model=repo,
        recipe=_tag_recipe(cfg.tag or ""),
    )


def _from_checkpoint(init: str, path: Path, which: str, what: str) -> WeightsSource:
    from timm_recipes.train.fixres import open_run_checkpoint

    return checkpoint_source(open_run_checkpoint(path, "best"), which, init=init, what=what)


def checkpoint_source(
    ckpt: Any, which: str = "auto", *, init: str | None = None, what: str = "model.init"
) -> WeightsSource:
    """The weights of an open :class:`~timm_recipes.train.checkpoint.Checkpoint`: EMA (``"ema"``, or ``"auto"``
    when saved) or raw (``"raw"``), with the preprocessing of the recipe saved beside them.

    Raises:
        CheckpointError: ``which="ema"`` for a checkpoint without EMA weights, or an unreadable weights file.
    """
    from timm_recipes.config import recipe_from_dict
    from timm_recipes.train.checkpoint import CheckpointError

    if which not in ("auto", "ema", "raw"):
        raise ValueError(f"{what}: weights must be 'auto', 'ema' or 'raw', got {which!r}")
    use_ema = which == "ema" or (which == "auto" and ckpt.has_ema)
    if which == "ema" and not ckpt.has_ema:
        raise CheckpointError(f"{what}: checkpoint {ckpt.path} has no EMA weights (trained with ema.enabled=false)")
    recipe = recipe_from_dict(ckpt.recipe())
    a = recipe.aug
    pcfg = {
        "input_size": (recipe.model.in_chans, a.train_size, a.train_size),
        "test_input_size": (recipe.model.in_chans, a.test_size, a.test_size),
        "crop_pct": a.test_crop_pct,
        "test_crop_pct": a.test_crop_pct,
        "interpolation": a.interpolation,
        "mean": tuple(a.mean) if a.mean is not None else None,
        "std": tuple(a.std) if a.std is not None else None,
        "num_classes": ckpt.num_classes,
    }
    upstream = describe_init(recipe) if recipe.model.init is not None else {}
    return WeightsSource(
        init=init if init is not None else str(ckpt.path),
        kind="checkpoint",
        location=str(ckpt.path),
        state_dict=ckpt.weights("ema" if use_ema else "model"),
        architecture=ckpt.model_name,
        num_classes=ckpt.num_classes,
        pretrained_cfg={k: v for k, v in pcfg.items() if v is not None},
        base_model=upstream.get("base_model"),
        recipe=f"this project's recipe {recipe.name!r}" + (f" ({recipe.source})" if recipe.source else ""),
        weights="ema" if use_ema else "raw",
    )


def resolve_weights(
    init: str, model_name: str | None = None, *, which: str = "auto", what: str = "model.init"
) -> WeightsSource:
    """Read the weights ``init`` designates (see the module docstring for the forms).

    Args:
        init: The ``model.init`` value (not ``None``).
        model_name: The model that will receive them: resolves ``"pretrained"`` and bare tags, and is checked
            against the source's architecture.
        which: ``"auto"``, ``"ema"`` or ``"raw"``: which weights of a run or checkpoint.
        what: How errors name the value (``"model.init"``, ``"MODEL"``).

    Raises:
        FileNotFoundError: A path that does not exist, a folder without weights, a Hub repository or file not found.
        ValueError: A file that is not safetensors, an unknown tag, weights of another architecture.
    """
    if not isinstance(init, str) or not init.strip():
        raise ValueError(f"{what}: expected 'pretrained', a tag, 'hf-hub:...', 'local-dir:...' or a path, got {init!r}")
    if which not in ("auto", "ema", "raw"):
        raise ValueError(f"{what}: weights must be 'auto', 'ema' or 'raw', got {which!r}")
    init = init.strip()
    if init.startswith("hf-hub:"):
        source = _from_hub(init, init.removeprefix("hf-hub:"), what)
    elif init.startswith("local-dir:"):
        folder = Path(init.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{what}: no folder {str(folder)!r}")
        source = _from_folder(init, folder, "local-dir", what)
    elif init == "pretrained":
        if model_name is None:
            raise ValueError(f"{what}: 'pretrained' needs a model name")
        source = _from_tag(init, model_name.split(".", 1)[0], what)
    elif _looks_like_path(init):
        path = Path(init).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{what}: no file or folder {str(path)!r}")
        if path.is_file() and path.suffix != ".json":
            source = WeightsSource(init, "file", str(path), _read_safetensors(path, what), None, None)
        elif path.is_dir() and (path / _SAFETENSORS).is_file() and not (path / "manifest.json").is_file():
            source = _from_folder(init, path, "local-dir", what)
        else:
            try:
                source = _from_checkpoint(init, path, which, what)
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"{what}: {str(path)!r} is neither an export folder ({_SAFETENSORS} + config.json) nor a run "
                    f"folder, checkpoints/ folder or checkpoint of this project ({err})"
                ) from None
    elif "." in init or timm.is_model(init) or model_name is None:
        source = _from_tag(init, init, what)  # a timm name with a tag ("resnet50.a1_in1k") or a bare name
    else:
        source = _from_tag(init, f"{model_name.split('.', 1)[0]}.{init}", what)  # a bare tag ("tv2_in1k")
    if model_name is not None and source.architecture and _twin(source.architecture) != _twin(model_name):
        raise ValueError(
            f"{what}: {init!r} holds weights of {source.architecture}, which do not fit model.name={model_name!r} "
            f"(its timm architecture is {_twin(model_name)})"
        )
    return source


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith((".", "~")) or Path(text).exists()


# ------------------------------------------------------------------------------------------------ loading
def classifier_prefix(model: nn.Module) -> str:
    """The module name of the model's classifier (timm's ``pretrained_cfg['classifier']``, e.g. ``"fc"``)."""
    name = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not name:
        raise ValueError(f"{type(model).__name__} has no pretrained_cfg['classifier']: cannot tell its head")
    return str(name)


def _few(keys: list[str], n: int = 8) -> str:
    return f"{keys[:n]}" + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_source_into(model: nn.Module, source: WeightsSource, *, what: str = "model.init") -> list[str]:
    """Copy ``source``'s tensors into ``model``; re-initialise the classifier when the class counts differ.

    The rule of timm's ``load_pretrained``: the classifier's tensors are skipped when their shapes differ from the
    model's (another class count); they keep the model's fresh initialisation. Every other key must be present in
    both with the same shape.

    Returns:
        The keys left at their fresh initialisation (the new classifier), empty when everything loaded.

    Raises:
        ValueError: Missing, unexpected or mis-shaped keys outside the classifier, listed by name.
    """
    target = model.state_dict()
    head = classifier_prefix(model)
    is_head = lambda key: key.startswith(head + ".")  # noqa: E731
    weights = dict(source.state_dict)
    reinit = [k for k in target if is_head(k) and (k not in weights or weights[k].shape != target[k].shape)]
    head_differs = bool(reinit)
    if head_differs:  # another class count: the whole classifier is new (weight and bias together)
        reinit = [k for k in target if is_head(k)]
        weights = {k: v for k, v in weights.items() if not is_head(k)}
    missing = [k for k in target if k not in weights and k not in reinit]
    unexpected = [k for k in weights if k not in target]
    shapes = [
        f"{k}: {tuple(weights[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"missing keys {_few(missing)}" if missing else "",
            f"unexpected keys {_few(unexpected)}" if unexpected else "",
            f"shape mismatches {_few(shapes)}" if shapes else "",
        ]
        raise ValueError(
            f"{what}: the weights of {source.location} do not fit {type(model).__name__}: "
            + "; ".join(p for p in parts if p)
        )
    merged = {k: weights.get(k, v) for k, v in target.items()}
    model.load_state_dict(merged, strict=True)
    return reinit


def create_model_from_source(source: WeightsSource, model_name: str | None = None, **kwargs: Any) -> nn.Module:
    """A model of the source's architecture (or ``model_name``) and class count, holding the source's weights."""
    import timm_recipes  # noqa: F401

    name = model_name or source.architecture
    if not name:
        raise ValueError(f"{source.init!r}: the weights do not say their architecture; name the model")
    name = name.split(".", 1)[0]
    if not timm.is_model(name):
        raise ValueError(f"{source.init!r}: unknown timm model {name!r}")
    num_classes = kwargs.pop("num_classes", None) or source.num_classes
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if source.pretrained_cfg:
        kwargs.setdefault("pretrained_cfg_overlay", _overlay(source.pretrained_cfg))
    model = timm.create_model(name, **kwargs)
    load_source_into(model, source, what=source.init)
    return model


def _overlay(pcfg: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("input_size", "test_input_size", "crop_pct", "test_crop_pct", "crop_mode", "interpolation", "mean", "std")
    out = {k: pcfg[k] for k in keep if pcfg.get(k) is not None}
    for key in ("input_size", "test_input_size", "mean", "std"):
        if key in out:
            out[key] = tuple(out[key])
    return out


# ------------------------------------------------------------------------------------------------ the recipe
def source_preprocessing(source: WeightsSource | None) -> dict[str, Any]:
    """``{"mean", "std", "interpolation"}`` of the source's ``pretrained_cfg`` (what it has of them)."""
    if source is None:
        return {}
    pcfg, out = source.pretrained_cfg, {}
    for key in ("mean", "std"):
        if pcfg.get(key) is not None and len(pcfg[key]) == 3:
            out[key] = tuple(float(v) for v in pcfg[key])
    interp = pcfg.get("interpolation")
    if interp in ("nearest", "bilinear", "bicubic", "area", "lanczos"):
        out["interpolation"] = interp
    return out


def with_source_preprocessing(recipe: Any, source: WeightsSource | None) -> Any:
    """``recipe`` with its unset ``aug.mean`` / ``aug.std`` / ``aug.interpolation`` taken from the source
    weights' ``pretrained_cfg``, and the ImageNet defaults for anything the source does not say."""
    import dataclasses

    from timm_recipes.config import AUG_DEFAULTS

    given = source_preprocessing(source)
    unset = {k: given.get(k, default) for k, default in AUG_DEFAULTS.items() if getattr(recipe.aug, k) is None}
    return recipe if not unset else recipe.replace(aug=dataclasses.replace(recipe.aug, **unset))


def describe_init(recipe: Any, _depth: int = 0) -> dict[str, Any]:
    """What a run was fine-tuned from, without loading weights: ``{"init", "base_model", "recipe"}`` (or ``{}``).

    ``base_model`` is the Hub repository of a tag or ``hf-hub:`` source (``timm/resnet50.tv2_in1k``), as a model
    card's metadata names the model a fine-tune comes from; for a run of this project it is that run's own
    ``base_model``, when it has one.
    """
    init = getattr(getattr(recipe, "model", None), "init", None)
    if init is None:
        return {}
    out: dict[str, Any] = {"init": init, "base_model": None, "recipe": None}
    name = recipe.model.name
    if init.startswith("hf-hub:"):
        out["base_model"] = init.removeprefix("hf-hub:").partition("@")[0]
    elif _looks_like_path(init) and Path(init).exists() and _depth < 4:  # a run: what that run started from
        try:
            from timm_recipes.config import recipe_from_dict
            from timm_recipes.train.fixres import open_run_checkpoint

            upstream = recipe_from_dict(open_run_checkpoint(init, "best").recipe())
        except (OSError, ValueError):  # an export folder or file: nothing more is known
            upstream = None
        if upstream is not None:
            found = describe_init(upstream, _depth + 1)
            out["base_model"] = found.get("base_model")
            out["recipe"] = f"this project's recipe {upstream.name!r}" + (
                f", itself fine-tuned from {found['base_model']}" if found.get("base_model") else ""
            )
    elif not init.startswith("local-dir:") and not _looks_like_path(init):
        from timm.models import get_pretrained_cfg

        import timm_recipes  # noqa: F401

        full = name if init == "pretrained" else (init if "." in init or timm.is_model(init) else f"{name}.{init}")
        try:
            cfg = get_pretrained_cfg(full)
        except RuntimeError:  # an unknown tag: the run itself fails on it; describe nothing
            cfg = None
        if cfg is not None and cfg.hf_hub_id:
            out["base_model"], out["recipe"] = cfg.hf_hub_id, _tag_recipe(cfg.tag or "")
    return out


# ------------------------------------------------------------------------------------------------ models as sources
def is_model_reference(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a model rather than a run: ``hf-hub:``, ``local-dir:``, an export folder, a timm name."""
    text = str(text)
    if text.startswith(("hf-hub:", "local-dir:")):
        return True
    path = Path(text)
    if path.exists():
        return path.is_dir() and (path / _SAFETENSORS).is_file() and not (path / "manifest.json").is_file()
    import timm_recipes  # noqa: F401  (registers the recipe_* names)

    return not _looks_like_path(text) and timm.is_model(text.split(".", 1)[0])


def load_model_reference(text: str, *, what: str = "MODEL", device: str | torch.device = "cpu") -> nn.Module:
    """The model ``text`` names (``resnet50.tv2_in1k``, ``recipe_resnet50``, ``hf-hub:…``, ``local-dir:…``, an export
    folder), with its weights and preprocessing, in eval mode."""
    import timm_recipes  # noqa: F401

    source = resolve_weights(text, None, what=what)
    return create_model_from_source(source).to(device).eval()


def recipe_for_model(model: nn.Module, data_root: str | os.PathLike[str], *, name: str = "model") -> Any:
    """A recipe that evaluates / FixRes-tunes ``model`` on the image folder ``data_root`` (``train/``, ``val/``
    [, ``test/``]) with the model's own preprocessing: train size and crop from ``input_size`` / ``crop_pct``, test
    size and crop from ``test_input_size`` / ``test_crop_pct`` (the train ones when the weights have none)."""
    from timm_recipes.config import AugConfig, DataConfig, EmaConfig, ModelConfig, Recipe

    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if not cfg.get("input_size"):
        raise ValueError(f"{name}: the model has no pretrained_cfg['input_size']; cannot tell its preprocessing")
    train = int(cfg["input_size"][-1])
    test = int((cfg.get("test_input_size") or cfg["input_size"])[-1])
    prep = source_preprocessing(WeightsSource(name, "model", name, {}, None, None, pretrained_cfg=cfg))
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-") or "model"
    return Recipe(
        name=safe,
        model=ModelConfig(name=str(cfg.get("architecture") or "unknown"), num_classes=int(model.num_classes)),
        data=DataConfig(dataset="folder", root=str(data_root), num_workers=4),
        aug=AugConfig(
            train_size=train,
            test_size=test,
            test_crop_pct=float(cfg.get("test_crop_pct") or cfg.get("crop_pct") or 0.875),
            **prep,
        ),
        ema=EmaConfig(enabled=False),
    )

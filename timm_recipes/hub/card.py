"""Model cards for exported weights, rendered with ``huggingface_hub``'s ``ModelCard`` / ``ModelCardData``.

Mitchell et al., "Model Cards for Model Reporting", FAT* 2019, https://arxiv.org/abs/1810.03993.

A card is YAML metadata (``library_name: timm``, licence, tags, data sets, metrics and a ``model-index`` with the
evaluations that were run) followed by a Markdown body: what the weights are, the recipe as a table, train versus
test resolution, results, usage with ``timm_recipes`` and with plain timm, limitations and citations.

The one rule: every number in a card is either a property of the exported files (parameter count, input sizes,
crop fractions) or a :class:`Measurement` handed in by the caller, who ran the evaluation. Nothing is estimated,
extrapolated or copied from a paper; with no measurements the card says that no results were measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from timm_recipes.hub.citations import citations_for

__all__ = ["VARIANTS", "Measurement", "build_model_card", "coerce_recipe"]

VARIANTS = ("raw", "ema", "fixres")
_VARIANT_TITLES = {"raw": "raw", "ema": "EMA", "fixres": "FixRes"}
_VARIANT_DESCRIPTIONS = {
    "raw": "the raw weights at the end of training",
    "ema": "the exponential moving average (EMA, Polyak average) of the weights over training",
    "fixres": "the weights after FixRes fine-tuning at the test resolution (classifier and last batch norm)",
}
_ACCURACIES = {"top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}


@dataclass(frozen=True)
class Measurement:
    """One evaluation that was actually run: a metric of one weight variant at one input size.

    Attributes:
        value: The measured value; accuracies (``metric`` "top1"/"top5") in percent, e.g. ``93.1``.
        variant: Which weights were evaluated: ``"raw"``, ``"ema"`` or ``"fixres"``.
        img_size: Side of the square evaluation input, in pixels.
        crop_pct: Centre-crop fraction (resize the short side to ``img_size / crop_pct``, crop ``img_size``).
        metric: ``"top1"``, ``"top5"`` or another metric's name (e.g. ``"loss"``).
        split: The evaluated split: ``"test"``, ``"val"``, or ``"holdout"`` (held out from the training data).
        num_samples: Images evaluated; for an accuracy, the card then shows the binomial standard error.
        dataset: The data set, when it is not the export's.
    """

    value: float
    variant: str
    img_size: int
    crop_pct: float | None = None
    metric: str = "top1"
    split: str = "test"
    num_samples: int | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise ValueError(f"value must be a finite number, got {self.value!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if isinstance(self.img_size, bool) or not isinstance(self.img_size, int) or self.img_size < 1:
            raise ValueError(f"img_size must be an integer >= 1, got {self.img_size!r}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"metric must be a non-empty string, got {self.metric!r}")
        if self.metric in _ACCURACIES and not 0.0 <= self.value <= 100.0:
            raise ValueError(f"value of a {self.metric} accuracy must be in [0, 100] (percent), got {self.value!r}")
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"split must be a non-empty string, got {self.split!r}")
        if self.num_samples is not None and (isinstance(self.num_samples, bool) or self.num_samples < 1):
            raise ValueError(f"num_samples must be an integer >= 1 or None, got {self.num_samples!r}")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def coerce(cls, item: Measurement | Mapping[str, Any]) -> Measurement:
        """A :class:`Measurement` from itself or from a mapping of its fields."""
        if isinstance(item, Measurement):
            return item
        if not isinstance(item, Mapping):
            raise TypeError(f"metrics: expected Measurement objects or mappings, got {type(item).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(item) - known)
        if unknown:
            raise ValueError(f"metrics: unknown field(s) {unknown} (known: {sorted(known)})")
        return cls(**item)

    @property
    def standard_error(self) -> float | None:
        """Binomial standard error of an accuracy, in percent (None without ``num_samples``)."""
        if self.metric not in _ACCURACIES or self.num_samples is None:
            return None
        p = self.value / 100.0
        return 100.0 * math.sqrt(p * (1.0 - p) / self.num_samples)


def coerce_recipe(recipe: Any) -> Any:
    """A ``timm_recipes.config.Recipe`` from a Recipe or a plain dict of recipe sections (or None)."""
    from timm_recipes.config import Recipe, recipe_from_dict

    if recipe is None or isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return recipe_from_dict(recipe)
    raise TypeError(f"recipe: expected a Recipe, a dict of recipe sections or None, got {type(recipe).__name__}")


# ------------------------------------------------------------------------------------------------ metadata


def _eval_result(m: Measurement, dataset: str | None) -> EvalResult:
    name = m.dataset or dataset or "unknown"
    accuracy = m.metric in _ACCURACIES
    crop = "" if m.crop_pct is None else f", crop {m.crop_pct:g}"
    args: dict[str, Any] = {"variant": m.variant, "img_size": m.img_size}
    if m.crop_pct is not None:
        args["crop_pct"] = m.crop_pct
    if m.num_samples is not None:
        args["num_samples"] = m.num_samples
    return EvalResult(
        task_type="image-classification",
        task_name="Image Classification",
        dataset_type=name,
        dataset_name=name,
        dataset_split=m.split,
        metric_type="accuracy" if accuracy else m.metric,
        metric_value=m.value,
        metric_name=f"{_ACCURACIES.get(m.metric, m.metric)} ({_VARIANT_TITLES[m.variant]}, {m.img_size}px{crop})",
        metric_config=m.metric,
        metric_args=args,
    )


def _card_data(
    *,
    model_name: str,
    variant: str,
    measurements: Sequence[Measurement],
    dataset: str | None,
    license: str,
    base_model: str | None = None,
) -> ModelCardData:
    own = [m for m in measurements if m.variant == variant]
    tags = ["image-classification", "timm", "timm-recipes", model_name.split(".")[0].removeprefix("recipe_")]
    tags.append({"raw": "raw-weights", "ema": "ema", "fixres": "fixres"}[variant])
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license,
        base_model=base_model,  # the Hub's link from a fine-tune to the model it was fine-tuned from
        tags=tags,
        datasets=[dataset] if dataset else None,
        metrics=sorted({"accuracy" if m.metric in _ACCURACIES else m.metric for m in own}) or None,
        model_name=model_name if own else None,
        eval_results=[_eval_result(m, dataset) for m in own] or None,
    )


# ------------------------------------------------------------------------------------------------ body


def _size(shape: Sequence[int] | None) -> str:
    return "—" if not shape else f"{shape[-2]} × {shape[-1]}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _architecture_title(architecture: str) -> str:
    name = architecture.removeprefix("recipe_")
    if name.startswith("resnet") and name[6:].isdigit():
        return f"ResNet-{name[6:]}"
    if name.startswith("efficientnet_b") and name[14:].isdigit():
        return f"EfficientNet-B{name[14:]}"
    return name


def _intro(model_name: str, config: Mapping[str, Any], variant: str, dataset: str | None, num_params: int | None):
    arch = config["architecture"]
    recipe_arch = model_name.split(".")[0]
    pcfg = config.get("pretrained_cfg", {})
    details = [
        ("Model type", "image classification"),
        ("Architecture", f"`{arch}` (timm)" + (f", trained as `{recipe_arch}`" if recipe_arch != arch else "")),
        ("Weights", f"{_VARIANT_TITLES[variant]}: {_VARIANT_DESCRIPTIONS[variant]}"),
        ("Classes", str(config.get("num_classes"))),
        ("Data set", dataset or "not recorded"),
        ("Train input size", _size(pcfg.get("input_size"))),
        ("Test input size", _size(pcfg.get("test_input_size") or pcfg.get("input_size"))),
    ]
    if num_params is not None:
        details.insert(4, ("Parameters (M)", f"{num_params / 1e6:.2f}"))
    text = (
        f"# Model card for {model_name}\n\n"
        f"A {_architecture_title(arch)} image classifier trained from scratch with a timm-recipes recipe on "
        f"{dataset or 'an unrecorded data set'}. These are {_VARIANT_DESCRIPTIONS[variant]}; the other weight "
        f"variants of a run (raw, EMA, FixRes) are separate tags of `{recipe_arch}`.\n\n"
    )
    return text + "## Model details\n\n" + "\n".join(f"- **{k}:** {v}" for k, v in details)


def _recipe_section(recipe: Any, variant: str, config: Mapping[str, Any]) -> str:
    if recipe is None:
        return "## Training recipe\n\nThe training recipe was not recorded with these weights."
    from timm_recipes.config import recipe_summary

    rows = [row for row in recipe_summary(recipe) if not (variant == "fixres" and row[0] == "FixRes")]
    if variant == "fixres":  # what was applied to these weights, read from their config
        pcfg = config.get("pretrained_cfg", {})
        size = _size(pcfg.get("test_input_size") or pcfg.get("input_size"))
        crop = f", crop {pcfg['test_crop_pct']:g}" if pcfg.get("test_crop_pct") else ""
        rows.append(("FixRes", f"classifier and last batch norm fine-tuned at the test size {size}{crop}"))
    elif not recipe.fixres.enabled:
        rows.append(("FixRes", "off"))
    return f"## Training recipe\n\nRecipe `{recipe.name}` (the full resolved recipe is `recipe.yaml`).\n\n" + _table(
        ("Ingredient", "Setting"), rows
    )


def _finetuned_section(origin: Mapping[str, Any]) -> str:
    """Where the starting weights of a fine-tuning run came from (``model.init``); the quoted recipe is theirs."""
    if not origin:
        return ""
    base = origin.get("base_model")
    if base:
        what = f"[`{base}`](https://huggingface.co/{base})"
    else:
        what = "weights of an earlier run or export of timm-recipes" if origin.get("init") else "given weights"
    recipe = f", trained with {origin['recipe']}" if origin.get("recipe") else ""
    shown = origin["init"] if base or not origin.get("init") else "<local weights>"
    return (
        f"## Fine-tuned from\n\nThese weights were fine-tuned from {what}{recipe} (`model.init: {shown}`). Every "
        "number on this card was measured on this run's data; none is the source model's."
    )


def _resolution_section(config: Mapping[str, Any]) -> str:
    pcfg = config.get("pretrained_cfg", {})
    train, crop = pcfg.get("input_size"), pcfg.get("crop_pct")
    test, test_crop = pcfg.get("test_input_size") or train, pcfg.get("test_crop_pct") or crop

    def resize(shape: Sequence[int] | None, pct: float | None) -> str:
        return "—" if not shape or not pct else str(math.floor(shape[-1] / pct))  # timm's rule: floor(size / crop)

    rows = [
        ("Training", _size(train), "random crops", "—"),
        ("Evaluation at the train size", _size(train), crop or "—", resize(train, crop)),
        ("Evaluation at the test size (recommended)", _size(test), test_crop or "—", resize(test, test_crop)),
    ]
    text = "## Train and test resolution\n\n" + _table(("", "Input", "Centre-crop fraction", "Resize to"), rows)
    if train and test and test[-1] > train[-1]:
        text += (
            "\n\nThe test size is larger than the train size: random-resized-crop training makes objects look bigger "
            "than a centre crop at the same size does, so the network sees objects at the size it was trained on "
            "when it is evaluated at a higher resolution (FixRes, Touvron et al. 2019). `timm`'s "
            "`resolve_data_config(..., use_test_size=True)` picks the test size and crop from `config.json`."
        )
    return text


def _results_section(measurements: Sequence[Measurement], variant: str, dataset: str | None) -> str:
    if not measurements:
        return "## Results\n\nNo results were measured for these weights."
    rows = []
    for m in sorted(measurements, key=lambda m: (VARIANTS.index(m.variant), m.img_size, m.split, m.metric)):
        title = _VARIANT_TITLES[m.variant] + (" (these weights)" if m.variant == variant else "")
        value = f"{m.value:.2f}" + (f" ± {m.standard_error:.2f}" if m.standard_error is not None else "")
        crop = "—" if m.crop_pct is None else f"{m.crop_pct:g}"
        rows.append((title, f"{m.img_size} px", crop, m.dataset or dataset or "—", m.split, m.metric, value))
    text = "## Results\n\nSingle centre-crop evaluations, as measured by the training run"
    if any(m.num_samples for m in measurements):
        text += " (± one binomial standard error, where the number of images is known)"
    return text + ".\n\n" + _table(("Weights", "Input", "Crop", "Data set", "Split", "Metric", "Value"), rows)


def _usage_section(config: Mapping[str, Any], model_name: str, repo_id: str | None) -> str:
    repo = repo_id or f"<org>/{model_name}"
    arch, recipe_arch = config["architecture"], model_name.split(".")[0]
    num_classes = config.get("num_classes")
    native = arch != recipe_arch
    prefix = "" if native else "import timm_recipes  # noqa: F401  (registers the recipe_* architectures)\n"
    text = (
        "## Usage\n\n"
        + ("With plain timm (no plugin needed: the architecture is timm's own):" if native else "With timm-recipes:")
        + "\n\n```python\nimport timm\nimport torch\n"
        + prefix
        + f'\nmodel = timm.create_model("hf-hub:{repo}", pretrained=True).eval()\n'
        + "config = timm.data.resolve_model_data_config(model, use_test_size=True)  # test size and crop\n"
        + "transform = timm.data.create_transform(**config)\n"
        + "with torch.no_grad():\n"
        + "    probabilities = model(transform(image).unsqueeze(0)).softmax(dim=-1)  # image: a PIL image\n```\n"
    )
    text += (
        f"\nAs the recipe architecture `{recipe_arch}` (same weights, with the recipe's stochastic depth for "
        "further training):\n\n```python\nimport timm\nimport timm_recipes  # noqa: F401\n\n"
        f'model = timm.create_model(\n    "{recipe_arch}",\n    pretrained=True,\n    num_classes={num_classes},\n'
        f'    pretrained_cfg_overlay=dict(hf_hub_id="{repo}", num_classes={num_classes}),\n)\n```'
    )
    return text


def _limitations_section(
    config: Mapping[str, Any], variant: str, recipe: Any, measurements: Sequence[Measurement], dataset: str | None
) -> str:
    items = [
        f"Trained and evaluated only on {dataset or 'the training data set'} ({config.get('num_classes')} classes). "
        "The results do not transfer to other data, to other resolutions, or to ImageNet.",
        "Each result is one training run evaluated once; run-to-run variation was not measured.",
    ]
    if not any(m.num_samples for m in measurements):
        items.append("The number of evaluated images is not recorded, so no error bars are given.")
    if variant == "ema" or (recipe is not None and recipe.ema.enabled):
        items.append(
            "EMA weights average the batch-norm statistics together with the weights; the statistics are not "
            "re-estimated on the data."
        )
    if variant == "fixres" or (recipe is not None and recipe.fixres.enabled):
        items.append(
            "FixRes chose the test size and crop on a part of the training data held out for that purpose, "
            "never on the test split."
        )
    items.append(
        "No robustness, calibration or fairness evaluation was done. Do not use it for decisions about people."
    )
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items)


def _citations_section(architecture: str, recipe: Any, variant: str) -> str:
    refs = citations_for(recipe.model.name if recipe is not None else architecture, recipe, variant)
    lines = [f"- **{c.ingredient}:** {c.reference}. <{c.url}>" for c in refs]
    bibtex = "\n\n".join(c.bibtex for c in refs)
    return "## Citation\n\n" + "\n".join(lines) + f"\n\n```bibtex\n{bibtex}\n```"


def build_model_card(
    config: Mapping[str, Any],
    *,
    model_name: str,
    variant: str,
    recipe: Any = None,
    measurements: Sequence[Measurement | Mapping[str, Any]] = (),
    dataset: str | None = None,
    license: str = "apache-2.0",
    repo_id: str | None = None,
    num_params: int | None = None,
) -> ModelCard:
    """The model card of one exported weight variant.

    Args:
        config: The export's ``config.json`` (architecture, num_classes, pretrained_cfg with the input sizes).
        model_name: The variant's name, ``recipe_<arch>.<tag>``.
        variant: Which weights these are: ``"raw"``, ``"ema"`` or ``"fixres"``.
        recipe: The training recipe: a ``timm_recipes.config.Recipe``, a dict of its sections, or None.
        measurements: Evaluations that were run (all variants of the run; the ``model-index`` gets this variant's).
        dataset: The data set's name (YAML ``datasets``).
        license: The licence identifier of the weights.
        repo_id: Where the weights will be published (used in the usage snippets).
        num_params: Parameter count of the model, if known.

    Returns:
        A ``huggingface_hub.ModelCard``; ``card.save(path)`` writes ``README.md``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if "architecture" not in config:
        raise ValueError("config: missing 'architecture' (pass the export's config.json)")
    recipe = coerce_recipe(recipe)
    measured = [Measurement.coerce(m) for m in measurements]
    from timm_recipes.train.weights import describe_init

    origin = describe_init(recipe) if recipe is not None else {}
    data = _card_data(
        model_name=model_name, variant=variant, measurements=measured, dataset=dataset, license=license,
        base_model=origin.get("base_model"),
    )  # fmt: skip
    body = "\n\n".join(
        part
        for part in (
            _intro(model_name, config, variant, dataset, num_params),
            _finetuned_section(origin),
            _recipe_section(recipe, variant, config),
            _resolution_section(config),
            _results_section(measured, variant, dataset),
            _usage_section(config, model_name, repo_id),
            _limitations_section(config, variant, recipe, measured, dataset),
            _citations_section(config["architecture"], recipe, variant),
        )
        if part
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")

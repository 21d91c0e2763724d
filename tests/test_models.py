"""Contracts of every registered recipe model, checked against timm's own models and the papers.

Cheap checks run over all 13 models (one model pair built per name, shared by the tests of that name); the costly
ones (TorchScript, torch.fx, torch.compile, checkpointing) run on the small ResNet-18 / EfficientNet-B0/B1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torch.nn as nn
from scipy.stats import binomtest
from timm.layers import DropPath
from timm.models import create_feature_extractor, get_graph_node_names, get_pretrained_cfg
from timm.models.resnet import BasicBlock, Bottleneck

import timm_recipes
from timm_recipes.layers import StochasticDepth, set_stochastic_depth_generator, stochastic_depth_modules
from timm_recipes.models import (
    EFFICIENTNET_DEFAULT_TAGS,
    EFFICIENTNET_DROP_PATH_RATE,
    EFFICIENTNET_VARIANTS,
    RECIPE_MODELS,
    RESNET_DEFAULT_TAGS,
    RESNET_DROP_PATH_RATES,
    TIMM_HUB_ORG,
    PretrainedWeightsError,
)

ALPHA = 1e-4  # significance level of the fixed-seed binomial tests

# The thirteen names the package promises (issue: "All 13 names are listed by timm.list_models").
EXPECTED_NAMES = [f"recipe_resnet{depth}" for depth in (18, 34, 50, 101, 152)] + [
    f"recipe_efficientnet_b{i}" for i in range(8)
]

# Published parameter counts, in millions. ResNets: torchvision's model documentation (ResNet-50: 25.6 M);
# EfficientNets: Tan & Le 2019, Table 2. The paper rounds to two digits, hence the relative tolerance.
PUBLISHED_PARAMS_M = {
    "recipe_resnet18": 11.7,
    "recipe_resnet34": 21.8,
    "recipe_resnet50": 25.6,
    "recipe_resnet101": 44.5,
    "recipe_resnet152": 60.2,
    "recipe_efficientnet_b0": 5.3,
    "recipe_efficientnet_b1": 7.8,
    "recipe_efficientnet_b2": 9.2,
    "recipe_efficientnet_b3": 12.0,
    "recipe_efficientnet_b4": 19.0,
    "recipe_efficientnet_b5": 30.0,
    "recipe_efficientnet_b6": 43.0,
    "recipe_efficientnet_b7": 66.0,
}
PAPER_TOLERANCE = 0.025


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def timm_name(name: str) -> str:
    return name.removeprefix("recipe_")


def default_drop_path_rate(name: str) -> float:
    if name.startswith("recipe_resnet"):
        return RESNET_DROP_PATH_RATES[int(name.removeprefix("recipe_resnet"))]
    return EFFICIENTNET_DROP_PATH_RATE


def timm_blocks(model: nn.Module) -> list[nn.Module]:
    """All residual blocks of a timm ResNet / EfficientNet, in depth order."""
    if hasattr(model, "layer1"):
        return [*model.layer1, *model.layer2, *model.layer3, *model.layer4]
    return [block for stage in model.blocks for block in stage]


def has_identity_path(block: nn.Module) -> bool:
    return getattr(block, "has_skip", True)  # every ResNet block adds its (possibly projected) shortcut


def branch_modules(block: nn.Module) -> list[nn.Module]:
    """The modules of a block's residual branch: not the shortcut, not the output activation of a ResNet block."""
    excluded = {"downsample", "drop_path"}
    if isinstance(block, Bottleneck):
        excluded.add("act3")  # applied after the addition
    elif isinstance(block, BasicBlock):
        excluded.add("act2")  # applied after the addition
    return [m for name, child in block.named_children() if name not in excluded for m in child.modules()]


def train_step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().square().mean().backward()
    return out


# ---------------------------------------------------------------------- a fresh process: registration, offline
FRESH_PROCESS = """
import json, timm
before = timm.list_models("recipe_*")
import timm_recipes
from timm_recipes.models import PretrainedWeightsError
try:
    timm.create_model("recipe_resnet50", pretrained=True)
    error = None
except PretrainedWeightsError as err:
    error = str(err)
after, pretrained = timm.list_models("recipe_*"), timm.list_pretrained("recipe_*")
print(json.dumps(dict(before=before, after=after, pretrained=pretrained, error=error)))
"""


@pytest.fixture(scope="module")
def fresh_process() -> dict:
    """What a new Python process sees, offline (``HF_HUB_OFFLINE=1``): model names before/after import, and errors."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_registers_exactly_the_thirteen_recipe_models(fresh_process: dict) -> None:
    assert fresh_process["before"] == []
    assert sorted(fresh_process["after"]) == sorted(EXPECTED_NAMES) == sorted(RECIPE_MODELS)
    pretrained = fresh_process["pretrained"]
    # every model but EfficientNet-B6/B7 (no ImageNet-1k weights of that architecture) has timm's in1k tags
    assert {name.split(".")[0] for name in pretrained} == set(RECIPE_MODELS) - {
        "recipe_efficientnet_b6",
        "recipe_efficientnet_b7",
    }
    assert all(name.split(".")[1].endswith("in1k") for name in pretrained)  # ImageNet-1k weights


def test_pretrained_offline_names_the_repo_it_tried(fresh_process: dict) -> None:
    assert f"'{TIMM_HUB_ORG}/resnet50.tv2_in1k'" in fresh_process["error"]
    assert "pretrained_cfg_overlay" in fresh_process["error"]


# --------------------------------------------------------------------------- every model against timm's twin
@pytest.fixture(scope="module", params=RECIPE_MODELS)
def pair(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module]:
    """(name, recipe model, timm counterpart) in their default configuration; built once per name."""
    name = request.param
    torch.manual_seed(0)
    return name, timm.create_model(name), timm.create_model(timm_name(name))


def test_state_dict_keys_and_shapes_are_timms(pair) -> None:
    _name, model, reference = pair
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert ours == theirs


def test_parameter_count_matches_timm_exactly_and_the_paper(pair) -> None:
    name, model, reference = pair
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    published = PUBLISHED_PARAMS_M[name]
    assert abs(count / 1e6 - published) <= PAPER_TOLERANCE * published, f"{name}: {count / 1e6:.2f} M"


def test_eval_outputs_identical_to_timm_after_a_strict_load_both_ways(pair) -> None:
    _name, model, reference = pair
    model.load_state_dict(reference.state_dict(), strict=True)
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_stochastic_depth_follows_the_lecture_rule_in_depth_order(pair) -> None:
    name, model, reference = pair
    rate = default_drop_path_rate(name)
    blocks, ref_blocks = timm_blocks(model), timm_blocks(reference)
    num_blocks = len(ref_blocks)
    # p_l = 1 − (l / L)(1 − p_L), l = 1 … L counting every block; only blocks with an identity path are droppable
    expected = [
        (depth, 1 - (depth / num_blocks) * rate) for depth, b in enumerate(ref_blocks, 1) if has_identity_path(b)
    ]
    found = [
        (depth, b.drop_path.survival_prob)
        for depth, b in enumerate(blocks, 1)
        if isinstance(b.drop_path, StochasticDepth)
    ]
    assert [depth for depth, _ in found] == [depth for depth, _ in expected]
    assert [p for _, p in found] == pytest.approx([p for _, p in expected], abs=1e-12)
    layers = stochastic_depth_modules(model)
    assert len(layers) == len(expected)
    assert all(layer.mode == "row" for layer in layers)  # the default keeps every timm contract
    assert not any(isinstance(b.drop_path, StochasticDepth) for b in blocks if not has_identity_path(b))


def test_dropout_and_pretrained_cfg_defaults(pair) -> None:
    name, model, _ = pair
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == name
    if name in ("recipe_efficientnet_b6", "recipe_efficientnet_b7"):  # no weights: the recipe's preprocessing
        assert "hf_hub_id" not in cfg and cfg.get("tag") is None
        variant = EFFICIENTNET_VARIANTS[name.rsplit("_", 1)[-1]]
        assert cfg["input_size"] == (3, variant.resolution, variant.resolution)
        assert cfg["crop_pct"] == pytest.approx(variant.resolution / (variant.resolution + 32))
        assert cfg["test_input_size"][-1] > cfg["input_size"][-1]  # FixRes: test at a higher resolution
    else:  # timm's own cfg of the twin's tag, less the pickled `url`, loading model.safetensors only
        timm_cfg = get_pretrained_cfg(f"{timm_name(name)}.{cfg['tag']}").to_dict()
        assert cfg["hf_hub_id"] == timm_cfg["hf_hub_id"] == f"{TIMM_HUB_ORG}/{timm_name(name)}.{cfg['tag']}"
        assert cfg["hf_hub_filename"] == "model.safetensors" and "url" not in cfg
        depth_or_variant = name.removeprefix("recipe_resnet").removeprefix("recipe_efficientnet_")
        defaults = RESNET_DEFAULT_TAGS if name.startswith("recipe_resnet") else EFFICIENTNET_DEFAULT_TAGS
        assert cfg["tag"] == defaults[int(depth_or_variant) if depth_or_variant.isdigit() else depth_or_variant]
        drop = ("architecture", "tag", "url", "hf_hub_filename")
        assert {k: v for k, v in cfg.items() if k not in drop} == {k: v for k, v in timm_cfg.items() if k not in drop}
    assert cfg["license"]
    if name.startswith("recipe_efficientnet"):
        variant = EFFICIENTNET_VARIANTS[name.rsplit("_", 1)[-1]]
        assert model.drop_rate == variant.dropout


def test_training_step_gives_every_parameter_a_gradient(pair) -> None:
    _name, model, _ = pair
    torch.manual_seed(0)
    out = train_step(model, torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["recipe_resnet50", "recipe_efficientnet_b0"])
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_each_mode_keeps_every_block_at_its_survival_probability(name: str, mode: str) -> None:
    model = timm.create_model(name, drop_path_rate=0.5, stochastic_depth_mode=mode).train()
    layers = set_stochastic_depth_generator(model, torch.Generator().manual_seed(0))
    draws = 2_000
    for layer in layers:
        if mode == "batch":  # one draw per forward for the whole batch
            kept = sum(not layer.sample_skip() for _ in range(draws))
        else:  # one draw per sample
            kept = int(layer(torch.ones(draws, 1)).ne(0).sum())
        assert binomtest(kept, draws, layer.survival_prob).pvalue > ALPHA, (layer, kept)


# ------------------------------------------------------------------------------------------ training behaviour
def lecture_drop_path_twin(name: str, rate: float) -> nn.Module:
    """timm's own model with timm's DropPath(1 − p_l) placed by the lecture's rule: the row-mode reference."""
    reference = timm.create_model(timm_name(name), num_classes=10)
    blocks = timm_blocks(reference)
    for depth, block in enumerate(blocks, start=1):
        if has_identity_path(block):
            block.drop_path = DropPath(drop_prob=(depth / len(blocks)) * rate)
    return reference


@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b1"])
def test_row_mode_training_equals_timm_drop_path_at_the_lecture_rates(name: str) -> None:
    reference = lecture_drop_path_twin(name, 0.5)
    model = timm.create_model(name, num_classes=10, drop_path_rate=0.5, drop_rate=0.0)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(3)
    expected = reference.train()(x)
    torch.manual_seed(3)
    assert torch.equal(model.train()(x), expected)


@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b1"])
def test_batch_mode_dropped_block_runs_none_of_its_branch(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    model = timm.create_model(name, num_classes=10, drop_path_rate=0.5, stochastic_depth_mode="batch").train()
    for layer in stochastic_depth_modules(model):
        layer.generator = generator
    blocks = [b for b in timm_blocks(model) if isinstance(b.drop_path, StochasticDepth)]
    calls = [0] * len(blocks)
    for i, block in enumerate(blocks):
        for module in branch_modules(block):
            module.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    replay = torch.Generator().manual_seed(0)
    dropped_total = kept_total = 0
    for _ in range(6):
        calls[:] = [0] * len(blocks)
        model(torch.randn(2, 3, 32, 32))
        for i, block in enumerate(blocks):
            dropped = bool(torch.rand((), generator=replay) >= block.drop_path.survival_prob)
            assert (calls[i] == 0) == dropped, (i, calls[i], dropped)
            dropped_total += dropped
            kept_total += not dropped
    assert dropped_total > 0 and kept_total > 0


@pytest.mark.parametrize("name", ["recipe_resnet50", "recipe_efficientnet_b0"])
def test_batch_mode_block_returns_its_shortcut_or_its_branch_scaled_by_inverse_p(name: str) -> None:
    model = timm.create_model(name, num_classes=10, drop_path_rate=0.9, stochastic_depth_mode="batch")
    reference = timm.create_model(timm_name(name), num_classes=10)
    reference.load_state_dict(model.state_dict(), strict=True)
    index = 8 if name == "recipe_resnet50" else 9  # layer3[1] / the second 112-channel MBConv: identity shortcuts
    block, ref_block = timm_blocks(model)[index], timm_blocks(reference)[index]
    block.train(), ref_block.train()
    generator = torch.Generator().manual_seed(1)
    block.drop_path.generator = generator
    p = block.drop_path.survival_prob
    branch = []  # timm's block output before the shortcut is added (bn3 is the branch's last layer in both)
    ref_block.bn3.register_forward_hook(lambda _m, _i, out: branch.append(out.clone()))
    channels = ref_block.conv1.in_channels if hasattr(ref_block, "conv1") else ref_block.conv_pw.in_channels
    x = torch.randn(2, channels, 8, 8).relu()  # a block input is the output of a ReLU (ResNet) or of a block
    outcomes = set()
    for _ in range(16):
        peek = torch.Generator()
        peek.set_state(generator.get_state())
        dropped = bool(torch.rand((), generator=peek) >= p)
        out = block(x)
        if dropped:
            assert torch.equal(out, x)  # identity path only (ReLU of a non-negative input is the input)
        else:
            branch.clear()
            ref_block(x)
            expected = branch[0] / p + x
            assert torch.equal(out, expected.relu() if name.startswith("recipe_resnet") else expected)
        outcomes.add(dropped)
    assert outcomes == {True, False}


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_grad_checkpointing_reproduces_the_plain_training_step(mode: str) -> None:
    # checkpointing re-runs blocks in backward; the global RNG is restored, so the same blocks/rows are dropped
    model = timm.create_model("recipe_resnet18", num_classes=10, drop_path_rate=0.5, stochastic_depth_mode=mode)
    x = torch.randn(2, 3, 32, 32)
    results = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(4)
        out = train_step(model, x)
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out_plain, grads_plain), (out_ckpt, grads_ckpt) = results
    assert torch.equal(out_plain, out_ckpt)
    assert grads_plain.keys() == grads_ckpt.keys()
    for key in grads_plain:
        torch.testing.assert_close(grads_ckpt[key], grads_plain[key])


def test_grad_checkpointing_efficientnet_gives_every_parameter_a_gradient() -> None:
    model = timm.create_model("recipe_efficientnet_b0", num_classes=10)
    model.set_grad_checkpointing(True)
    train_step(model, torch.randn(2, 3, 32, 32))
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------------------- timm interfaces
@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b1"])
def test_forward_features_head_and_reset_classifier(name: str) -> None:
    model = timm.create_model(name, num_classes=10).eval()
    reference = timm.create_model(timm_name(name), num_classes=10).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(features, reference.forward_features(x))
        assert features.shape == (2, model.num_features, 2, 2)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert torch.equal(model.forward_head(features), model(x))
        model.reset_classifier(3)
        assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b1"])
def test_features_only_matches_timm_features_only(name: str) -> None:
    model = timm.create_model(name, features_only=True).eval()
    reference = timm.create_model(timm_name(name), features_only=True).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features, expected = model(x), reference(x)
    assert model.feature_info.channels() == reference.feature_info.channels()
    assert [f.shape[1] for f in features] == model.feature_info.channels()
    assert all(torch.equal(a, b) for a, b in zip(features, expected, strict=True))
    assert len(stochastic_depth_modules(model)) == len(stochastic_depth_modules(timm.create_model(name)))
    assert all(torch.isfinite(f).all() for f in model.train()(x))


@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing:UserWarning")
@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b0"])
def test_fx_feature_extraction_in_train_and_eval(name: str) -> None:
    model = timm.create_model(name, num_classes=10, drop_path_rate=0.2)
    train_nodes, eval_nodes = get_graph_node_names(model)
    extractor = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(extractor.eval()(x)[eval_nodes[-1]], model.eval()(x))
    torch.manual_seed(0)
    traced_train = extractor.train()(x)[train_nodes[-1]]
    torch.manual_seed(0)
    assert torch.equal(traced_train, model.train()(x))  # the traced graph keeps the per-sample drop path
    fx_backbone = timm.create_model(name, features_only=True, feature_cls="fx", drop_path_rate=0.2)
    assert len(fx_backbone.eval()(x)) == len(fx_backbone.feature_info)


def test_batch_mode_fx_tracing_fails_with_a_clear_message() -> None:
    model = timm.create_model("recipe_resnet18", num_classes=10, drop_path_rate=0.2, stochastic_depth_mode="batch")
    with pytest.raises(RuntimeError, match=r'stochastic_depth_mode="batch".*(eval\(\)|"row")'):
        get_graph_node_names(model)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["recipe_resnet18", "recipe_efficientnet_b1"])  # B1: both recipe block types
def test_torchscript_in_eval_and_training(name: str) -> None:
    model = timm.create_model(name, num_classes=10, drop_path_rate=0.2)
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(scripted.eval()(x), model.eval()(x))
    torch.manual_seed(1)
    expected = model.train()(x)
    torch.manual_seed(1)
    assert torch.equal(scripted.train()(x), expected)  # row mode draws the same masks when scripted
    for layer in stochastic_depth_modules(scripted):
        layer.mode = "batch"
    scripted.train()(x).sum().backward()  # the scripted batch-mode branch runs as well


def test_torch_compile_full_graph_training_step() -> None:
    model = timm.create_model("recipe_resnet18", num_classes=10, drop_path_rate=0.2)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: no graph break in the default
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(2)
    out = train_step(compiled, x)
    torch.manual_seed(2)
    assert torch.equal(out, model.train()(x))
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------------------------ arguments
BAD_ARGS = [
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(drop_path_rate=-0.1), "drop_path_rate"),
    (dict(drop_path_rate=float("nan")), "drop_path_rate"),
    (dict(drop_rate=1.0), "drop_rate"),
    (dict(drop_rate=-0.5), "drop_rate"),
    (dict(stochastic_depth_mode="sample"), "stochastic_depth_mode"),
    (dict(num_classes=-1), "num_classes"),
    (dict(in_chans=0), "in_chans"),
]


@pytest.mark.parametrize("name", ["recipe_resnet50", "recipe_efficientnet_b0"])
@pytest.mark.parametrize(("kwargs", "argument"), BAD_ARGS)
def test_bad_arguments_raise_value_error_naming_the_argument(name: str, kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        timm.create_model(name, **kwargs)


def test_timm_keyword_arguments_flow_through_the_builder() -> None:
    model = timm.create_model(
        "recipe_resnet34", num_classes=7, in_chans=1, drop_rate=0.25, drop_path_rate=0.3, stochastic_depth_mode="batch"
    )
    assert (model.num_classes, model.in_chans, model.drop_rate) == (7, 1, 0.25)
    layers = stochastic_depth_modules(model)
    assert {layer.mode for layer in layers} == {"batch"}
    assert layers[-1].survival_prob == pytest.approx(0.7)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    effnet = timm.create_model("recipe_efficientnet_b2", drop_rate=0.1, drop_path_rate=0.0)
    assert effnet.drop_rate == 0.1
    assert {layer.survival_prob for layer in stochastic_depth_modules(effnet)} == {1.0}


# ---------------------------------------------------------------------------------------- pretrained weights
def test_pretrained_weights_load_from_a_file_or_a_local_folder(tmp_path: Path) -> None:
    source = timm.create_model("resnet18")
    weights = tmp_path / "model.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(weights))
    model = timm.create_model("recipe_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
    expected = source.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    head = timm.create_model(
        "recipe_resnet18", pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=str(weights))
    )
    assert head.fc.out_features == 5 and torch.equal(head.conv1.weight, source.conv1.weight)
    # a timm Hub folder whose config.json names the recipe architecture
    config = {"architecture": "recipe_resnet18", "num_classes": 1000, "pretrained_cfg": dict(model.pretrained_cfg)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True, stochastic_depth_mode="batch")
    assert type(loaded).__name__ == "RecipeResNet" and stochastic_depth_modules(loaded)[0].mode == "batch"
    assert torch.equal(loaded.fc.weight, source.fc.weight)


def test_pretrained_without_published_weights_names_the_repo_and_the_alternatives() -> None:
    # The suite's Hub server answers 404 for the unpublished repository, as the real Hub would.
    with pytest.raises(PretrainedWeightsError) as info:  # B6: timm has no weights of this architecture
        timm.create_model("recipe_efficientnet_b6", pretrained=True)
    message = str(info.value)
    assert "recipe_efficientnet_b6: no pretrained weights exist" in message
    assert "pretrained_cfg_overlay=dict(hf_hub_id=" in message and "hf-hub:" in message
    overlay = dict(hf_hub_id="someone/elsewhere")
    with pytest.raises(PretrainedWeightsError, match="'someone/elsewhere'"):
        timm.create_model("recipe_resnet18", pretrained=True, pretrained_cfg_overlay=overlay)


def test_package_exports_the_layer() -> None:
    assert timm_recipes.StochasticDepth is StochasticDepth

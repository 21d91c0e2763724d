"""Export, model cards and publishing, with the real ``huggingface_hub`` client against the suite's own Hub.

The server (``tests/hubserver.py``) runs on 127.0.0.1, started by ``conftest.py`` before ``huggingface_hub`` is
imported; in this process the client runs with ``HF_HUB_DISABLE_XET=1`` (LFS uploads). Nothing is patched.
Fresh-process loading (plain timm, ``HF_HUB_OFFLINE=1``, the Xet-enabled client) is in ``test_hub_roundtrip.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, constants, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file
from sklearn.datasets import load_digits

import timm_recipes
from timm_recipes.cli import main as cli_main
from timm_recipes.config import recipe_to_dict
from timm_recipes.hub import (
    ExportError,
    HubAuthError,
    HubConflictError,
    HubConnectionError,
    HubError,
    Measurement,
    build_model_card,
    default_tag,
    export,
    native_architecture,
    publish,
    variant_name,
)
from timm_recipes.hub.citations import CITATIONS
from timm_recipes.hub.exporting import EXPORT_FILES
from timm_recipes.recipes import get_preset, load_recipe

ORG = "recipe-org"
NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def hub(hub_server):
    return hub_server


@pytest.fixture(autouse=True)
def _clean_hub(hub, network_violations):
    """Every test starts from an empty Hub and must not try to reach anything but 127.0.0.1."""
    hub.state.reset()
    yield
    assert network_violations == []
    assert {r.client for r in hub.state.requests} <= {"127.0.0.1"}
    assert {r.host for r in hub.state.requests} <= {hub.url.removeprefix("http://")}


@pytest.fixture(scope="module")
def recipe():
    return get_preset("demo")


def _trained_like(name: str = "recipe_resnet18", seed: int = 0, **kwargs) -> torch.nn.Module:
    """A random model whose BatchNorm statistics moved away from their initial values (a few train-mode passes)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=NUM_CLASSES, **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _trained_like(stochastic_depth_mode="batch", drop_path_rate=0.1)


@pytest.fixture(scope="module")
def digits_batch() -> torch.Tensor:
    """Eight real scans from scikit-learn's digits, upscaled to 32 x 32 RGB and normalised like the demo."""
    images = torch.tensor(load_digits().images[:8], dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (images - mean[:, None, None]) / std[:, None, None]


MEASURED = (
    Measurement(value=81.25, variant="raw", img_size=32, crop_pct=0.9, num_samples=360),
    Measurement(value=84.5, variant="ema", img_size=32, crop_pct=0.9, num_samples=360),
    Measurement(value=86.0, variant="fixres", img_size=40, crop_pct=1.0, split="test"),
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model, recipe) -> Path:
    folder = tmp_path_factory.mktemp("export") / "ema"
    return export(
        model,
        folder,
        recipe=recipe,
        metrics=MEASURED,
        variant="ema",
        label_names=[str(d) for d in range(NUM_CLASSES)],
        repo_id=f"{ORG}/recipe_resnet18.ema_digits32",
    )


def _logits(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.eval()(x)


# ------------------------------------------------------------------------------------------------ export


def test_export_layout(exported, model, recipe):
    assert sorted(p.name for p in exported.iterdir()) == sorted(EXPORT_FILES)
    config = json.loads((exported / "config.json").read_text())
    assert config["architecture"] == "resnet18"  # timm's own: plain timm loads it
    assert config["num_classes"] == NUM_CLASSES and config["num_features"] == model.num_features
    assert "stochastic_depth_mode" not in config["model_args"] and "drop_path_rate" not in config["model_args"]
    assert config["label_names"] == [str(d) for d in range(NUM_CLASSES)]
    pcfg = config["pretrained_cfg"]
    a = recipe.aug
    assert pcfg["input_size"] == [3, a.train_size, a.train_size]
    assert pcfg["test_input_size"] == [3, a.test_size, a.test_size]
    assert pcfg["crop_pct"] == pcfg["test_crop_pct"] == a.test_crop_pct
    assert pcfg["mean"] == list(a.mean) and pcfg["std"] == list(a.std)
    assert pcfg["interpolation"] == a.interpolation and pcfg["tag"] == "ema_digits32"
    assert "hf_hub_id" not in pcfg and "origin_url" not in pcfg  # the registry's provenance is not these weights'
    assert config["timm_recipes"] == {
        "model": "recipe_resnet18",
        "variant": "ema",
        "tag": "ema_digits32",
        "version": timm_recipes.__version__,
    }
    # the weights: exactly the model's tensors, under plain timm's keys
    weights = load_file(str(exported / "model.safetensors"))
    assert weights.keys() == timm.create_model("resnet18", num_classes=NUM_CLASSES).state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert load_recipe(exported / "recipe.yaml") == recipe


def test_export_loads_back_identical_in_plain_timm(exported, model, digits_batch):
    loaded = timm.create_model(f"local-dir:{exported}", pretrained=True)
    assert type(loaded) is timm.models.ResNet  # not the recipe class: the weights need no plugin
    assert torch.equal(_logits(loaded, digits_batch), _logits(model, digits_batch))
    data = timm.data.resolve_model_data_config(loaded, use_test_size=True)
    assert data["input_size"] == (3, 32, 32) and data["crop_pct"] == 0.9


def test_export_refuses_outputs_that_differ(tmp_path, recipe):
    """A model whose behaviour is not all in its state_dict (here a forward hook) must not be exported."""
    model = _trained_like(seed=1)
    model.fc.register_forward_hook(lambda module, args, out: out * 2)
    with pytest.raises(ExportError, match="outputs differ"):
        export(model, tmp_path / "bad", recipe=recipe)
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even the staging folder


def test_export_fixres_keeps_the_chosen_test_size(tmp_path, recipe):
    from timm_recipes.train.fixres import set_test_resolution

    model = _trained_like(seed=2)
    set_test_resolution(model, 40, 1.0)
    folder = export(model, tmp_path / "fixres", recipe=recipe, variant="fixres", metrics=MEASURED)
    pcfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    assert pcfg["test_input_size"] == [3, 40, 40] and pcfg["test_crop_pct"] == 1.0
    assert pcfg["input_size"] == [3, recipe.aug.train_size, recipe.aug.train_size]
    assert pcfg["tag"] == "fixres40_digits"
    card = ModelCard.load(folder / "README.md")
    assert [r.metric_value for r in card.data.eval_results] == [m.value for m in MEASURED if m.variant == "fixres"]


def test_export_channels_last_model(tmp_path, recipe, digits_batch):
    """A model in channels_last (as the trainer can run it) is exported through a contiguous copy of its weights."""
    model = _trained_like(seed=6).to(memory_format=torch.channels_last)
    folder = export(model, tmp_path / "cl", recipe=recipe)
    weights = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    torch.testing.assert_close(_logits(loaded, digits_batch), _logits(model, digits_batch))


def test_export_bad_input(tmp_path, model, exported):
    with pytest.raises(ValueError, match="variant"):
        export(model, tmp_path / "a", variant="swa")
    with pytest.raises(ValueError, match="tag"):
        export(model, tmp_path / "b", tag="Bad.Tag")
    with pytest.raises(ValueError, match="label_names"):
        export(model, tmp_path / "c", label_names=["a", "b"])
    with pytest.raises(ValueError, match="not empty"):
        export(model, exported)
    with pytest.raises(ValueError, match="timm model"):
        export(torch.nn.Linear(2, 2), tmp_path / "d")
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        Measurement(value=150.0, variant="ema", img_size=32)
    with pytest.raises(ValueError, match="variant"):
        Measurement(value=50.0, variant="best", img_size=32)
    with pytest.raises(ValueError, match="unknown field"):
        Measurement.coerce({"value": 50.0, "variant": "ema", "img_size": 32, "top1": 50.0})


def test_export_overwrite_replaces_the_folder(tmp_path, recipe):
    first, second = _trained_like(seed=3), _trained_like(seed=4)
    folder = export(first, tmp_path / "x", recipe=recipe)
    export(second, folder, recipe=recipe, overwrite=True)
    weights = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in second.state_dict().items())


def test_names_and_native_architectures():
    assert variant_name("recipe_resnet18", default_tag("ema", "digits", 32)) == "recipe_resnet18.ema_digits32"
    assert variant_name("recipe_resnet18", default_tag("fixres", "digits", 32, 40)) == "recipe_resnet18.fixres40_digits"
    assert default_tag("raw", "My Data", 224) == "my_data224"
    for name in timm.list_models("recipe_*"):
        assert native_architecture(name) == name.removeprefix("recipe_")
        assert timm.is_model(native_architecture(name))
    assert native_architecture("resnet18") is None


# ------------------------------------------------------------------------------------------------ model cards


def test_card_parses_and_metadata_round_trips(exported, recipe):
    card = ModelCard.load(exported / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.license == recipe.hub.license
    assert data.pipeline_tag == "image-classification" and data.datasets == ["digits"]
    assert {"timm", "timm-recipes", "ema"} <= set(data.tags)
    assert data.model_name == "recipe_resnet18.ema_digits32"
    own = [m for m in MEASURED if m.variant == "ema"]  # the model-index holds these weights' results only
    assert [(r.metric_value, r.dataset_split, r.metric_args["img_size"]) for r in data.eval_results] == [
        (m.value, m.split, m.img_size) for m in own
    ]
    # metadata round trip: parsed -> YAML -> parsed again is the same
    again = ModelCard(f"---\n{data.to_yaml()}\n---\n{card.text}")
    assert again.data.to_dict() == data.to_dict()


def test_card_reports_only_measured_numbers(exported):
    text = (exported / "README.md").read_text()
    results = text.split("## Results")[1].split("\n## ")[0]
    rows = [line for line in results.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(MEASURED)
    for row, m in zip(rows, sorted(MEASURED, key=lambda m: ("raw", "ema", "fixres").index(m.variant)), strict=True):
        value = float(row.split("|")[-2].split("±")[0])
        assert value == pytest.approx(m.value, abs=0.005) and f"{m.img_size} px" in row
        if m.num_samples:  # the binomial standard error sqrt(p (1 - p) / n), in percent
            se = float(row.split("±")[1].strip(" |"))
            assert se == pytest.approx(100 * (m.value / 100 * (1 - m.value / 100) / m.num_samples) ** 0.5, abs=0.005)
    for section in ("## Training recipe", "## Train and test resolution", "## Usage", "## Limitations", "## Citation"):
        assert section in text
    assert "hf-hub:recipe-org/recipe_resnet18.ema_digits32" in text and "import timm_recipes" in text


def test_card_without_measurements_says_so(exported):
    config = json.loads((exported / "config.json").read_text())
    card = build_model_card(config, model_name="recipe_resnet18.digits32", variant="raw")
    assert "No results were measured" in card.text and card.data.eval_results is None
    assert "The training recipe was not recorded" in card.text


def test_card_accepts_a_recipe_or_its_dict(exported, recipe):
    config = json.loads((exported / "config.json").read_text())
    kwargs = dict(model_name="recipe_resnet18.ema_digits32", variant="ema", measurements=MEASURED, dataset="digits")
    from_object = build_model_card(config, recipe=recipe, **kwargs)
    from_dict = build_model_card(config, recipe=recipe_to_dict(recipe), **kwargs)
    assert str(from_object) == str(from_dict)
    with pytest.raises(ValueError, match=r"optim\.lr"):
        build_model_card(config, recipe={"optim": {"lr": "fast"}}, **kwargs)


def test_card_cites_what_the_recipe_uses(exported, recipe):
    from timm_recipes.config import apply_overrides

    config = json.loads((exported / "config.json").read_text())
    text = (exported / "README.md").read_text()
    used = {"resnet", "timm", "stochastic_depth", "label_smoothing", "mixup", "cutmix", "cutout", "random_erasing"}
    used |= {"ema", "cosine", "warmup", "rsb", "torchvision_recipe"}
    for key, citation in CITATIONS.items():
        assert (citation.url in text) == (key in used), key
    plain = apply_overrides(recipe, {"mix.mixup_alpha": 0.0, "mix.cutmix_alpha": 0.0, "aug.cutout_p": 0.0})
    card = build_model_card(config, model_name="recipe_resnet18.x", variant="raw", recipe=plain).text
    for key in ("mixup", "cutmix", "cutout", "random_erasing"):
        assert CITATIONS[key].url not in card
    assert re.search(r"@inproceedings\{huang2016deep", card)


# ------------------------------------------------------------------------------------------------ publishing


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _commits(hub, repo_id: str) -> int:
    return len(hub.state.repos[repo_id].commits)


def test_publish_lfs_path_one_commit_and_load_back(hub, exported, model, digits_batch):
    repo_id = f"{ORG}/recipe_resnet18.ema_digits32"
    assert hub.url == constants.ENDPOINT and constants.HF_HUB_DISABLE_XET  # this process: the LFS path
    result = publish(exported, repo_id, token=hub.state.token)
    assert result.created_repo and result.revision == "main" and set(result.files) == set(EXPORT_FILES)
    repo = hub.state.repos[repo_id]
    assert _commits(hub, repo_id) == 2  # the repository's initial commit, then ONE commit with every file
    head = repo.resolve("main").files
    assert head["model.safetensors"].lfs and not head["config.json"].lfs  # weights went through git-LFS
    paths = [r.path for r in hub.state.requests]
    assert sum(p.endswith("/commit/main") for p in paths) == 1
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths) and any("/_lfs/upload/" in p for p in paths)
    for name in EXPORT_FILES:  # what the Hub serves is byte for byte what was exported
        assert _sha256(Path(hf_hub_download(repo_id, name))) == _sha256(exported / name)
    from_hub = timm.create_model(f"hf-hub:{repo_id}", pretrained=True)
    assert torch.equal(_logits(from_hub, digits_batch), _logits(model, digits_batch))
    overlay = dict(hf_hub_id=repo_id, num_classes=NUM_CLASSES)
    as_recipe = timm.create_model("recipe_resnet18", pretrained=True, num_classes=10, pretrained_cfg_overlay=overlay)
    assert type(as_recipe).__name__ == "RecipeResNet"
    assert torch.equal(_logits(as_recipe, digits_batch), _logits(model, digits_batch))


def test_publish_inline_path(hub, exported):
    hub.state.upload_mode = "regular"  # the server asks for every file inline, base64 in the NDJSON commit
    repo_id = f"{ORG}/inline.ema_digits32"
    publish(exported, repo_id, token=hub.state.token)
    head = hub.state.repos[repo_id].resolve("main").files
    assert not head["model.safetensors"].lfs and hub.state.lfs_objects == {}
    assert not any("lfs" in r.path for r in hub.state.requests)
    assert head["model.safetensors"].data == (exported / "model.safetensors").read_bytes()


def test_publish_twice_is_refused_unless_overwrite(hub, exported, tmp_path, recipe, digits_batch):
    repo_id = f"{ORG}/recipe_resnet18.twice"
    publish(exported, repo_id, token=hub.state.token)
    head = hub.state.repos[repo_id].refs["main"]
    with pytest.raises(HubConflictError, match="already holds weights"):
        publish(exported, repo_id, token=hub.state.token)
    assert hub.state.repos[repo_id].refs["main"] == head  # nothing changed
    other = _trained_like(seed=5)
    newer = export(other, tmp_path / "newer", recipe=recipe, variant="ema")
    pr = publish(newer, repo_id, token=hub.state.token, create_pr=True)  # a proposal replaces nothing
    assert pr.pr_url and pr.revision == "refs/pr/1" and hub.state.repos[repo_id].refs["main"] == head
    publish(newer, repo_id, token=hub.state.token, overwrite=True)
    assert hub.state.repos[repo_id].refs["main"] != head
    loaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True)
    assert torch.equal(_logits(loaded, digits_batch), _logits(other, digits_batch))


def test_overwrite_removes_stale_weight_files(hub, exported):
    """Weights left by an older upload (a pickle) must not survive next to the new safetensors."""
    from huggingface_hub import HfApi

    repo_id = f"{ORG}/recipe_resnet18.stale"
    api = HfApi(token=hub.state.token)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"old weights", path_in_repo="pytorch_model.bin", repo_id=repo_id)
    with pytest.raises(HubConflictError, match=r"pytorch_model\.bin"):
        publish(exported, repo_id, token=hub.state.token)
    publish(exported, repo_id, token=hub.state.token, overwrite=True)
    files = hub.state.repos[repo_id].resolve("main").files
    assert "pytorch_model.bin" not in files and set(EXPORT_FILES) <= set(files)


def test_publish_refuses_another_architecture(hub, exported, tmp_path):
    repo_id = f"{ORG}/recipe_resnet18.arch"
    publish(exported, repo_id, token=hub.state.token)
    small = timm.create_model("resnet10t", num_classes=NUM_CLASSES).eval()
    folder = export(small, tmp_path / "small", data_config={"input_size": (3, 32, 32), "test_input_size": (3, 32, 32)})
    with pytest.raises(HubConflictError, match="'resnet18' model, not 'resnet10t'"):
        publish(folder, repo_id, token=hub.state.token, overwrite=True)


def test_publish_revision_branch(hub, exported):
    repo_id = f"{ORG}/recipe_resnet18.branch"
    result = publish(exported, repo_id, token=hub.state.token, revision="v1")
    repo = hub.state.repos[repo_id]
    assert result.revision == "v1" and "model.safetensors" in repo.resolve("v1").files
    assert "model.safetensors" not in repo.resolve("main").files


def test_publish_a_model_directly(hub, model, recipe, digits_batch):
    repo_id = f"{ORG}/recipe_resnet18.direct"
    publish(model, repo_id, token=hub.state.token, export_kwargs={"recipe": recipe, "variant": "ema"})
    card = ModelCard.load(hf_hub_download(repo_id, "README.md"))
    assert f"hf-hub:{repo_id}" in card.text  # the card was written for the repository it went to
    loaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True)
    assert torch.equal(_logits(loaded, digits_batch), _logits(model, digits_batch))


# ------------------------------------------------------------------------------------------------ errors


def _capture_everything(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("huggingface_hub", "timm_recipes", "timm", "httpx2"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def test_the_token_is_never_printed_or_logged(hub, exported, caplog, capsys):
    _capture_everything(caplog)
    publish(exported, f"{ORG}/secret.ema", token=hub.state.token)
    wrong = "hf_wrong_" + "x" * 24
    with pytest.raises(HubAuthError) as info:
        publish(exported, f"{ORG}/secret.ema2", token=wrong)
    out = capsys.readouterr()
    seen = caplog.text + out.out + out.err + str(info.value) + repr(info.value.__cause__)
    assert caplog.records  # the check sees the logs at all
    for token in (hub.state.token, wrong):
        assert token not in seen


def test_no_token(hub, exported, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert not Path(constants.HF_TOKEN_PATH).exists()
    with pytest.raises(HubAuthError, match="no Hugging Face token"):
        publish(exported, f"{ORG}/x.ema", token=None)
    assert hub.state.requests == []  # refused before any request


def test_token_from_environment_and_saved_login(hub, exported, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.state.token)
    assert publish(exported, f"{ORG}/env.ema").created_repo
    monkeypatch.delenv("HF_TOKEN")
    token_path = Path(constants.HF_TOKEN_PATH)
    token_path.parent.mkdir(parents=True, exist_ok=True)
    token_path.write_text(hub.state.token)
    try:
        assert publish(exported, f"{ORG}/login.ema").created_repo
    finally:
        token_path.unlink()


def test_wrong_and_read_only_tokens(hub, exported):
    with pytest.raises(HubAuthError, match="401"):
        publish(exported, f"{ORG}/x.ema", token="hf_" + "0" * 30)
    with pytest.raises(HubAuthError, match="403"):
        publish(exported, f"{ORG}/x.ema", token=hub.state.read_token)
    with pytest.raises(HubAuthError, match="403"):
        publish(exported, "someone-else/x.ema", token=hub.state.token)
    assert hub.state.repos == {}


def test_unreachable_endpoint_fails_within_seconds(exported, hub):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(HubConnectionError, match=f"cannot reach the Hub at http://127.0.0.1:{port}"):
        publish(exported, f"{ORG}/x.ema", token=hub.state.token, endpoint=f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 10


def test_failed_commit_leaves_no_half_published_repo(hub, exported, tmp_path):
    hub.state.fail_next_commits = 1
    with pytest.raises(HubError, match="500"):
        publish(exported, f"{ORG}/fail.ema", token=hub.state.token)
    assert f"{ORG}/fail.ema" not in hub.state.repos  # the repository this call created is gone again
    publish(exported, f"{ORG}/fail.ema", token=hub.state.token)
    head = hub.state.repos[f"{ORG}/fail.ema"].refs["main"]
    changed = Path(shutil.copytree(exported, tmp_path / "changed"))
    (changed / "README.md").write_text((exported / "README.md").read_text() + "\nA changed card.\n")
    hub.state.fail_next_commits = 1
    with pytest.raises(HubError, match="500"):
        publish(changed, f"{ORG}/fail.ema", token=hub.state.token, overwrite=True)
    assert hub.state.repos[f"{ORG}/fail.ema"].refs["main"] == head  # an existing repository is left as it was


def test_private_request_on_public_repo_is_refused(hub, exported):
    publish(exported, f"{ORG}/public.ema", token=hub.state.token, create_pr=True)
    with pytest.raises(HubConflictError, match="public"):
        publish(exported, f"{ORG}/public.ema", token=hub.state.token, private=True, create_pr=True)


def test_missing_repo_when_loading(hub):
    with pytest.raises(RepositoryNotFoundError, match=f"{ORG}/missing"):
        timm.create_model(f"hf-hub:{ORG}/missing.ema", pretrained=True)
    from timm_recipes.models import PretrainedWeightsError

    overlay = dict(hf_hub_id=f"{ORG}/missing.ema", num_classes=NUM_CLASSES)
    with pytest.raises(PretrainedWeightsError, match=f"{ORG}/missing.ema"):
        timm.create_model("recipe_resnet18", pretrained=True, num_classes=10, pretrained_cfg_overlay=overlay)


def test_publish_refuses_pickles_and_incomplete_folders(tmp_path, exported, hub):
    (tmp_path / "config.json").write_text((exported / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        publish(tmp_path, f"{ORG}/x.ema", token=hub.state.token)
    (tmp_path / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="pickle"):
        publish(tmp_path, f"{ORG}/x.ema", token=hub.state.token)
    with pytest.raises(ValueError, match="owner/name"):
        publish(exported, "no-namespace", token=hub.state.token)
    assert hub.state.requests == []


# ------------------------------------------------------------------------------------------------ the guard, the CLI


def test_requests_stay_on_loopback(hub, network_violations):
    """The endpoint is the test Hub, and the guard refuses (and records) any other destination."""
    assert hub.url == constants.ENDPOINT
    with pytest.raises(PermissionError, match="network guard"):
        socket.create_connection(("192.0.2.1", 443), timeout=0.5)  # TEST-NET-1: never routed
    assert network_violations == ["connect to ('192.0.2.1', 443)"]
    network_violations.clear()


def test_cli_publish(hub, exported, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", hub.state.token)
    repo_id = f"{ORG}/recipe_resnet18.cli"
    assert cli_main(["publish", str(exported), "--repo", repo_id, "--private"]) == 0
    out = capsys.readouterr().out
    assert repo_id in out and "/commit/" in out and hub.state.token not in out
    assert hub.state.repos[repo_id].private
    assert cli_main(["publish", str(exported), "--repo", repo_id]) == 1  # refused at run time: weights exist
    assert "already holds weights" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ hardening
@pytest.fixture
def silent_endpoint():
    """A loopback server that accepts connections and never answers."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_silent_endpoint_ends_publish_and_pretrained_within_the_timeout(exported, silent_endpoint, monkeypatch):
    from timm_recipes.network import NetworkError

    start = time.monotonic()
    with pytest.raises(HubConnectionError, match=f"no answer from the Hub at {silent_endpoint} within 1.5 s"):
        publish(exported, f"{ORG}/x.ema", token="hf_x", endpoint=silent_endpoint, timeout=1.5)
    assert time.monotonic() - start < 8
    template = silent_endpoint + "/{repo_id}/resolve/{revision}/{filename}"  # where timm's hf_hub_download goes
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "ENDPOINT", silent_endpoint)
    monkeypatch.setenv("TIMM_RECIPES_HUB_TIMEOUT", "1.5")
    start = time.monotonic()
    overlay = dict(hf_hub_id=f"{ORG}/never-answers", num_classes=NUM_CLASSES)
    expected = f"downloading the pretrained weights: no answer from the Hub at {silent_endpoint}"
    with pytest.raises(NetworkError, match=expected):
        timm.create_model("recipe_resnet18", pretrained=True, num_classes=NUM_CLASSES, pretrained_cfg_overlay=overlay)
    assert time.monotonic() - start < 8
    monkeypatch.setenv("TIMM_RECIPES_HUB_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TIMM_RECIPES_HUB_TIMEOUT must be a number of seconds > 0"):
        publish(exported, f"{ORG}/x.ema", token="hf_x", endpoint=silent_endpoint)


def test_export_overwrite_replaces_only_a_previous_export(tmp_path, model, recipe, exported, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints" / "ckpt-e0001-abc").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match=r"refuses to replace .*run.*not a previous export, it holds \['checkpoints'"):
        export(model, run, recipe=recipe, overwrite=True)
    assert (run / "metrics.jsonl").exists() and (run / "checkpoints" / "ckpt-e0001-abc").is_dir()
    work = tmp_path / "work"
    shutil.copytree(exported, work)  # even a folder that IS an export, when it is the current directory
    monkeypatch.chdir(work)
    for target in (".", ".."):
        with pytest.raises(ValueError, match="it is the current directory or one of its parents"):
            export(model, target, recipe=recipe, overwrite=True)
    assert sorted(p.name for p in work.iterdir()) == sorted(EXPORT_FILES)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"it contains .*, the source"):
        export(model, work, recipe=recipe, overwrite=True, protect=[work / "model.safetensors"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no config\.json written by timm-recipes"):
        export(model, tmp_path / "other", recipe=recipe, overwrite=True)
    export(model, work, recipe=recipe, overwrite=True)  # a previous export elsewhere: replaced


def test_publish_fills_the_repo_into_a_card_exported_without_it(hub, tmp_path, model, recipe):
    old_umask = os.umask(0o022)
    try:
        folder = export(model, tmp_path / "e", recipe=recipe, variant="ema", tag="ema_card")
    finally:
        os.umask(old_umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (folder, *folder.iterdir())}
    assert modes == {"e": 0o755, **dict.fromkeys(EXPORT_FILES, 0o644)}  # the umask's, not mkdtemp's 0700
    text = (folder / "README.md").read_text()
    assert "hf-hub:<org>/recipe_resnet18.ema_card" in text
    assert re.search(r"\| 32 × 32 \| 0\.9 \| 35 \|", text)  # timm's resize: floor(32 / 0.9)
    repo_id = f"{ORG}/recipe_resnet18.ema_card"
    publish(folder, repo_id, token=hub.state.token)
    card = Path(hf_hub_download(repo_id, "README.md")).read_text()
    assert f"hf-hub:{repo_id}" in card and "<org>" not in card

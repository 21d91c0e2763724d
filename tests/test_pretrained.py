"""``pretrained=True`` on the recipe models loads timm's own ImageNet-1k weights from ``timm/<arch>.<tag>``.

The suite's Hub server stands in for the Hub: the test uploads, with the real ``huggingface_hub`` client, a repository
named and laid out like timm's (``config.json`` + ``model.safetensors``), then lets timm fetch it through
``HF_ENDPOINT``. ResNet-18 keeps it fast: its default tag is ``a1_in1k``, the repository ``timm/resnet18.a1_in1k``.
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
from huggingface_hub import HfApi
from timm.models import get_pretrained_cfg

import timm_recipes
from timm_recipes.models import RECIPE_MODELS, TIMM_HUB_ORG, PretrainedWeightsError
from timm_recipes.train.weights import resolve_weights

pytestmark = pytest.mark.usefixtures("one_thread")

ARCH, TAG = "resnet18", "a1_in1k"
REPO = f"{TIMM_HUB_ORG}/{ARCH}.{TAG}"


@pytest.fixture(scope="module")
def timm_weights() -> dict[str, torch.Tensor]:
    """What timm's ``resnet18.a1_in1k`` repository would hold: a ``resnet18`` state_dict (random, moved BN stats)."""
    torch.manual_seed(7)
    model = timm.create_model(ARCH)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def timm_repo(hub_server, timm_weights, tmp_path_factory) -> str:
    """``timm/resnet18.a1_in1k`` on the test Hub, in timm's layout (as ``timm.models.push_to_hf_hub`` writes it)."""
    state = hub_server.state
    state.reset()
    folder = tmp_path_factory.mktemp("timm-repo")
    safetensors.torch.save_file(timm_weights, str(folder / "model.safetensors"))
    cfg = get_pretrained_cfg(f"{ARCH}.{TAG}").to_dict()
    config = {"architecture": ARCH, "num_classes": 1000, "num_features": 512, "pretrained_cfg": cfg}
    (folder / "config.json").write_text(json.dumps(config))
    orgs = state.orgs
    state.orgs = (*orgs, TIMM_HUB_ORG)  # the test may write to the `timm` namespace of its own Hub
    try:
        api = HfApi(token=state.token)
        api.create_repo(REPO)
        api.upload_folder(repo_id=REPO, folder_path=str(folder))
    finally:
        state.orgs = orgs
    return REPO


def test_every_registered_tag_is_a_repository_timm_lists() -> None:
    names = timm.list_pretrained("recipe_*")
    assert names
    for name in names:
        arch, tag = name.split(".", 1)
        twin = arch.removeprefix("recipe_")
        cfg = get_pretrained_cfg(name)
        assert f"{twin}.{tag}" in timm.list_pretrained(f"{twin}.*")
        assert cfg.hf_hub_id == get_pretrained_cfg(f"{twin}.{tag}").hf_hub_id == f"timm/{twin}.{tag}"
    architectures = {n.split(".")[0] for n in names}
    assert architectures == set(RECIPE_MODELS) - {"recipe_efficientnet_b6", "recipe_efficientnet_b7"}


def test_pretrained_true_fetches_timms_repository_bit_for_bit(timm_repo, timm_weights, hub_server) -> None:
    model = timm.create_model("recipe_resnet18", pretrained=True)
    assert type(model).__name__ == "RecipeResNet"
    state = model.state_dict()
    assert state.keys() == timm_weights.keys()
    assert all(torch.equal(state[k], v) for k, v in timm_weights.items())
    paths = [r.path for r in hub_server.state.requests]
    assert any(p.endswith(f"/{REPO}/resolve/main/model.safetensors") for p in paths)
    assert not any(p.endswith((".bin", ".pth")) for p in paths)  # safetensors only
    # the model's pretrained_cfg is timm's own for that tag
    theirs = get_pretrained_cfg(f"{ARCH}.{TAG}").to_dict()
    ours = dict(model.pretrained_cfg)
    assert ours.pop("architecture") == "recipe_resnet18" and ours.pop("hf_hub_filename") == "model.safetensors"
    assert ours == {k: v for k, v in theirs.items() if k not in ("architecture", "url")}


def test_other_class_count_reinitialises_only_the_classifier(timm_repo, timm_weights) -> None:
    torch.manual_seed(0)
    model = timm.create_model("recipe_resnet18", pretrained=True, num_classes=10)
    state = model.state_dict()
    assert state["fc.weight"].shape == (10, 512) and state["fc.bias"].shape == (10,)
    assert all(torch.equal(state[k], v) for k, v in timm_weights.items() if not k.startswith("fc."))


def test_the_resolver_reads_the_same_repository_for_pretrained_and_the_tag(timm_repo, timm_weights) -> None:
    for init in ("pretrained", TAG, f"recipe_resnet18.{TAG}", f"{ARCH}.{TAG}", f"hf-hub:{REPO}"):
        source = resolve_weights(init, "recipe_resnet18")
        assert source.location == REPO and source.base_model == REPO, init
        assert all(torch.equal(source.state_dict[k], v) for k, v in timm_weights.items())
        assert source.pretrained_cfg["interpolation"] == "bicubic"  # timm's cfg of resnet18.a1_in1k
    assert "ResNet strikes back" in resolve_weights(TAG, "recipe_resnet18").recipe
    with pytest.raises(ValueError, match=r"no pretrained weights 'recipe_resnet18\.nope_in1k'"):
        resolve_weights("nope_in1k", "recipe_resnet18")


OFFLINE = """
import hashlib, timm, timm_recipes
model = timm.create_model("recipe_resnet18", pretrained=True)
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
print(digest)
"""


def test_offline_mode_loads_from_the_cache(timm_repo, timm_weights) -> None:
    timm.create_model("recipe_resnet18", pretrained=True)  # fills the cache (HF_HOME of the suite)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")  # nothing to reach, none needed
    env["PYTHONPATH"] = os.pathsep.join([str(Path(timm_recipes.__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", OFFLINE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import hashlib

    expected = hashlib.sha256(b"".join(v.numpy().tobytes() for v in timm_weights.values())).hexdigest()
    assert out.stdout.strip().splitlines()[-1] == expected


def test_models_without_weights_and_other_sources_keep_working(timm_weights, tmp_path) -> None:
    with pytest.raises(PretrainedWeightsError, match="recipe_efficientnet_b7: no pretrained weights exist"):
        timm.create_model("recipe_efficientnet_b7", pretrained=True)
    file = tmp_path / "model.safetensors"
    safetensors.torch.save_file(timm_weights, str(file))
    model = timm.create_model("recipe_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(file)))
    assert torch.equal(model.conv1.weight, timm_weights["conv1.weight"])


# ------------------------------------------------------------------------------------------------ the CLI, end to end
def test_finetune_preset_train_fixres_export_publish_and_model_commands(
    timm_repo, timm_weights, hub_server, tmp_path, monkeypatch, capsys
) -> None:
    """``train --recipe finetune_resnet50 --set data.root=PATH`` (shrunk to ResNet-18 at 16 px), then ``fixres``,
    ``export``, ``publish`` from that run; ``evaluate`` / ``fixres`` of a model on an image folder."""
    import shutil

    import yaml
    from huggingface_hub import hf_hub_download

    from timm_recipes.cli import main as cli_main
    from timm_recipes.data.datasets import DigitsDataset

    data = DigitsDataset.export_folder(tmp_path / "digits", size=16, per_class=6)
    for split in ("train", "val", "test"):
        for c in "0123456":
            shutil.rmtree(data / split / c)  # three classes: 7, 8, 9
    shrink = [
        f"data.root={data}", "model.name=recipe_resnet18", "aug.train_size=16", "aug.test_size=16",
        "schedule.epochs=2", "schedule.milestones_epochs=[1]", "data.batch_size=6", "data.num_workers=0",
        "optim.freeze_backbone_epochs=1", f"run.output_dir={tmp_path / 'runs' / '{name}'}", "run.progress=false",
    ]  # fmt: skip
    args = ["train", "--recipe", "finetune_resnet50", *(a for s in shrink for a in ("--set", s))]
    assert cli_main(args) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "finetune_resnet50"
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["model"]["init"] == "pretrained" and saved["model"]["num_classes"] == 3
    # the data's preprocessing came from timm's cfg of resnet18.a1_in1k (the recipe leaves it unset)
    assert saved["aug"]["interpolation"] == "bicubic" and saved["aug"]["mean"] == [0.485, 0.456, 0.406]
    assert cli_main(["fixres", str(run), "--sizes", "16", "20", "--epochs", "1", "--batch-size", "6"]) == 0
    assert json.loads((run / "fixres" / "fixres.json").read_text())["weights"] == "model"  # no EMA in this preset
    out = tmp_path / "export"
    assert cli_main(["export", str(run), "--raw", "--out", str(out), "--repo", "recipe-org/ft.raw_digits"]) == 0
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == REPO  # the Hub's link to the model it was fine-tuned from
    assert "## Fine-tuned from" in card and "ResNet strikes back, procedure A1" in card
    assert "80.846" not in card and "71.504" not in card  # no number of the source model
    monkeypatch.setenv("HF_TOKEN", hub_server.state.token)
    assert cli_main(["publish", str(out), "--repo", "recipe-org/ft.raw_digits"]) == 0
    assert (
        yaml.safe_load(Path(hf_hub_download("recipe-org/ft.raw_digits", "README.md")).read_text().split("---")[1])[
            "base_model"
        ]
        == REPO
    )
    capsys.readouterr()
    # a model instead of a run: evaluate at its train and test size, FixRes on the image folder
    ten = DigitsDataset.export_folder(tmp_path / "ten", size=16, per_class=2, splits=("train", "val"))
    assert cli_main(["evaluate", f"local-dir:{out}", "--data", str(data), "--workers", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[1:4] == ["16", "0.875", "train"] and lines[2].split()[3] == "test"
    assert cli_main(["evaluate", f"local-dir:{out}", "--data", str(ten), "--workers", "0"]) == 1  # 3 vs 10 classes
    assert "3 classes" in capsys.readouterr().err
    fix_out = tmp_path / "fixres-model"
    args = ["fixres", str(out), "--data", str(data), "--sizes", "16", "--epochs", "1", "--out", str(fix_out)]
    args += ["--set", "data.num_workers=0"]
    assert cli_main(args) == 0
    assert (fix_out / "model.safetensors").is_file() and (fix_out / "fixres.json").is_file()
    assert cli_main(["fixres", str(out)]) == 2 and "--data" in capsys.readouterr().err


def test_eval_pipeline_from_a_pretrained_model_uses_the_weights_test_size_and_crop() -> None:
    import numpy as np
    from sklearn.datasets import load_sample_images

    from timm_recipes.data.pipelines import eval_pipeline

    model = timm.create_model("recipe_resnet50")  # default tag tv2_in1k: train 176, test 224 with crop 0.965
    cfg = get_pretrained_cfg("resnet50.tv2_in1k")
    assert model.pretrained_cfg["test_input_size"] == cfg.test_input_size == (3, 224, 224)
    image = np.ascontiguousarray(load_sample_images().images[0])
    ours = eval_pipeline.from_model(model)(image=image)["image"]
    reference = eval_pipeline(
        input_size=224, crop_pct=cfg.test_crop_pct, interpolation=cfg.interpolation, mean=cfg.mean, std=cfg.std
    )(image=image)["image"]
    assert tuple(ours.shape) == (3, 224, 224) and torch.equal(torch.as_tensor(ours), torch.as_tensor(reference))
    at_train = eval_pipeline.from_model(model, use_test_size=False)(image=image)["image"]
    assert tuple(at_train.shape) == (3, 176, 176)

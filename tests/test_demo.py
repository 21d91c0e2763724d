"""The built-in main job, `timm-recipes demo`, run in-process on a shortened recipe and published to the test Hub.

One run (digits at 8 px, one training epoch, one FixRes epoch) goes through every step: train → FixRes → export of
the EMA and FixRes weights → load-back through ``timm.create_model("local-dir:...")`` → model cards copied to a cards
folder → ``--push`` to the suite's Hub server on 127.0.0.1. The tests check the printed report against the run's own
files (``final.json``, ``fixres/fixres.json``), the exported folders and cards, the published repositories, that a
reloaded export whose logits differ from the trained model is refused, and that ``--push`` without a valid token
fails before any training.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from timm_recipes.cli import main as cli_main
from timm_recipes.cli.demo import CARD_FILES, Exported, cards_step, demo_recipe, load_back_step
from timm_recipes.hub import ExportError
from timm_recipes.train.trainer import load_checkpoint_model

ORG = "recipe-org"
SIZE = 8  # the digits' native resolution: the shortest run that still exercises every step
SHORT = [
    "schedule.epochs=1",
    "schedule.warmup_epochs=0",
    f"data.image_size={SIZE}",
    "data.batch_size=128",
    f"aug.train_size={SIZE}",
    f"aug.test_size={SIZE}",
    f"aug.scale_range=[{SIZE}, {SIZE + 2}]",
    "fixres.epochs=1",
    f"fixres.test_sizes=[{SIZE}, {SIZE + 2}]",
    "fixres.test_crop_pcts=[1.0]",
    "run.progress=false",
]


def _demo(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["demo", *args, *(a for item in SHORT for a in ("--set", item))])
    return code, out.getvalue(), err.getvalue()


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def demo(hub_server, tmp_path_factory) -> dict:
    """One shortened demo with ``--cards`` and ``--push``; the token is the test Hub's (from HF_TOKEN)."""
    hub_server.state.reset()
    tmp = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", hub_server.state.token)
        code, stdout, stderr = _demo("--output", str(tmp / "run"), "--cards", str(tmp / "cards"), "--push", ORG)
    assert code == 0, stderr[-3000:]
    run = tmp / "run"
    return {
        "stdout": stdout,
        "run": run,
        "cards": tmp / "cards",
        "final": json.loads((run / "final.json").read_text()),
        "fixres": json.loads((run / "fixres" / "fixres.json").read_text()),
    }


def _names(demo: dict) -> dict[str, str]:
    test_size = demo["fixres"]["test_input_size"][-1]
    return {"ema": f"recipe_resnet18.ema_digits{SIZE}", "fixres": f"recipe_resnet18.fixres{test_size}_digits"}


def _exports(demo: dict) -> dict[str, Path]:
    return {variant: demo["run"] / "export" / name for variant, name in _names(demo).items()}


def test_demo_recipe_turns_fixres_on_and_records_its_candidates():
    recipe = demo_recipe([])
    assert recipe.fixres.enabled and recipe.fixres.test_sizes == (32, 36, 40, 44, 48)  # 1 … 1.5 × the train size
    assert demo_recipe(["aug.train_size=16"]).fixres.test_sizes == (16, 18, 20, 22, 24)
    assert not demo_recipe(["fixres.enabled=false"]).fixres.enabled


def test_report_prints_the_accuracies_the_run_measured(demo):
    final, fixres, out = demo["final"], demo["fixres"], demo["stdout"]
    report = out[out.index("== timm-recipes demo: test top-1") :]
    table = re.findall(r"^  (raw|EMA|FixRes)\s+(.+?)\s+(\d+\.\d\d) %$", report, flags=re.M)
    rows = {(w, where): float(v) for w, where, v in table}
    chosen = f"{fixres['test_input_size'][-1]} px crop {fixres['test_crop_pct']:g}"
    acc = fixres["accuracy"]
    assert rows == {
        ("raw", f"{SIZE} px crop 0.9 (train size)"): round(final["test_top1"], 2),
        ("EMA", f"{SIZE} px crop 0.9 (train size)"): round(final["ema_test_top1"], 2),
        ("EMA", f"{chosen} (FixRes test size, before)"): round(acc["test_size_before"], 2),
        ("FixRes", f"{chosen} (after fine-tuning)"): round(acc["test_size_after"], 2),
    }
    assert acc["train_size"] == pytest.approx(final["ema_test_top1"], abs=1e-9)  # same weights, size and crop
    assert re.search(r"^wall time: training [\d.]+ min, FixRes [\d.]+ min, .*total [\d.]+ min$", report, flags=re.M)
    for path in re.findall(r"card (\S+README\.md)$", report, flags=re.M):
        assert Path(path).is_file()


def test_reloaded_exports_reproduce_the_measured_accuracy(demo):
    """Each export, reloaded with its own config's test pipeline, gets the card's top-1 (within one image)."""
    out, final, fixres, names = demo["stdout"], demo["final"], demo["fixres"], _names(demo)
    reloaded = {
        m[0]: float(m[1]) for m in re.findall(r"^  (\S+)\s+\S+\n\s+reloaded test top-1 ([\d.]+) %", out, flags=re.M)
    }
    one_image = 100.0 / 359  # the digits' test split
    assert set(reloaded) == set(names.values())
    assert abs(reloaded[names["ema"]] - final["ema_test_top1"]) <= one_image + 0.01
    assert abs(reloaded[names["fixres"]] - fixres["accuracy"]["test_size_after"]) <= one_image + 0.01


def test_exports_are_timm_folders_with_parsing_cards(demo):
    final, fixres = demo["final"], demo["fixres"]
    measured = {v for k, v in final.items() if k != "epoch"} | set(fixres["accuracy"].values())
    for variant, folder in _exports(demo).items():
        assert sorted(p.name for p in folder.iterdir()) == sorted(["model.safetensors", *CARD_FILES])
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == "resnet18"  # plain timm loads it
        assert config["timm_recipes"]["variant"] == variant
        card = ModelCard.load(folder / "README.md")
        assert card.data.library_name == "timm" and card.data.model_name == folder.name
        values = [r.metric_value for r in card.data.eval_results]
        assert values and set(values) <= measured  # nothing that the run did not measure
        assert all(
            r.metric_args["num_samples"] == {"test": 359, "val": 179}[r.dataset_split] for r in card.data.eval_results
        )
        for section in ("## Training recipe", "## Train and test resolution", "## Results", "## Usage", "## Citation"):
            assert section in card.text
        assert f"{ORG}/{folder.name}" in card.text  # the usage snippets name the repository it was pushed to
    fixres_cfg = json.loads((_exports(demo)["fixres"] / "config.json").read_text())["pretrained_cfg"]
    assert fixres_cfg["test_input_size"] == fixres["test_input_size"]
    assert fixres_cfg["test_crop_pct"] == fixres["test_crop_pct"]


def test_cards_folder_holds_the_cards_without_weights(demo):
    cards = demo["cards"]
    assert sorted(p.name for p in cards.iterdir()) == sorted(["README.md", *_names(demo).values()])
    for folder in _exports(demo).values():
        copy = cards / folder.name
        assert sorted(p.name for p in copy.iterdir()) == sorted(CARD_FILES)
        for name in CARD_FILES:
            assert (copy / name).read_bytes() == (folder / name).read_bytes()
        assert f"]({folder.name}/README.md)" in (cards / "README.md").read_text()


def test_regenerating_cards_replaces_stale_ones_only(demo, tmp_path):
    folder = tmp_path / "cards"
    stale, notes = folder / "recipe_resnet18.fixres99_digits", folder / "notes"
    for sub in (stale, notes):
        sub.mkdir(parents=True)
    (stale / "README.md").write_text("old card")
    (stale / "config.json").write_text(json.dumps({"architecture": "resnet18", "timm_recipes": {"tag": "x"}}))
    (notes / "config.json").write_text(json.dumps({"timm_recipes": {}}))
    (notes / "todo.txt").write_text("not a card")  # a file no card folder holds: never removed
    exported = [
        Exported(name, v, torch.nn.Identity(), demo["run"] / "export" / name, None) for v, name in _names(demo).items()
    ]
    written = cards_step(exported, folder)
    assert not stale.exists() and (notes / "todo.txt").read_text() == "not a card"
    assert written == [folder / name / "README.md" for name in _names(demo).values()]
    assert cards_step(exported, folder) == written  # idempotent


def test_push_published_both_variants_in_one_commit_each(demo, hub_server):
    for folder in _exports(demo).values():
        repo = hub_server.state.repos[f"{ORG}/{folder.name}"]
        head = repo.resolve("main")
        assert set(head.files) >= {"model.safetensors", *CARD_FILES}
        assert head.files["model.safetensors"].lfs  # the weights went through git-LFS
        assert head.files["model.safetensors"].data == (folder / "model.safetensors").read_bytes()
        assert head.files["README.md"].data == (folder / "README.md").read_bytes()
        assert [c.message for c in repo.commits.values()] == ["initial commit", f"Upload {folder.name}"]
        assert f"(timm.create_model('hf-hub:{ORG}/{folder.name}', pretrained=True))" in demo["stdout"]


def test_load_back_refuses_an_export_whose_logits_differ(demo):
    recipe = demo_recipe(SHORT)
    folders = _exports(demo)
    ema, _, _ = load_checkpoint_model(demo["run"], which="ema")
    name, fixres_name = folders["ema"].name, folders["fixres"].name
    assert set(load_back_step([Exported(name, "ema", ema, folders["ema"], None)], recipe)) == {name}
    changed = copy.deepcopy(ema)
    with torch.no_grad():
        changed.fc.bias[0] += 1e-3  # a trained model that is no longer the exported one
    with pytest.raises(ExportError, match="other logits"):
        load_back_step([Exported(name, "ema", changed, folders["ema"], None)], recipe)
    with pytest.raises(ExportError, match=re.escape(fixres_name)):  # the EMA weights are not the FixRes export's
        load_back_step([Exported(fixres_name, "fixres", ema, folders["fixres"], None)], recipe)


@pytest.mark.parametrize("token", [None, "hf_not_a_valid_token"])
def test_push_without_a_valid_token_fails_before_training(hub_server, tmp_path, monkeypatch, token):
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    code, _, stderr = _demo("--output", str(tmp_path / "run"), "--push", ORG)
    assert code == 1  # a runtime failure (the token), found before training
    assert ("HF_TOKEN" in stderr) if token is None else ("HTTP 401" in stderr and token not in stderr)
    assert not (tmp_path / "run").exists()


def test_push_rejects_a_malformed_target(tmp_path):
    code, _, stderr = _demo("--output", str(tmp_path / "run"), "--push", "a/b/c")
    assert code == 2 and "OWNER or OWNER/FAMILY" in stderr
    assert not (tmp_path / "run").exists()

"""The whole pipeline end to end: train the demo → EMA → FixRes → export → publish → load in fresh processes.

Scaled down to stay quick (digits at 16 px, one epoch, one FixRes epoch): the point is that the weights that come
back from the Hub give exactly the logits of the weights that were trained, in processes that share nothing with
this one but the test Hub on 127.0.0.1:

* a process with the default, Xet-enabled client (the test Hub answers "regular", so files go inline in the commit)
  publishes the FixRes weights, then loads both variants, as ``recipe_resnet18`` and through ``hf-hub:``;
* a process that imports timm only (no ``timm_recipes``) loads the EMA weights as timm's ``resnet18``;
* a process with ``HF_HUB_OFFLINE=1`` loads both from the cache of the first one, without a single request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits

from timm_recipes.cli import main as cli_main
from timm_recipes.config import apply_overrides
from timm_recipes.hub import publish
from timm_recipes.recipes import get_preset

ORG = "recipe-org"
SIZE = 16
TESTS = Path(__file__).parent


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def hub(hub_server):
    hub_server.state.reset()
    return hub_server


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The demo recipe for one epoch at 16 px: raw + EMA checkpoints, final.json, then FixRes (fixres/)."""
    from timm_recipes.train.fixres import run_fixres
    from timm_recipes.train.trainer import fit

    recipe = apply_overrides(
        get_preset("demo"),
        {
            "schedule.epochs": 1,
            "schedule.warmup_epochs": 0,
            "data.image_size": SIZE,
            "data.batch_size": 128,
            "aug.train_size": SIZE,
            "aug.test_size": SIZE,
            "aug.scale_range": [SIZE, SIZE + 4],
            "fixres.epochs": 1,
            "fixres.test_sizes": [SIZE, SIZE + 4],
            "fixres.test_crop_pcts": [1.0],
            "run.progress": False,
        },
    )
    result = fit(recipe, output_dir=tmp_path_factory.mktemp("runs") / "demo")
    run_fixres(result.run_dir)
    return result.run_dir


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    images = torch.tensor(load_digits().images[:8], dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (images - mean[:, None, None]) / std[:, None, None]


@pytest.fixture(scope="module")
def expected(run_dir, batch, tmp_path_factory) -> Path:
    """Logits of the trained EMA and FixRes weights, computed here from the run's own files."""
    from timm_recipes.train.trainer import load_checkpoint_model

    ema, _, _ = load_checkpoint_model(run_dir, which="ema")
    fixres, _, _ = load_checkpoint_model(run_dir, which="ema")
    fixres.load_state_dict(load_file(str(run_dir / "fixres" / "model.safetensors")))
    with torch.no_grad():
        logits = {"batch": batch, "ema": ema.eval()(batch), "fixres": fixres.eval()(batch)}
    assert not torch.equal(logits["ema"], logits["fixres"])  # FixRes changed the weights
    path = tmp_path_factory.mktemp("expected") / "logits.safetensors"
    save_file(logits, str(path))
    return path


@pytest.fixture(scope="module")
def repos(run_dir) -> dict[str, str]:
    fixres = json.loads((run_dir / "fixres" / "fixres.json").read_text())
    return {
        "ema": f"{ORG}/recipe_resnet18.ema_digits{SIZE}",
        "fixres": f"{ORG}/recipe_resnet18.fixres{fixres['test_input_size'][-1]}_digits",
    }


@pytest.fixture(scope="module")
def exports(run_dir, repos, tmp_path_factory) -> dict[str, Path]:
    """Both variants exported with the command line, as a user would."""
    out = tmp_path_factory.mktemp("exports")
    for variant, repo_id in repos.items():
        assert cli_main(["export", str(run_dir), f"--{variant}", "--out", str(out / variant), "--repo", repo_id]) == 0
    return {variant: out / variant for variant in repos}


def test_exports_carry_the_measured_results(run_dir, exports, repos):
    final = json.loads((run_dir / "final.json").read_text())
    fixres = json.loads((run_dir / "fixres" / "fixres.json").read_text())
    measured = {final[k] for k in final if k != "epoch" and final[k] is not None} | set(fixres["accuracy"].values())
    ema = ModelCard.load(exports["ema"] / "README.md").data
    assert ema.model_name == repos["ema"].split("/")[1]
    args = [
        (r.dataset_split, r.metric_config, r.metric_args["img_size"], r.metric_args["crop_pct"])
        for r in ema.eval_results
    ]
    results = dict(zip(args, [r.metric_value for r in ema.eval_results], strict=True))
    crop = json.loads((exports["ema"] / "config.json").read_text())["pretrained_cfg"]["test_crop_pct"]
    for split in ("val", "test"):  # the run's final evaluation of the EMA weights, at the recipe's test size and crop
        for metric in ("top1", "top5"):
            assert results[(split, metric, SIZE, crop)] == final[f"ema_{split}_{metric}"]
    assert set(results.values()) <= measured  # and nothing that was not measured
    card = ModelCard.load(exports["fixres"] / "README.md")
    assert [r.metric_value for r in card.data.eval_results] == [fixres["accuracy"]["test_size_after"]]
    config = json.loads((exports["fixres"] / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["pretrained_cfg"]["test_input_size"] == fixres["test_input_size"]
    assert config["pretrained_cfg"]["input_size"] == [3, SIZE, SIZE]


def _child(*code: str, **env_changes: str | None) -> dict:
    """Run the ``code`` parts in a fresh interpreter behind the network guard; it prints one JSON line at the end."""
    prelude = f"""
        import json, os, sys
        sys.path.insert(0, {str(TESTS)!r})
        import hubserver
        violations = hubserver.install_network_guard()
        import torch
        from huggingface_hub import constants
        assert constants.ENDPOINT == os.environ["HF_ENDPOINT"], constants.ENDPOINT
        torch.set_num_threads(1)
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    script = "".join(textwrap.dedent(part) for part in (prelude, *code))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_BOTH = """
    from safetensors.torch import load_file, save_file
    import timm
    import timm_recipes
    expected = load_file(os.environ["EXPECTED"])
    overlay = dict(hf_hub_id=os.environ["EMA_REPO"], num_classes=10)
    ema = timm.create_model("recipe_resnet18", pretrained=True, num_classes=10, pretrained_cfg_overlay=overlay)
    fixres = timm.create_model("hf-hub:" + os.environ["FIXRES_REPO"], pretrained=True)
    with torch.no_grad():
        logits = {"ema": ema.eval()(expected["batch"]), "fixres": fixres.eval()(expected["batch"])}
    save_file(logits, os.environ["OUT"])
    print(json.dumps({
        "types": [type(ema).__name__, type(fixres).__name__],
        "fixres_test_size": list(fixres.pretrained_cfg["test_input_size"]),
        "violations": violations,
    }))
"""


@pytest.fixture(scope="module")
def xet_child(hub, exports, repos, expected, tmp_path_factory) -> dict:
    """A fresh process with the default Xet-enabled client publishes the FixRes weights inline, then loads both."""
    publish(exports["ema"], repos["ema"], token=hub.state.token)  # from this process, through git-LFS
    hub.state.upload_mode = "regular"
    home, out = tmp_path_factory.mktemp("hf-home-xet"), tmp_path_factory.mktemp("out") / "xet.safetensors"
    code = f"from timm_recipes.hub import publish\npublish({str(exports['fixres'])!r}, os.environ['FIXRES_REPO'])\n"
    env = dict(HF_HOME=str(home), HF_HUB_DISABLE_XET=None, HF_TOKEN=hub.state.token, EXPECTED=str(expected))
    env |= dict(EMA_REPO=repos["ema"], FIXRES_REPO=repos["fixres"], OUT=str(out))
    try:
        report = _child(code, LOAD_BOTH, **env)
    finally:
        hub.state.upload_mode = "lfs"
    return {**report, "home": home, "logits": load_file(str(out))}


def test_fresh_process_with_xet_client_publishes_inline_and_loads(hub, xet_child, exports, repos, expected, run_dir):
    assert xet_child["violations"] == []
    head = hub.state.repos[repos["fixres"]].resolve("main").files
    assert not head["model.safetensors"].lfs  # sent inline, base64 in the commit
    assert head["model.safetensors"].data == (exports["fixres"] / "model.safetensors").read_bytes()
    assert hub.state.repos[repos["ema"]].resolve("main").files["model.safetensors"].lfs
    assert not any("xet" in r.path for r in hub.state.requests)
    assert xet_child["types"] == ["RecipeResNet", "ResNet"]
    fixres = json.loads((run_dir / "fixres" / "fixres.json").read_text())
    assert xet_child["fixres_test_size"] == fixres["test_input_size"]
    reference = load_file(str(expected))
    assert torch.equal(xet_child["logits"]["ema"], reference["ema"])
    assert torch.equal(xet_child["logits"]["fixres"], reference["fixres"])


def test_plain_timm_loads_the_weights_without_the_plugin(hub, xet_child, repos, expected, tmp_path):
    code = """
        from safetensors.torch import load_file, save_file
        import timm
        expected = load_file(os.environ["EXPECTED"])
        model = timm.create_model("hf-hub:" + os.environ["EMA_REPO"], pretrained=True).eval()
        with torch.no_grad():
            save_file({"ema": model(expected["batch"])}, os.environ["OUT"])
        config = timm.data.resolve_model_data_config(model, use_test_size=True)
        print(json.dumps({"plugin": "timm_recipes" in sys.modules, "module": type(model).__module__,
                          "input_size": list(config["input_size"]), "violations": violations}))
    """
    out = tmp_path / "plain.safetensors"
    report = _child(code, HF_HOME=str(tmp_path / "home"), EXPECTED=str(expected), EMA_REPO=repos["ema"], OUT=str(out))
    assert report == {"plugin": False, "module": "timm.models.resnet", "input_size": [3, SIZE, SIZE], "violations": []}
    assert torch.equal(load_file(str(out))["ema"], load_file(str(expected))["ema"])


def test_offline_mode_loads_from_the_cache(hub, xet_child, repos, expected, tmp_path):
    before = len(hub.state.requests)
    out = tmp_path / "offline.safetensors"
    env = dict(HF_HOME=str(xet_child["home"]), HF_HUB_OFFLINE="1", EXPECTED=str(expected), OUT=str(out))
    report = _child(LOAD_BOTH, **env, EMA_REPO=repos["ema"], FIXRES_REPO=repos["fixres"])
    assert len(hub.state.requests) == before  # not one request
    assert report["violations"] == [] and report["types"] == ["RecipeResNet", "ResNet"]
    reference, logits = load_file(str(expected)), load_file(str(out))
    assert torch.equal(logits["ema"], reference["ema"]) and torch.equal(logits["fixres"], reference["fixres"])

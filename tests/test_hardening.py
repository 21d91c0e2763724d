"""The user's path under attack: run folders and checkpoints, one-line CLI errors, hostile inputs, progress.

One test per kind of fault (issue "Hardening the user's path"); each one fails on the code before the fix. They are
unit-level on purpose: checkpoints are written with ``save_checkpoint`` (no training), the CLI is called in-process
(its argument errors never reach torch), and the one subprocess checks what ``--help`` imports.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch

from timm_recipes.cli import main
from timm_recipes.config import apply_overrides, recipe_from_dict, recipe_to_dict, save_recipe
from timm_recipes.data.datasets import ImageFolderDataset
from timm_recipes.data.mixing import MixupCutmix, MixupCutmixCollator
from timm_recipes.data.pipelines import eval_pipeline, multiscale_crop_pipeline
from timm_recipes.recipes import get_preset, load_recipe
from timm_recipes.train.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    describe_checkpoint,
    open_checkpoint,
    save_checkpoint,
)
from timm_recipes.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

SRC = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers
def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _tiny_recipe(**overrides):
    return apply_overrides(get_preset("demo"), {"model.name": "test_resnet", "model.drop_path_rate": None, **overrides})


def _save(ckpts: Path, model: torch.nn.Module, recipe, epoch: int, tags=("last",), best_epoch: int | None = None):
    return save_checkpoint(
        ckpts,
        model_state=model.state_dict(),
        model_name=recipe.model.name,
        num_classes=recipe.model.num_classes,
        epoch=epoch,
        step=10 * epoch,
        training_state={"loop": {"epoch": epoch, "step": 10 * epoch}, "optimizer": {"lr": torch.ones(2)}},
        recipe=recipe_to_dict(recipe),
        ema_state=model.state_dict(),
        metrics={"epoch": epoch, "best_epoch": best_epoch if best_epoch is not None else epoch},
        tags=tags,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, torch.nn.Module, object]:
    """A run folder with two checkpoints (epoch 1 = best, epoch 2 = last), written without training."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    recipe = _tiny_recipe()
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10)
    _save(run / "checkpoints", model, recipe, 1, tags=("last", "best"))
    _save(run / "checkpoints", model, recipe, 2, tags=("last",), best_epoch=1)
    (run / "metrics.jsonl").write_text("")
    return run, model, recipe


def _rewrite_state(folder: Path, tree: dict) -> None:
    """Change ``state.json`` and its manifest entry consistently: damage that the digests cannot see."""
    data = json.dumps(tree).encode()
    (folder / "state.json").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib

    manifest["files"]["state.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------------------ checkpoints
def test_tag_pointing_outside_its_checkpoints_folder_is_refused(tiny_run, tmp_path) -> None:
    _run, model, recipe = tiny_run
    other = tmp_path / "other"
    victim = _save(other / "checkpoints", model, recipe, 5)  # a complete checkpoint of another run
    for pointer in (f"../../{other.name}/checkpoints/{victim.name}", str(victim), "..", "ckpt-../x"):
        copy = tmp_path / f"copy-{abs(hash(pointer))}"
        (copy / "checkpoints").mkdir(parents=True)
        (copy / "checkpoints" / "last.json").write_text(json.dumps({"checkpoint": pointer}))
        with pytest.raises(CheckpointError, match=r"last\.json names .* not a checkpoint folder inside"):
            open_checkpoint(copy)
    # and the CLI: one line, exit code 1, the pointer named
    code, _, err = _cli(["evaluate", str(copy), "--checkpoint", "last"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "last.json names" in err and "Traceback" not in err


def test_damaged_state_is_reported_in_one_line_naming_checkpoint_and_fault(tiny_run, tmp_path) -> None:
    run, _, _ = tiny_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    last = open_checkpoint(copy).path
    tree = json.loads((last / "state.json").read_text())
    _rewrite_state(last, {k: v for k, v in tree.items() if k != "loop"})  # a section missing
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(copy).training_state(required=("loop", "optimizer"))
    message = str(err.value)
    assert f"checkpoint {last} is damaged" in message and "lacks the section(s) loop" in message
    assert "other checkpoints of this run" in message and "epoch 1, best" in message  # the way out
    _rewrite_state(last, {**tree, "optimizer": {"lr": {"__tensor__": "t99"}}})  # a tensor that is not stored
    with pytest.raises(CheckpointError, match=r"tensor 't99' referenced by the state is not in state\.safetensors"):
        open_checkpoint(copy).training_state()
    (last / "recipe.yaml").write_text("model: [unclosed\n")  # a recipe that does not parse
    with pytest.raises(CheckpointError, match=r"recipe\.yaml cannot be read"):
        open_checkpoint(copy, verify=False).recipe()


def test_a_kill_between_the_two_tag_writes_keeps_best_consistent(tmp_path, monkeypatch) -> None:
    recipe = _tiny_recipe()
    model = timm.create_model("test_resnet", num_classes=10)
    ckpts = tmp_path / "checkpoints"
    _save(ckpts, model, recipe, 1, tags=("last", "best"))
    import timm_recipes.train.checkpoint as ck

    real, calls = ck.atomic_write_bytes, []

    def killed_after_first_tag(path, data):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two tag writes
        return real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", killed_after_first_tag)
    with pytest.raises(KeyboardInterrupt):
        _save(ckpts, model, recipe, 2, tags=("last", "best"))
    monkeypatch.undo()
    assert open_checkpoint(ckpts, tag="best").epoch == 2  # best is never behind: it is written first
    assert open_checkpoint(ckpts, tag="last").epoch == 1  # last is behind: the resume retrains epoch 2
    # A run killed by an older version (last written first): the manifests say which one is the best.
    best_doc = json.loads((ckpts / "best.json").read_text())
    (ckpts / "last.json").write_text(json.dumps(best_doc))
    first = next(iter(ckpts.glob("ckpt-e0001-*")))
    (ckpts / "best.json").write_text(json.dumps({"checkpoint": first.name, "epoch": 1}))
    assert open_checkpoint(ckpts, tag="best").epoch == 2
    assert "epoch 2, chosen as best" in describe_checkpoint(ckpts, "best")
    from timm_recipes.train.checkpoint import repair_best_tag

    assert repair_best_tag(ckpts).name == json.loads((ckpts / "best.json").read_text())["checkpoint"]  # on disk
    assert repair_best_tag(ckpts) is None  # consistent now


# ------------------------------------------------------------------------------------------------ run folders
def test_output_folder_rules(tiny_run, tmp_path) -> None:
    from timm_recipes.train.trainer import _refuse_schedule_changes, clear_run, find_run_to_resume, fit

    run, _, recipe = tiny_run
    with pytest.raises(ValueError, match=r"already holds a run: pass resume=True .* overwrite=True"):
        fit(recipe, output_dir=run)
    # a bare resume continues the interrupted run, not the finished one
    base = tmp_path / "runs" / "demo"
    for folder, finished in ((base, True), (base.with_name("demo-2"), False), (base.with_name("demo-3"), True)):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.json").write_text("{}")
        if finished:
            (folder / "final.json").write_text("{}")
    assert find_run_to_resume(base) == base.with_name("demo-2")
    # extending a finished run's schedule is refused, saying why and what to do
    with pytest.raises(ValueError, match=r"schedule\.epochs 30 -> 8.*Start a new run"):
        _refuse_schedule_changes(open_checkpoint(run), apply_overrides(recipe, {"schedule.epochs": 8}))
    _refuse_schedule_changes(open_checkpoint(run), apply_overrides(recipe, {"run.log_interval": 3}))  # allowed
    # --overwrite removes the run's files, and only those
    (base / "notes.txt").write_text("mine")
    clear_run(base)
    assert sorted(p.name for p in base.iterdir()) == ["notes.txt"]
    # an unknown placeholder in run.output_dir is a recipe error, not a KeyError at run time
    with pytest.raises(ValueError, match=r"output_dir: may use only the placeholder \{name\}"):
        apply_overrides(recipe, {"run.output_dir": "runs/{nmae}"})


def test_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = save_recipe(get_preset("demo"), tmp_path / "r.yaml")
        from timm_recipes.train.search import _write_atomic

        _write_atomic(tmp_path / "t.md", "x")
        assert (path.stat().st_mode & 0o777, (tmp_path / "t.md").stat().st_mode & 0o777) == (0o644, 0o644)
    finally:
        os.umask(old)


def test_metrics_keep_every_readable_record(tmp_path, caplog) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"epoch": 1, "val_top1": 10.0}), "garbage{", json.dumps({"epoch": 2}), '"a string"']
    path.write_text("\n".join([*lines, json.dumps({"epoch": 3})]) + "\n")
    with caplog.at_level(logging.WARNING, logger="timm_recipes"):
        records = read_metrics(path)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert "skipped 2 unreadable line(s) (line 2, 4)" in caplog.text and str(path) in caplog.text


# ------------------------------------------------------------------------------------------------ the CLI
BAD_FLAGS = [
    ["train", "--recipe", "demo", "--seeds", "1,x"],
    ["train", "--recipe", "no-such-preset"],
    ["train"],
    ["train", "--recipe", "demo", "--set", "data.batch_size=0"],
    ["train", "--recipe", "demo", "--resume", "--overwrite"],
    ["evaluate", "run", "--batch-size", "0"],
    ["evaluate", "run", "--checkpoint", "middle"],
    ["fixres", "run", "--sizes", "0"],
    ["fixres", "run", "--crop-pcts", "1.5"],
    ["fixres", "run", "--lr", "nan"],
    ["export", "run"],
    ["export", "run", "--output", "x", "--ema", "--raw"],
    ["publish", "folder", "--repo", "a/b", "--timeout", "0"],
    ["publish", "folder", "--repo", "no-slash"],
    ["preview", "--size", "0"],
    ["preview", "-n", "-3"],
    ["search", "demo", "--trials", "0"],
    ["search", "demo", "--lr-range", "-2", "-5"],
    ["search", "demo", "--wd-range", "inf", "1"],
    ["demo", "--push", "a/b/c"],
    ["no-such-command"],
]


@pytest.mark.parametrize("argv", BAD_FLAGS, ids=[" ".join(a) for a in BAD_FLAGS])
def test_every_sub_command_rejects_bad_flags_with_exit_2_and_one_line(argv, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and err.startswith("timm-recipes")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_runtime_failures_exit_1_with_one_line_and_the_trace_on_request(tmp_path, monkeypatch) -> None:
    code, _, err = _cli(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "x")])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "missing" in err and "TIMM_RECIPES_TRACEBACK" in err
    monkeypatch.setenv("TIMM_RECIPES_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError):
        main(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "x")])


def test_help_and_argument_errors_do_not_import_torch_or_timm() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['timm-recipes']\n"
        "from timm_recipes.cli import main\n"
        "codes = [main(['--help']), main(['train', '--help']), main(['evaluate', 'x', '--batch-size', '0'])]\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'albumentations', 'cv2') if m in sys.modules)\n"
        "print('RESULT', codes, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "RESULT [0, 0, 2] []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_old_flag_spellings_still_work_but_are_hidden() -> None:
    from timm_recipes.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["fixres", "run", "--out", "o", "--tag", "last"])
    assert (args.output, args.tag) == ("o", "last")
    args = parser.parse_args(["export", "run", "--out", "o", "--tag", "ema_x", "--checkpoint", "last"])
    assert (str(args.output), args.tag, args.checkpoint) == ("o", "ema_x", "last")
    assert parser.parse_args(["search", "demo", "--out", "o"]).output == "o"
    assert parser.parse_args(["evaluate", "r", "--tag", "last"]).tag == "last"
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("fixres", "search", "export", "preview"):
        assert "--out " not in sub[name].format_help() and "--output" in sub[name].format_help()


def test_print_recipe_shows_the_resolved_yaml_without_training(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _cli(["train", "--recipe", "demo", "--set", "optim.lr=0.2", "--print-recipe"])
    import yaml

    assert code == 0 and list(tmp_path.iterdir()) == []
    assert recipe_to_dict(recipe_from_dict(yaml.safe_load(out))) == recipe_to_dict(
        apply_overrides(get_preset("demo"), {"optim.lr": 0.2})
    )


def test_a_partial_recipe_names_its_base(tmp_path) -> None:
    (tmp_path / "short.yaml").write_text("base: demo\noptim: {lr: 0.2}\nschedule: {epochs: 3}\n")
    recipe = load_recipe(tmp_path / "short.yaml")
    demo = get_preset("demo")
    assert (recipe.name, recipe.optim.lr, recipe.schedule.epochs) == ("short", 0.2, 3)
    assert recipe.model == demo.model and recipe.optim.momentum == demo.optim.momentum
    (tmp_path / "bare.yaml").write_text("optim: {lr: 0.2}\n")
    with pytest.warns(UserWarning, match="has no 'base:' key .* built-in defaults"):
        load_recipe(tmp_path / "bare.yaml")


def test_search_follow_up_command_numbering_and_lr_range(tmp_path, capsys) -> None:
    from timm_recipes.cli import build_parser
    from timm_recipes.cli.search import default_lr_range
    from timm_recipes.train.search import run_search

    low, high = default_lr_range(get_preset("demo").optim.lr)
    assert low < math.log10(0.1) < high and high - low == 3  # the demo's own lr is inside, the lecture's width
    lines: list[str] = []
    result = run_search(
        get_preset("demo"), trials=3, out_dir=tmp_path / "s", trial_fn=lambda r: -abs(math.log10(r.optim.lr) + 3),
        lr_range=(low, high), progress=lines.append,
    )  # fmt: skip
    done = [line for line in lines if "->" in line]
    table = [row.split("|")[1].strip(" *") for row in result.markdown_path.read_text().splitlines()[2:]]
    assert sorted(int(line.split()[1]) for line in done) == sorted(int(t) for t in table) == [0, 1, 2]
    command = f"timm-recipes train --recipe {result.best_recipe_path}"
    assert build_parser().parse_args(command.split()[1:]).recipe == str(result.best_recipe_path)


# ------------------------------------------------------------------------------------------------ hostile inputs
def test_collator_targets_follow_the_mixers_rules() -> None:
    mixer = MixupCutmix(num_classes=4, mixup_alpha=0.2, cutmix_alpha=0.0)
    collate = MixupCutmixCollator(4, 0.2, 0.0, generator=torch.Generator().manual_seed(0))
    image = torch.zeros(3, 8, 8)
    with pytest.raises(TypeError, match="integer class indices"):
        mixer(torch.zeros(2, 3, 8, 8), torch.tensor([2.7, 1.0]))
    for bad in (2.7, "3", True, torch.tensor(1.5)):
        with pytest.raises(TypeError, match=r"batch\[1\] target must be an integer class index"):
            collate([(image, 0), (image, bad)])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, num_classes=4\)"):
        collate([(image, 0), (image, 4)])
    _, soft = collate([(image, np.int64(1)), (image, torch.tensor(3))])
    assert soft.shape == (2, 4)


def test_pipelines_refuse_non_finite_normalisation_and_name_a_bad_image() -> None:
    for build in (eval_pipeline, multiscale_crop_pipeline):
        with pytest.raises(ValueError, match="std must be 3 finite numbers"):
            build(std=(0.2, math.inf, 0.2))
        with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
            build(mean=(math.nan, 0.5, 0.5))
        pipeline = build()
        for bad in (None, [[0, 1, 2]]):
            with pytest.raises(TypeError, match="image must be a NumPy uint8 array"):
                pipeline(image=bad)


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.name == "nt", reason="symlinks and FIFOs")
def test_image_folders_never_hang_and_never_label_an_image_twice(tmp_path) -> None:
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    for cls in ("a", "b"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        (tmp_path / cls / f"{cls}.jpg").write_bytes(jpeg)
    (tmp_path / "a" / "up").symlink_to("..")  # the parent: the other class's images
    (tmp_path / "a" / "sub" / "loop").symlink_to("..")  # a loop inside the class
    (tmp_path / "a" / "same.jpg").symlink_to("a.jpg")  # the same file twice
    (tmp_path / "a" / "sub" / "link.jpg").symlink_to("../a.jpg")
    (tmp_path / "a" / "dangling.jpg").symlink_to("nowhere.jpg")
    os.mkfifo(tmp_path / "b" / "fifo.jpg")  # opening it would block forever
    data = ImageFolderDataset(tmp_path)
    assert [(Path(p).relative_to(tmp_path).as_posix(), t) for p, t in data.samples] == [("a/a.jpg", 0), ("b/b.jpg", 1)]
    assert sorted(Path(p).name for p in data.skipped_links) == ["dangling.jpg", "up"]
    (tmp_path / "c").symlink_to("b")  # a class folder that is another class
    with pytest.raises(ValueError, match=r"'b' and 'c' .* same folder"):
        ImageFolderDataset(tmp_path)


# ------------------------------------------------------------------------------------------------ progress
def test_fit_shows_progress_by_default_and_can_be_silenced(tmp_path, monkeypatch, capsys) -> None:
    from timm_recipes.data.datasets import DigitsDataset
    from timm_recipes.train.trainer import fit

    root = DigitsDataset.export_folder(tmp_path / "data", size=16, per_class=3)
    recipe = _tiny_recipe(**{
        "data.dataset": "folder", "data.root": str(root), "data.batch_size": 30, "data.num_workers": 0,
        "aug.train_size": 16, "aug.scale_range": [16, 18], "aug.test_size": 16, "aug.test_crop_pct": 1.0,
        "schedule.epochs": 1, "schedule.warmup_epochs": 0.0, "ema.enabled": False, "run.monitor": "raw",
    })  # fmt: skip
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a plain script: nobody configured logging
    logger = logging.getLogger("timm_recipes")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    fit(recipe, output_dir=tmp_path / "loud")
    err = capsys.readouterr().err
    assert "epoch   1 | train loss" in err and "run " in err
    fit(recipe, output_dir=tmp_path / "quiet", verbose=False)
    assert "epoch   1" not in capsys.readouterr().err


def test_ddp_lines_say_whose_numbers_they_are() -> None:
    from timm_recipes.train.trainer import _epoch_line

    record = {"epoch": 1, "train_loss": 1.0, "val_top1": 50.0, "lr": 0.1, "train_images_per_s": 100.0,
              "epoch_time_s": 1.0, "best_top1": 50.0, "best_epoch": 1}  # fmt: skip
    assert "(all 2 processes)" in _epoch_line(record, "raw", world_size=2)
    assert "processes" not in _epoch_line(record, "raw")


# ------------------------------------------------------------------------------------------------ EMA and writing
def test_auto_export_avoids_clearly_worse_ema_weights_and_fixres_checks_its_output_first(tiny_run, tmp_path) -> None:
    from timm_recipes.hub.runs import export_run
    from timm_recipes.train.fixres import run_fixres

    run, _, _ = tiny_run
    best = open_checkpoint(run, tag="best")
    atomic_write_bytes(run / "final.json", json.dumps({"epoch": best.epoch, "val_top1": 85.4,
                                                       "ema_val_top1": 70.8, "val_n": 60}).encode())  # fmt: skip
    with pytest.warns(UserWarning, match=r"exporting the raw weights .* 14\.6 points below"):
        folder = export_run(run, tmp_path / "export")
    assert json.loads((folder / "config.json").read_text())["timm_recipes"]["variant"] == "raw"
    assert "85.40 ± 4.56" in (folder / "README.md").read_text()  # the error bar of 60 images
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=r"fixres output folder .* is a file"):
        run_fixres(run, output_dir=blocker / "fixres")


def test_recipe_summary_resize_is_timms(tmp_path) -> None:
    from timm_recipes.config import recipe_summary

    demo = get_preset("demo")
    transform = timm.data.create_transform(
        input_size=demo.aug.test_size, crop_pct=demo.aug.test_crop_pct, interpolation="bilinear"
    )
    resize = transform.transforms[0].size
    row = dict(recipe_summary(demo))["train / test size"]
    assert f"(resize {resize})" in row and resize == 35


def test_no_warnings_leak_from_the_cli_as_tracebacks(tmp_path, monkeypatch) -> None:
    (tmp_path / "bare.yaml").write_text("optim: {lr: 0.2}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _out, err = _cli(["train", "--recipe", str(tmp_path / "bare.yaml"), "--print-recipe"])
    assert code == 0 and "timm-recipes train: warning: recipe" in err and "UserWarning" not in err

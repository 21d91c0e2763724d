"""Checkpoints: pickle-free round trip, atomic publication, corruption and mismatch errors, RNG capture."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from timm_recipes.train import checkpoint as ckpt_module
from timm_recipes.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_compatible,
    decode_state,
    encode_state,
    open_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _model(num_classes: int = 3, name: str = "test_resnet") -> nn.Module:
    torch.manual_seed(num_classes)
    return timm.create_model(name, num_classes=num_classes)


def _optimizer_with_state(model: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    return opt


def _save(root: Path, model: nn.Module, epoch: int, tags=("last",), **state) -> Path:
    return save_checkpoint(
        root,
        model_state=model.state_dict(),
        model_name="test_resnet",
        num_classes=model.num_classes,
        epoch=epoch,
        step=10 * epoch,
        training_state={"epoch": epoch, **state},
        recipe={"name": "unit", "aug": {"scale_range": (16, 20)}},
        ema_state=model.state_dict(),
        metrics={"val_top1": 50.0 + epoch},
        tags=tags,
    )


def test_state_codec_round_trips_what_training_needs() -> None:
    model = _model()
    opt = _optimizer_with_state(model)
    state = {
        "optimizer": opt.state_dict(),  # int keys, tensors, tuples (betas), None, bools
        "rng": capture_rng_state(),  # numpy array inside a tuple, python ints
        "misc": {"nan": float("nan"), "inf": float("-inf"), "tuple": (1, (2, "x")), "empty": []},
    }
    tree, tensors = encode_state(state)
    back = decode_state(json.loads(json.dumps(tree)), tensors)
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    for k, v in state["optimizer"]["state"].items():
        for name, t in v.items():
            assert torch.equal(back["optimizer"]["state"][k][name], t)
    assert back["misc"]["tuple"] == (1, (2, "x")) and back["misc"]["inf"] == float("-inf")
    assert np.isnan(back["misc"]["nan"])
    # The decoded optimizer state loads into a fresh optimizer.
    torch.optim.AdamW(model.parameters(), lr=1e-3).load_state_dict(back["optimizer"])


def test_state_codec_rejects_unknown_objects_by_location() -> None:
    with pytest.raises(TypeError, match=r"\.scheduler\.fn"):
        encode_state({"scheduler": {"fn": lambda x: x}})


def test_rng_states_restore_the_same_draws() -> None:
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_save_and_open_round_trip(tmp_path: Path) -> None:
    model = _model()
    opt = _optimizer_with_state(model)
    folder = _save(tmp_path, model, 1, tags=("last", "best"), optimizer=opt.state_dict())
    ck = open_checkpoint(tmp_path)  # the checkpoints/ folder, tag "last"
    assert ck.path == folder and ck.epoch == 1 and ck.step == 10 and ck.has_ema
    assert (ck.model_name, ck.num_classes) == ("test_resnet", 3)
    assert open_checkpoint(tmp_path, tag="best").path == folder
    assert open_checkpoint(tmp_path / "last.json").path == folder
    weights = ck.weights("model")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert ck.recipe() == {"name": "unit", "aug": {"scale_range": [16, 20]}}
    assert ck.training_state()["optimizer"]["state"][0]["exp_avg"].shape == next(model.parameters()).shape
    # Weights are plain safetensors with the architecture in the metadata.
    assert set(load_file(folder / "model.safetensors")) == set(model.state_dict())
    # No pickle anywhere in a checkpoint.
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors", "manifest.json", "model.safetensors", "recipe.yaml", "state.json", "state.safetensors",
    ]  # fmt: skip


def test_last_and_best_are_kept_and_others_pruned(tmp_path: Path) -> None:
    model = _model()
    best = _save(tmp_path, model, 1, tags=("last", "best"))
    _save(tmp_path, model, 2)
    last = _save(tmp_path, model, 3)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["best.json", "last.json", best.name, last.name])
    assert open_checkpoint(tmp_path, tag="best").epoch == 1
    assert open_checkpoint(tmp_path, tag="last").epoch == 3


def test_crash_before_the_tag_is_replaced_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    model = _model()
    _save(tmp_path, model, 1)
    real_replace = os.replace

    def crash_on_tag(src, dst):  # the new checkpoint folder is renamed, then the process "dies" on the tag
        if str(dst).endswith("last.json"):
            raise KeyboardInterrupt("simulated kill between the temp write and the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", crash_on_tag)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, model, 2)
    monkeypatch.setattr(ckpt_module.os, "replace", real_replace)
    ck = open_checkpoint(tmp_path)
    assert ck.epoch == 1
    assert not torch.equal(ck.weights()["fc.weight"], model.state_dict()["fc.weight"])
    # The half-published epoch-2 folder and a leftover temp folder are pruned by the next successful save.
    (tmp_path / ".tmp-ckpt-e0009-deadbeef").mkdir()
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3
    _save(tmp_path, model, 3)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [open_checkpoint(tmp_path).path.name]


def test_crash_while_writing_files_leaves_no_partial_checkpoint(tmp_path: Path, monkeypatch) -> None:
    model = _model()
    _save(tmp_path, model, 1)
    calls = {"n": 0}
    real_write = ckpt_module._write_synced

    def die_on_second_file(path, data):
        calls["n"] += 1
        if calls["n"] == 2:
            path.write_bytes(data[: len(data) // 2])  # a torn file
            raise KeyboardInterrupt("simulated kill while writing")
        real_write(path, data)

    monkeypatch.setattr(ckpt_module, "_write_synced", die_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, model, 2)
    assert open_checkpoint(tmp_path).epoch == 1


def test_corrupt_files_are_named(tmp_path: Path) -> None:
    model = _model()
    folder = _save(tmp_path, model, 1)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern, same size
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt: its SHA-256"):
        open_checkpoint(tmp_path)
    weights.write_bytes(bytes(data[:1000]))  # truncated
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt: 1000 bytes"):
        open_checkpoint(tmp_path)
    (tmp_path / "last.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"last\.json is corrupt"):
        open_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_checkpoint(tmp_path / "nowhere")


def test_checkpoint_of_another_architecture_or_class_count_is_refused(tmp_path: Path) -> None:
    _save(tmp_path, _model(3), 1)
    ck = open_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"test_resnet with num_classes=3.*test_resnet with num_classes=5") as err:
        check_compatible(ck, _model(5), model_name="test_resnet", num_classes=5)
    assert "model.safetensors" in str(err.value)
    other = _model(3, "test_efficientnet")
    with pytest.raises(CheckpointError, match=r"does not fit test_efficientnet.*(missing|unexpected) keys"):
        check_compatible(ck, other, model_name="test_efficientnet", num_classes=3)
    assert set(check_compatible(ck, _model(3), model_name="test_resnet", num_classes=3)) == set(_model(3).state_dict())

"""DDP with two processes on the gloo backend (CPU): torchrun training, exactness, a killed rank, bad input.

Tiny settings: the real digits written as an image folder (8 per class and split, 16 px; one validation image
removed so that the validation set has an odd size, 79), recipe_resnet18 with stochastic depth in "batch" mode
(drop_path_rate 0.3), 2 processes x batch 8, 2 epochs of 5 steps, deterministic augmentation (no flip, crop = whole
image, no Cutout, no Mixup/CutMix), one thread per process.

The two-process run is started by hand with the environment torchrun gives its workers; rank 1 is SIGKILLed as soon
as epoch 1 is checkpointed, rank 0 must stop with a clear error, and the run is then resumed with ``torchrun``. The
resumed run must equal the one-process reference below (so the resume is exact too).

What is equal, exactly (and why augmentation is off): the per-image augmentation and the Mixup/CutMix draws are
seeded by ``(seed, epoch, rank)``, so with random augmentation the two runs see the same images augmented differently.
The reference for a two-process run is one process with batch 8 and ``optim.accum_steps=2``: the sharded sampler gives
rank r the r-th block of 8 images of each global batch of 16, which are the images of micro-batch r of the accumulated
step, with the same BatchNorm batches and the same stochastic-depth draws (one per optimizer step). The gradients are
then the same numbers summed in the same order (DDP averages g0/2 + g1/2; accumulation adds the gradients of l0/2 and
l1/2, and halving is exact in floating point), so the parameters agree to the last bit on the CPU; the test allows
1e-6 for other summation orders. BatchNorm *running statistics* are not compared: DDP broadcasts rank 0's buffers
before every forward and the trainer averages them over the ranks after each epoch, while accumulation updates them
with both micro-batches in turn.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from timm_recipes.config import apply_overrides, save_recipe
from timm_recipes.data.datasets import DigitsDataset, create_loader
from timm_recipes.layers import stochastic_depth_modules
from timm_recipes.recipes import get_preset, load_recipe
from timm_recipes.train.checkpoint import open_checkpoint
from timm_recipes.train.distributed import (
    TIMEOUT_ENV,
    DepthDraws,
    Distributed,
    ShardedTrainSampler,
    StridedEvalSampler,
    dist_timeout,
    resolve_device,
)
from timm_recipes.train.engine import evaluate
from timm_recipes.train.trainer import build_eval_dataset, create_eval_loader, fit, load_checkpoint_model

EPOCHS = 2
_ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", TIMEOUT_ENV)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    return {**env, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "TIMM_RECIPES_TRACEBACK": "", **extra}


def _launch(args: list[str], port: int, **extra: str) -> list[subprocess.Popen]:
    """Two ranks started by hand, with the environment torchrun would give them."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "timm_recipes", "train", *args],
            env=_env(
                RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = DigitsDataset.export_folder(tmp_path_factory.mktemp("digits") / "data", size=16, per_class=8)
    sorted((root / "val" / "3").iterdir())[0].unlink()  # 79 validation images: an odd number
    return root


def _recipe(root: Path, **overrides):
    changes = {
        "data.dataset": "folder", "data.root": str(root), "data.batch_size": 8, "data.num_workers": 0,
        "aug.train_size": 16, "aug.scale_range": [16, 16], "aug.cutout_p": 0.0, "aug.test_size": 16,
        "aug.test_crop_pct": 1.0, "mix.mixup_alpha": 0.0, "mix.cutmix_alpha": 0.0,
        "model.drop_path_rate": 0.3, "model.stochastic_depth_mode": "batch",
        "schedule.epochs": EPOCHS, "schedule.warmup_epochs": 1.0, "ema.every_k": 1, "ema.decay": 0.9,
        "run.patience": None, "run.progress": False, "run.seed": 7,
    }  # fmt: skip
    return apply_overrides(get_preset("demo"), {**changes, **overrides})


@pytest.fixture(scope="module")
def recipe_file(data_root, tmp_path_factory) -> Path:
    return save_recipe(_recipe(data_root), tmp_path_factory.mktemp("recipe") / "tiny.yaml")


@dataclass(frozen=True)
class KilledAndResumed:
    run: Path
    error: str  # what rank 0 printed after rank 1 was killed
    returncode: int
    seconds_to_stop: float
    killed_after_epoch: int
    torchrun_stdout: str


@pytest.fixture(scope="module")
def ddp_run(recipe_file, tmp_path_factory) -> KilledAndResumed:
    """Two ranks started by hand; rank 1 is SIGKILLed once epoch 1 is checkpointed; then the run is resumed with
    ``torchrun --nproc_per_node=2 -m timm_recipes train --resume RUN``, as a user types it."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    ranks = _launch(["--recipe", str(recipe_file), "--output", str(run)], _free_port(), **{TIMEOUT_ENV: "30"})
    tag = run / "checkpoints" / "last.json"
    deadline = time.monotonic() + 240
    while not tag.exists() and ranks[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    ranks[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, error = ranks[0].communicate(timeout=60)
    seconds = time.monotonic() - killed
    ranks[1].communicate(timeout=30)
    killed_after = open_checkpoint(run).epoch  # verifies every file's checksum
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "timm_recipes", "train", "--resume", str(run)]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return KilledAndResumed(run, error, ranks[0].returncode, seconds, killed_after, done.stdout)


def _weights(run: Path, which: str) -> dict[str, torch.Tensor]:
    return open_checkpoint(run, tag="last").weights(which)


def _parameters_only(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


# ------------------------------------------------------------------------------------------------- two processes
def test_killed_rank_stops_the_other_with_a_clear_error(ddp_run) -> None:
    assert ddp_run.returncode == 1, ddp_run.error[-3000:]  # a runtime failure: exit code 1, one line
    assert ddp_run.seconds_to_stop < 30, "rank 0 did not stop within the timeout"
    assert "rank 0 of 2: a collective operation failed" in ddp_run.error
    assert f"relaunch the same torchrun command with --resume {ddp_run.run} to continue" in ddp_run.error
    assert ddp_run.killed_after_epoch == 1  # the last checkpoint is intact and the run was really interrupted


def test_two_processes_equal_one_with_accumulation_without_random_augmentation(ddp_run, data_root, tmp_path) -> None:
    run = ddp_run.run
    single = fit(_recipe(data_root, **{"optim.accum_steps": 2}), output_dir=tmp_path / "single")
    ddp_history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in ddp_history] == [1, 2] and [r["step"] for r in ddp_history] == [5, 10]
    assert [r["train_loss"] for r in ddp_history] == pytest.approx([r["train_loss"] for r in single.history], rel=1e-6)
    for which in ("model", "ema"):
        ddp, one = _parameters_only(_weights(run, which)), _parameters_only(_weights(single.run_dir, which))
        assert ddp.keys() == one.keys() and len(ddp) == 62
        for key in ddp:
            torch.testing.assert_close(ddp[key], one[key], rtol=0, atol=1e-6, msg=f"{which} {key}")
    # Only rank 0 wrote and printed: one recipe, one line per epoch in the metrics, one summary.
    assert len((run / "metrics.csv").read_text().splitlines()) == EPOCHS + 1
    assert load_recipe(run / "recipe.yaml") == _recipe(data_root)
    assert ddp_run.torchrun_stdout.count("run folder:") == 1


def test_distributed_evaluation_counts_every_image_once(ddp_run) -> None:
    final = json.loads((ddp_run.run / "final.json").read_text())  # computed by both ranks over 40 + 39 val images
    for which, prefix in (("raw", ""), ("ema", "ema_")):
        model, recipe, _ = load_checkpoint_model(ddp_run.run, which=which, tag="best")
        for split, n in (("val", 79), ("test", 80)):
            loader = create_eval_loader(recipe, build_eval_dataset(recipe, split))
            one = evaluate(model, loader, device=torch.device("cpu"))
            assert one["n"] == n
            assert final[f"{prefix}{split}_top1"] == one["top1"]  # same count of correct images, same n
            assert final[f"{prefix}{split}_top5"] == one["top5"]
            assert final[f"{prefix}{split}_loss"] == pytest.approx(one["loss"], rel=1e-6)


_UNREACHABLE = """
import os, sys, time
from timm_recipes.recipes import load_recipe
from timm_recipes.train.trainer import fit
for rank, port in zip((1, 0), sys.argv[1:3]):  # a worker that cannot reach the master; a master nobody joins
    os.environ.update(RANK=str(rank), MASTER_PORT=port)
    started = time.monotonic()
    try:
        fit(load_recipe(sys.argv[3]), output_dir=sys.argv[4])
    except RuntimeError as err:
        print(f"{time.monotonic() - started:.1f} s:", err)
"""


def test_unreachable_rendezvous_fails_within_the_timeout(recipe_file, tmp_path) -> None:
    # A child process: a failed rendezvous leaves torch's process-group counter advanced in the process it ran in.
    ports = [str(_free_port()), str(_free_port())]  # nobody listens there
    env = _env(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", **{TIMEOUT_ENV: "1"})
    args = [sys.executable, "-c", _UNREACHABLE, *ports, str(recipe_file), str(tmp_path / "never")]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if "could not join" in line]
    assert len(lines) == 2, done.stdout + done.stderr[-2000:]
    for rank, port, line in zip((1, 0), ports, lines):
        seconds = float(line.split(" s:")[0])
        assert f"rank {rank} of 2 could not join the process group at 127.0.0.1:{port} within 1 s" in line
        assert seconds < 15  # two connection attempts of 1 s at most, plus back-off
    assert not any(tmp_path.iterdir())  # nothing written


_RANK_1 = """
import torch
from torch import nn
from timm_recipes.train.distributed import Distributed
dist = Distributed.from_env("cpu")
m = nn.BatchNorm1d(3)
m.running_mean.fill_(1.0)
dist.sync_buffers(m)
dist.check_in_sync(m, "statistics")
with torch.no_grad():
    m.weight[1] += 1.0
try:
    dist.check_in_sync(m, "model weights")
except RuntimeError as err:
    print(err)
dist.reduce_sum(torch.tensor([1.0, 1.0]))
dist.close()
"""


def test_rank_agreement_check_and_buffer_averaging(monkeypatch) -> None:
    """This process is rank 0 of 2, a child process rank 1 (one start-up fewer than two children)."""
    port = str(_free_port())
    child = subprocess.Popen(
        [sys.executable, "-c", _RANK_1],
        env=_env(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **{TIMEOUT_ENV: "60"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(TIMEOUT_ENV, "60")
    with Distributed.from_env("cpu") as dist:
        m = torch.nn.BatchNorm1d(3)  # rank 0: running mean 0, rank 1: running mean 1
        dist.sync_buffers(m)
        assert torch.equal(m.running_mean, torch.full((3,), 0.5)) and int(m.num_batches_tracked) == 0
        dist.check_in_sync(m, "statistics")  # equal everywhere now: passes
        with pytest.raises(RuntimeError, match="the ranks disagree on the model weights: weight on rank 1 differs"):
            dist.check_in_sync(m, "model weights")  # rank 1 changed one element of one tensor
        assert dist.reduce_sum(torch.tensor([1.0, 0.0])).tolist() == [2.0, 1.0]
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert "the ranks disagree on the model weights: weight on rank 1 differs from rank 0" in out  # on both ranks


# ------------------------------------------------------------------------------------------------- one process
def test_sharded_sampler_cuts_the_loader_permutation_into_global_batches() -> None:
    n, world, batch = 50, 3, 4
    shards = []
    for rank in range(world):
        sampler = ShardedTrainSampler(n, rank=rank, world_size=world, batch_size=batch, seed=5)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == 4 * batch  # 50 // 12 = 4 global batches
    one = ShardedTrainSampler(n, rank=0, world_size=1, batch_size=1, seed=5)
    one.set_epoch(2)
    permutation = list(one)
    # The one-process order is the loader's own shuffle for (seed, epoch).
    loader = create_loader(list(range(n)), batch_size=n, shuffle=True, seed=5, epoch=2)
    assert next(iter(loader)).tolist() == permutation
    # Global batch k = the next 12 images of the permutation, rank r its r-th block of 4; nothing twice.
    for k in range(4):
        union = [i for shard in shards for i in shard[k * batch : (k + 1) * batch]]
        assert union == permutation[k * world * batch : (k + 1) * world * batch]
    assert len({i for s in shards for i in s}) == 48
    sampler.set_epoch(3)
    assert list(sampler) != shards[-1]  # the shards change with the epoch
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 3\)"):
        ShardedTrainSampler(n, rank=3, world_size=3, batch_size=4, seed=0)


def test_strided_eval_sampler_covers_every_image_once() -> None:
    for n in (0, 1, 79, 80):
        shards = [list(StridedEvalSampler(n, rank=r, world_size=3)) for r in range(3)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert [len(StridedEvalSampler(n, rank=r, world_size=3)) for r in range(3)] == [len(s) for s in shards]


def test_depth_draws_are_one_per_optimizer_step_and_reproducible() -> None:
    import timm

    model = timm.create_model("recipe_resnet18", num_classes=10, drop_path_rate=0.5, stochastic_depth_mode="batch")
    layers = stochastic_depth_modules(model)
    draws = DepthDraws.attach(model, seed=3, accum_steps=2)
    skips: list[list[bool]] = []
    for layer in layers:
        layer.sample_skip = (lambda orig: lambda: skips[-1].append(orig()) or skips[-1][-1])(layer.sample_skip)
    x = torch.randn(2, 3, 16, 16)

    def epoch(e: int, forwards: int) -> list[list[bool]]:
        draws.set_epoch(e)
        start = len(skips)
        for _ in range(forwards):
            skips.append([])
            model(x)
        return [list(s) for s in skips[start:]]

    first = epoch(1, 6)
    assert first[0] == first[1] and first[2] == first[3] and first[4] == first[5]  # micro-batches of a step agree
    assert len({tuple(s) for s in first[::2]}) > 1 and any(any(s) for s in first)  # steps differ; blocks are skipped
    assert epoch(1, 6) == first and epoch(2, 6) != first  # a function of (seed, epoch, step)
    model.eval()
    assert DepthDraws.attach(timm.create_model("recipe_resnet18", drop_path_rate=0.5), seed=0) is None  # row mode
    draws.detach()
    assert all(layer.generator is None for layer in layers)


def test_bad_distributed_settings_are_named(monkeypatch) -> None:
    for key in _ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK is not set"):
        Distributed.from_env("cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 must be below WORLD_SIZE=2"):
        Distributed.from_env("cpu")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT are not set: launch the processes with torchrun"):
        Distributed.from_env("cpu")
    for bad in ("abc", "0", "-5", "inf"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"environment variable {TIMEOUT_ENV} must be a number of seconds > 0"):
            dist_timeout()
    monkeypatch.setenv(TIMEOUT_ENV, "12.5")
    assert dist_timeout() == 12.5 and dist_timeout(3) == 3.0
    # More processes on a node than GPUs, and one GPU for every rank.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    four = Distributed(rank=3, local_rank=3, world_size=4)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=3 but this node has 2 CUDA device\(s\): --nproc_per_node"):
        resolve_device("auto", four)
    with pytest.raises(ValueError, match=r"run.device='cuda:1' with WORLD_SIZE=4: every process would use"):
        resolve_device("cuda:1", four)
    assert resolve_device("cuda", Distributed(rank=1, local_rank=1, world_size=2)) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"run\.sync_bn=true needs CUDA devices"):
        Distributed(world_size=2).wrap(torch.nn.BatchNorm2d(3), torch.device("cpu"), sync_bn=True)

"""The engine: exact metrics from counts, accumulation, clipping, scheduler/EMA cadence, bad losses, bf16."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from timm.utils import accuracy as timm_accuracy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from timm_recipes.train.ema import WeightEma
from timm_recipes.train.engine import collect_logits, evaluate, metrics_from_logits, topk_correct, train_one_epoch
from timm_recipes.train.schedules import create_scheduler

CPU = torch.device("cpu")


def _data(n: int = 37, classes: int = 7, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, classes, (n,), generator=g))


def _linear(classes: int = 7, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(6, classes)


@pytest.mark.parametrize("batch_size", [1, 8, 37])
def test_evaluate_is_exact_for_any_batch_size(batch_size: int) -> None:
    data, model = _data(), _linear()
    result = evaluate(model, DataLoader(data, batch_size=batch_size), device=CPU)
    x, y = data.tensors
    with torch.no_grad():
        logits = model(x)
    top1, top5 = timm_accuracy(logits, y, topk=(1, 5))  # timm's reference, on the whole set at once
    assert result["n"] == 37
    assert result["top1"] == pytest.approx(top1.item(), rel=1e-6)  # timm computes in float32
    assert result["top5"] == pytest.approx(top5.item(), rel=1e-6)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert result["correct1"] == int((logits.argmax(1) == y).sum())


def test_topk_counts_and_few_classes() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_correct(logits, targets, ks=(1, 2, 5)).tolist() == [1, 2, 3]  # k capped at the 3 classes
    metrics = metrics_from_logits(logits, targets)
    assert metrics["top1"] == pytest.approx(100 / 3) and metrics["top5"] == 100.0


def test_collect_logits_keeps_loader_order() -> None:
    data, model = _data(), _linear()
    logits, targets = collect_logits(model, DataLoader(data, batch_size=5), device=CPU)
    assert torch.equal(targets, data.tensors[1])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(data.tensors[0]))


def _epoch(model, loader, *, accum_steps=1, grad_clip=None, ema=None, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = create_scheduler("constant", opt, total_steps=100)
    stats = train_one_epoch(
        model, loader, nn.CrossEntropyLoss(), opt, sched, device=CPU, epoch=1, ema=ema, accum_steps=accum_steps,
        grad_clip=grad_clip, progress=False,
    )  # fmt: skip
    return stats, sched


def test_accumulation_equals_one_step_on_the_concatenated_batch() -> None:
    data = _data(n=16)
    accumulated, single = _linear(), _linear()
    stats, sched = _epoch(accumulated, DataLoader(data, batch_size=4), accum_steps=4)
    _epoch(single, DataLoader(data, batch_size=16))
    assert stats["steps"] == 1 and stats["step"] == 1 and sched.last_epoch == 1
    for a, b in zip(accumulated.parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_leftover_batches_make_a_last_smaller_step() -> None:
    data = _data(n=20)
    model, ref = _linear(), _linear()
    stats, sched = _epoch(model, DataLoader(data, batch_size=4), accum_steps=2)  # 5 batches: steps of 2, 2, 1
    assert stats["steps"] == 3 and sched.last_epoch == 3 and stats["n"] == 20
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    x, y = data.tensors
    for lo, hi in ((0, 8), (8, 16), (16, 20)):  # each group is the mean loss of its samples
        F.cross_entropy(ref(x[lo:hi]), y[lo:hi]).backward()
        opt.step()
        opt.zero_grad()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_gradient_clipping_matches_clip_grad_norm() -> None:
    data = _data(n=8)
    model, ref = _linear(), _linear()
    _epoch(model, DataLoader(data, batch_size=8), grad_clip=0.01)
    F.cross_entropy(ref(data.tensors[0]), data.tensors[1]).backward()
    before = torch.cat([p.grad.flatten() for p in ref.parameters()]).norm()
    assert before > 0.01  # the clip is active
    nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_ema_is_updated_every_k_optimizer_steps() -> None:
    model = _linear()
    ema = WeightEma(model, decay=0.5, every_k=3)
    stats, _ = _epoch(model, DataLoader(_data(n=40), batch_size=4), accum_steps=2, ema=ema)  # 10 batches, 5 steps
    assert stats["steps"] == 5 and ema.num_updates == 1


def test_loss_mean_is_weighted_by_samples() -> None:
    data = _data(n=10)
    model = _linear()
    snapshot = copy.deepcopy(model)
    stats, _ = _epoch(model, DataLoader(data, batch_size=4), lr=0.0)  # batches of 4, 4, 2; weights fixed
    x, y = data.tensors
    with torch.no_grad():
        expected = F.cross_entropy(snapshot(x), y).item()
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)


def test_non_finite_loss_stops_with_the_epoch_and_step() -> None:
    model = _linear()
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=r"loss is nan at epoch 1, optimizer step 1"):
        _epoch(model, DataLoader(_data(n=4), batch_size=4))


def test_bf16_autocast_on_cpu_and_channels_last() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(2, 3, 8, 8))
    model = model.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(12, 3, 8, 8, generator=g), torch.randint(0, 5, (12,), generator=g))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = create_scheduler("cosine", opt, total_steps=3, warmup_steps=1)
    stats = train_one_epoch(
        model, DataLoader(data, batch_size=4), nn.CrossEntropyLoss(), opt, sched, device=CPU, epoch=1,
        amp_dtype=torch.bfloat16, channels_last=True, progress=True,
    )  # fmt: skip
    assert stats["steps"] == 3 and torch.isfinite(torch.tensor(stats["loss"]))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a bf16 model
    result = evaluate(model, DataLoader(data, batch_size=5), device=CPU, amp_dtype=torch.bfloat16)
    assert result["n"] == 12 and 0.0 <= result["top1"] <= 100.0


def test_mixing_on_the_device_equals_mixing_in_the_collator() -> None:
    # The trainer mixes in the loader on the CPU and after the copy on a GPU: the same draws give the same training.
    from timm_recipes.data.mixing import MixupCutmix, MixupCutmixCollator
    from timm_recipes.train.losses import SoftTargetCrossEntropy

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(24, 3, 6, 6, generator=g), torch.randint(0, 4, (24,), generator=g))
    kwargs = {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "label_smoothing": 0.1}
    models = []
    for via_collator in (True, False):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(108, 4))
        draws = torch.Generator().manual_seed(5)
        collate = MixupCutmixCollator(4, generator=draws, **kwargs) if via_collator else None
        transform = None if via_collator else functools.partial(MixupCutmix(4, generator=draws, **kwargs), inplace=True)
        loader = DataLoader(data, batch_size=8, collate_fn=collate)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        sched = create_scheduler("constant", opt, total_steps=10)
        train_one_epoch(
            model, loader, SoftTargetCrossEntropy(), opt, sched, device=CPU, epoch=1, progress=False,
            batch_transform=transform,
        )  # fmt: skip
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kwargs", "name"), [({"accum_steps": 0}, "accum_steps"), ({"grad_clip": -1.0}, "grad_clip")])
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _epoch(_linear(), DataLoader(_data(n=4), batch_size=4), **kwargs)

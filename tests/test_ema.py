"""Weight EMA: the lecture's formula applied every k steps, torchvision's decay adjustment, buffers, fp32 copy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from timm_recipes.train.ema import WeightEma, adjust_ema_decay


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _train_steps(model: nn.Module, n: int, seed: int = 1):
    """Yield after each of ``n`` SGD steps (random data), so the caller can apply the EMA."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(1, n + 1):
        x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        yield step


@pytest.mark.parametrize("every_k", [1, 3])
def test_matches_the_lecture_formula_every_k_steps(every_k: int) -> None:
    rho = 0.8
    model = _net()
    ema = WeightEma(model, decay=rho, every_k=every_k)
    # θ_test starts as θ_0; then θ_test = (1 − ρ) θ + ρ θ_test at every k-th optimizer step (float64 reference).
    expected = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    updates = 0
    for step in _train_steps(model, 10):
        updated = ema.step(model, step)
        assert updated == (step % every_k == 0)
        if step % every_k == 0:
            updates += 1
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    expected[k] = (1 - rho) * v.double() + rho * expected[k]
                else:
                    expected[k] = v.double().clone()  # num_batches_tracked: copied
    assert ema.num_updates == updates == 10 // every_k
    got = ema.module.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k].double(), v, rtol=0, atol=1e-6, msg=k)
    # BatchNorm running statistics are averaged like the weights (documented policy), not copied.
    assert not torch.equal(got["1.running_mean"], model.state_dict()["1.running_mean"])


def test_agrees_with_torch_averaged_model_ema_with_buffers() -> None:
    # torchvision's ExponentialMovingAverage is AveragedModel(ema_avg, use_buffers=True): the same policy.
    rho = 0.9
    model = _net(3)
    ours = WeightEma(model, decay=rho, every_k=2)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(rho), use_buffers=True)
    ref.update_parameters(model)  # its first update copies θ_0, where ours starts
    for step in _train_steps(model, 8, seed=4):
        if ours.step(model, step):
            ref.update_parameters(model)
    ref_state = ref.module.state_dict()
    for k, v in ours.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ref_state[k], rtol=1e-6, atol=1e-7, msg=k)


def test_warmup_decay_sequence() -> None:
    rho = 0.9
    model = _net()
    ema = WeightEma(model, decay=rho, every_k=1, warmup=True)
    # timm's warm-up: update n uses min(ρ, 1 − n^(−2/3)); n = 1 copies the model.
    expected_decays = [min(rho, 1 - n ** (-2 / 3)) for n in range(1, 8)]
    assert expected_decays[0] == 0.0
    expected = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    for step, decay in zip(_train_steps(model, 7), expected_decays):
        assert ema.next_decay() == pytest.approx(decay, abs=1e-12)
        ema.step(model, step)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k] = (1 - decay) * v.double() + decay * expected[k]
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v.double(), expected[k], rtol=0, atol=1e-6, msg=k)


def test_ema_is_float32_for_a_bfloat16_model() -> None:
    model = _net().to(torch.bfloat16)
    ema = WeightEma(model, decay=0.99, every_k=1)
    assert all(p.dtype == torch.float32 for p in ema.module.parameters())
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    ema.update(model)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            # 0.01 · 0.5 = 0.005 is far below bf16's resolution near 1 (2^-7); the fp32 copy keeps it.
            torch.testing.assert_close(ema.module.state_dict()[k], 0.01 * v.float() + 0.99 * start[k], msg=k)
    assert not all(torch.equal(ema.module.state_dict()[k], start[k]) for k in start)


def test_state_round_trip_and_no_gradients() -> None:
    model = _net()
    ema = WeightEma(model, decay=0.5, every_k=2)
    for step in _train_steps(model, 4):
        ema.step(model, step)
    other = WeightEma(_net(9), decay=0.5, every_k=2)
    other.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert other.num_updates == 2
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_torchvision_decay_adjustment() -> None:
    # torchvision references/classification/train.py, ResNet-50 V2 recipe: 8 GPUs x 128, every 32 steps, 600 epochs.
    adjust = 8 * 128 * 32 / 600
    assert adjust_ema_decay(0.99998, batch_size=128, epochs=600, every_k=32, world_size=8) == pytest.approx(
        1 - (1 - 0.99998) * adjust, rel=0, abs=1e-15
    )
    # The adjusted decay keeps the horizon measured in epochs: doubling the batch halves the updates per epoch,
    # and 1 − ρ doubles with it.
    d1 = adjust_ema_decay(0.9999, batch_size=64, epochs=100, every_k=4)
    d2 = adjust_ema_decay(0.9999, batch_size=128, epochs=100, every_k=4)
    assert (1 - d2) == pytest.approx(2 * (1 - d1), rel=1e-12)
    assert adjust_ema_decay(0.5, batch_size=1024, epochs=1, every_k=32) == 0.0  # alpha clamped at 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"decay": 1.5}, "decay"),
        ({"decay": -0.1}, "decay"),
        ({"decay": 0.9, "every_k": 0}, "every_k"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        WeightEma(_net(), **kwargs)


def test_bad_adjustment_arguments() -> None:
    with pytest.raises(ValueError, match="epochs"):
        adjust_ema_decay(0.99, batch_size=8, epochs=0)
    with pytest.raises(ValueError, match=r"ema\.decay"):
        adjust_ema_decay(2.0, batch_size=8, epochs=1)


def test_ema_does_not_alias_the_model() -> None:
    model = _net()
    before = copy.deepcopy(model.state_dict())
    ema = WeightEma(model, decay=0.9)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.zero_()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])

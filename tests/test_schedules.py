"""Learning-rate schedules: the lecture's formulas, PyTorch's and timm's schedulers, resume, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

from timm_recipes.train.schedules import LRScheduler, create_scheduler

LR0 = 0.1
MIN_LR = 1e-3
WARMUP_LR = 1e-4


def _optimizer(*lrs: float) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in (lrs or (LR0,))]
    return torch.optim.SGD(groups, lr=LR0, momentum=0.0)


def _trace(scheduler, optimizer: torch.optim.Optimizer, steps: int, group: int = 0) -> list[float]:
    """The lr of one group after 0, 1, ..., ``steps`` calls of ``scheduler.step()``."""
    lrs = [optimizer.param_groups[group]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[group]["lr"])
    return lrs


def _ours(name: str, total: int, warmup: int = 0, lrs: tuple[float, ...] = (LR0,), **kw) -> list[float]:
    opt = _optimizer(*lrs)
    return _trace(create_scheduler(name, opt, total, warmup, **kw), opt, total)


# The lecture's formulas, written out independently of the implementation.
def lecture_cosine(e: int, big_e: int, lr0: float, lr_end: float) -> float:
    return lr_end + 0.5 * (lr0 - lr_end) * (1 + math.cos(e * math.pi / big_e))


def lecture_linear(e: int, big_e: int, lr0: float, lr_end: float) -> float:
    return lr_end + (lr0 - lr_end) * (1 - e / big_e)


def lecture_one_cycle(i: int, big_i: int, p: float, lr0: float, lr_max: float, lr_min: float) -> float:
    # Phase 1 as printed; phase 2 in its continuous form (it starts from lr_max, not lr_0).
    if i < p * big_i:
        return lr_max + (lr0 - lr_max) * (1 - i / (p * big_i))
    return lr_min + (lr_max - lr_min) * (1 - (i - p * big_i) / (big_i - p * big_i))


def lecture_warmup(k: int, w: int, start: float, lr0: float) -> float:
    return start + (lr0 - start) * k / w


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _assert_sequences(ours: list[float], reference: list[float]) -> None:
    assert len(ours) == len(reference)
    for k, (a, b) in enumerate(zip(ours, reference)):
        assert _close(a, b), f"step {k}: ours {a} != reference {b}"


def _torch_trace(make, total: int) -> list[float]:
    opt = _optimizer()
    return _trace(make(opt), opt, total)


# ----------------------------------------------------------------------------------------------------------------
# Schedules without warm-up: the lecture's formula at 0, middle, last; PyTorch's scheduler at every step.
# ----------------------------------------------------------------------------------------------------------------


def test_cosine_matches_lecture_torch_and_timm() -> None:
    total = 20
    lrs = _ours("cosine", total, min_lr=MIN_LR)
    for k in (0, total // 2, total):
        assert _close(lrs[k], lecture_cosine(k, total, LR0, MIN_LR))
    assert _close(lrs[0], LR0) and _close(lrs[total], MIN_LR) and _close(lrs[total // 2], (LR0 + MIN_LR) / 2)
    _assert_sequences(lrs, _torch_trace(lambda o: CosineAnnealingLR(o, T_max=total, eta_min=MIN_LR), total))
    opt = _optimizer()
    timm_sched = CosineLRScheduler(opt, t_initial=total, lr_min=MIN_LR, t_in_epochs=False)
    timm_lrs = []
    for k in range(total + 1):
        timm_sched.step_update(k)
        timm_lrs.append(opt.param_groups[0]["lr"])
    _assert_sequences(lrs, timm_lrs)


def test_linear_matches_lecture_and_torch() -> None:
    total = 16
    lrs = _ours("linear", total, min_lr=MIN_LR)
    for k in (0, total // 2, total):
        assert _close(lrs[k], lecture_linear(k, total, LR0, MIN_LR))
    reference = _torch_trace(lambda o: LinearLR(o, start_factor=1.0, end_factor=MIN_LR / LR0, total_iters=total), total)
    _assert_sequences(lrs, reference)


def test_step_matches_torch_step_lr() -> None:
    total, step_size, gamma = 25, 7, 0.1
    lrs = _ours("step", total, step_size=step_size, gamma=gamma)
    assert _close(lrs[0], LR0) and _close(lrs[6], LR0) and _close(lrs[7], LR0 / 10) and _close(lrs[14], LR0 / 100)
    assert _close(lrs[total], LR0 * gamma ** (total // step_size))
    _assert_sequences(lrs, _torch_trace(lambda o: StepLR(o, step_size=step_size, gamma=gamma), total))


def test_step_default_is_a_third_of_the_run() -> None:
    lrs = _ours("step", 90)
    assert _close(lrs[29], LR0) and _close(lrs[30], LR0 * 0.1) and _close(lrs[60], LR0 * 0.01)


def test_multistep_matches_torch_multistep_lr() -> None:
    total, milestones, gamma = 30, [10, 18, 25], 0.5
    lrs = _ours("step", total, milestones=milestones, gamma=gamma)
    assert _close(lrs[0], LR0) and _close(lrs[15], LR0 * 0.5) and _close(lrs[total], LR0 * 0.125)
    _assert_sequences(lrs, _torch_trace(lambda o: MultiStepLR(o, milestones=milestones, gamma=gamma), total))


def test_constant() -> None:
    lrs = _ours("constant", 10)
    assert all(_close(lr, LR0) for lr in lrs)


@pytest.mark.parametrize("shape, strategy", [("linear", "linear"), ("cosine", "cos")])
def test_one_cycle_matches_lecture_and_torch(shape: str, strategy: str) -> None:
    total, pct, max_lr = 20, 0.3, 1.0
    lrs = _ours("one_cycle", total, max_lr=max_lr, min_lr=MIN_LR, pct_start=pct, cycle_shape=shape)
    peak = round(pct * total)
    assert _close(lrs[0], LR0) and _close(lrs[peak], max_lr) and _close(lrs[total], MIN_LR)
    if shape == "linear":
        for k in (0, peak // 2, peak, (peak + total) // 2, total):
            assert _close(lrs[k], lecture_one_cycle(k, total, pct, LR0, max_lr, MIN_LR))
    # Continuous at the peak, unlike the printed second phase, which restarts at lr_0.
    assert abs(lrs[peak + 1] - lrs[peak]) < (max_lr - MIN_LR) / 5
    # PyTorch's OneCycleLR puts the peak at step pct * n - 1 and the end at n - 1: with n = I + 1 steps and
    # pct = (pI + 1) / (I + 1) they fall on the lecture's pI and I.
    reference = _torch_trace(
        lambda o: OneCycleLR(
            o,
            max_lr=max_lr,
            total_steps=total + 1,
            pct_start=(pct * total + 1) / (total + 1),
            anneal_strategy=strategy,
            cycle_momentum=False,
            div_factor=max_lr / LR0,
            final_div_factor=LR0 / MIN_LR,
            three_phase=False,
        ),
        total,
    )
    _assert_sequences(lrs, reference)


# ----------------------------------------------------------------------------------------------------------------
# Warm-up: warmup_lr at 0, lr_0 at W, then the schedule over E - W steps counted from W.
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "linear", "step", "one_cycle", "constant"])
def test_warmup_then_schedule_at_key_steps(name: str) -> None:
    total, warmup = 30, 6
    kw = {"warmup_lr": WARMUP_LR, "min_lr": MIN_LR, "step_size": 8, "max_lr": 0.5, "pct_start": 0.25}
    lrs = _ours(name, total, warmup, **kw)
    big_e = total - warmup

    def after_warmup(e: int) -> float:
        return {
            "cosine": lecture_cosine(e, big_e, LR0, MIN_LR),
            "linear": lecture_linear(e, big_e, LR0, MIN_LR),
            "step": LR0 * 0.1 ** (e // 8),
            "one_cycle": lecture_one_cycle(e, big_e, 0.25, LR0, 0.5, MIN_LR),
            "constant": LR0,
        }[name]

    assert _close(lrs[0], WARMUP_LR)
    assert _close(lrs[warmup // 2], lecture_warmup(warmup // 2, warmup, WARMUP_LR, LR0))
    assert _close(lrs[warmup], LR0)
    for k in (warmup, warmup + big_e // 2, total - 1, total):
        assert _close(lrs[k], after_warmup(k - warmup)), f"{name} at step {k}"


def test_cosine_warmup_matches_timm_and_torch_sequential() -> None:
    total, warmup = 30, 5
    lrs = _ours("cosine", total, warmup, warmup_lr=WARMUP_LR, min_lr=MIN_LR)
    opt = _optimizer()
    timm_sched = CosineLRScheduler(
        opt,
        t_initial=total - warmup,
        lr_min=MIN_LR,
        warmup_t=warmup,
        warmup_lr_init=WARMUP_LR,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    timm_lrs = []
    for k in range(total + 1):
        timm_sched.step_update(k)
        timm_lrs.append(opt.param_groups[0]["lr"])
    _assert_sequences(lrs, timm_lrs)

    def torch_sequential(o: torch.optim.Optimizer) -> SequentialLR:
        warm = LinearLR(o, start_factor=WARMUP_LR / LR0, end_factor=1.0, total_iters=warmup)
        cos = CosineAnnealingLR(o, T_max=total - warmup, eta_min=MIN_LR)
        return SequentialLR(o, [warm, cos], milestones=[warmup])

    _assert_sequences(lrs, _torch_trace(torch_sequential, total))


def test_linear_warmup_matches_torch_sequential() -> None:
    total, warmup = 20, 4
    lrs = _ours("linear", total, warmup, warmup_lr=WARMUP_LR, min_lr=MIN_LR)

    def torch_sequential(o: torch.optim.Optimizer) -> SequentialLR:
        warm = LinearLR(o, start_factor=WARMUP_LR / LR0, end_factor=1.0, total_iters=warmup)
        dec = LinearLR(o, start_factor=1.0, end_factor=MIN_LR / LR0, total_iters=total - warmup)
        return SequentialLR(o, [warm, dec], milestones=[warmup])

    _assert_sequences(lrs, _torch_trace(torch_sequential, total))


# ----------------------------------------------------------------------------------------------------------------
# Param groups, the pure function, past the end, resume.
# ----------------------------------------------------------------------------------------------------------------


def test_each_param_group_follows_its_own_initial_lr() -> None:
    total, warmup, lrs0 = 12, 3, (0.2, 0.05)
    opt = _optimizer(*lrs0)
    sched = create_scheduler("cosine", opt, total, warmup, warmup_lr=WARMUP_LR, min_lr=MIN_LR)
    assert [g["initial_lr"] for g in opt.param_groups] == list(lrs0)
    traces = [[g["lr"] for g in opt.param_groups]]
    for _ in range(total):
        opt.step()
        sched.step()
        traces.append([g["lr"] for g in opt.param_groups])
    for k, values in enumerate(traces):
        for lr0, value in zip(lrs0, values):
            if k < warmup:
                expected = lecture_warmup(k, warmup, WARMUP_LR, lr0)
            else:
                expected = lecture_cosine(k - warmup, total - warmup, lr0, MIN_LR)
            assert _close(value, expected)
        assert values == pytest.approx(sched.lr_at(k), rel=1e-12)


def test_lr_at_is_pure_and_holds_after_the_end() -> None:
    opt = _optimizer()
    sched = create_scheduler("linear", opt, 10, 2, min_lr=MIN_LR)
    assert isinstance(sched, LRScheduler)
    assert sched.lr_at(7) == sched.lr_at(7)
    assert sched.last_epoch == 0  # lr_at did not move the scheduler
    assert _close(sched.lr_at(10)[0], MIN_LR) and _close(sched.lr_at(25)[0], MIN_LR)
    with pytest.raises(ValueError, match="step"):
        sched.lr_at(-1)


def test_state_dict_resume_continues_exactly() -> None:
    total, warmup, cut = 24, 4, 9
    kw = {"warmup_lr": WARMUP_LR, "min_lr": MIN_LR, "max_lr": 0.6}
    straight = _ours("one_cycle", total, warmup, **kw)

    opt = _optimizer()
    sched = create_scheduler("one_cycle", opt, total, warmup, **kw)
    _trace(sched, opt, cut)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()

    opt2 = _optimizer()
    sched2 = create_scheduler("one_cycle", opt2, total, warmup, **kw)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    assert sched2.last_epoch == cut
    resumed = _trace(sched2, opt2, total - cut)
    _assert_sequences(straight[cut:], resumed)


# ----------------------------------------------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kw, match",
    [
        (("cosine", 10, 10), {}, "total_steps"),
        (("cosine", 10, 12), {}, "total_steps"),
        (("cosine", 0), {}, "total_steps"),
        (("cosine", 10, -1), {}, "warmup_steps"),
        (("cosine", 10), {"min_lr": -1e-3}, "min_lr"),
        (("cosine", 10), {"min_lr": 1.0}, "min_lr"),
        (("cosine", 10, 2), {"warmup_lr": -1e-3}, "warmup_lr"),
        (("cosinus", 10), {}, "name"),
        (("one_cycle", 10), {"max_lr": 1.0, "pct_start": 0.0}, "pct_start"),
        (("one_cycle", 10), {"max_lr": 1.0, "pct_start": 1.0}, "pct_start"),
        (("one_cycle", 10), {"max_lr": 1.0, "pct_start": 1.5}, "pct_start"),
        (("one_cycle", 10), {}, "max_lr"),
        (("one_cycle", 10), {"max_lr": 0.01}, "max_lr"),
        (("one_cycle", 10), {"max_lr": 1.0, "cycle_shape": "cos"}, "cycle_shape"),
        (("step", 10), {"gamma": 0.0}, "gamma"),
        (("step", 10), {"gamma": -0.5}, "gamma"),
        (("step", 10), {"step_size": 0}, "step_size"),
        (("step", 10), {"milestones": [5, 3]}, "milestones"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(args: tuple, kw: dict, match: str) -> None:
    name, *rest = args
    with pytest.raises(ValueError, match=match):
        create_scheduler(name, _optimizer(), *rest, **kw)


def test_negative_optimizer_lr_is_rejected() -> None:
    opt = _optimizer()
    opt.param_groups[0]["lr"] = -0.1
    with pytest.raises(ValueError, match="lr"):
        create_scheduler("cosine", opt, 10)


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="total_steps"):
        create_scheduler("cosine", _optimizer(), 10.5)
    with pytest.raises(TypeError, match="optimizer"):
        create_scheduler("cosine", object(), 10)

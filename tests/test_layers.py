"""StochasticDepth and the survival rule, against the lecture's formula, timm's DropPath and binomial statistics."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn as nn
from scipy.stats import binomtest
from timm.layers import DropPath

from timm_recipes.layers import (
    StochasticDepth,
    expected_kept_fraction,
    set_stochastic_depth_generator,
    set_stochastic_depth_mode,
    stochastic_depth_modules,
    survival_probs,
)

# A fixed-seed statistical test passes or fails deterministically; this level only guards against a wrong rate.
ALPHA = 1e-4


# ----------------------------------------------------------------------------------------------- survival rule
@pytest.mark.parametrize("num_blocks", [1, 2, 8, 16, 33, 50])
@pytest.mark.parametrize("drop_path_rate", [0.0, 0.05, 0.2, 0.5, 0.9])
def test_survival_probs_are_the_lecture_rule(num_blocks: int, drop_path_rate: float) -> None:
    p_last = 1.0 - drop_path_rate
    lecture = [1 - (l / num_blocks) * (1 - p_last) for l in range(1, num_blocks + 1)]  # noqa: E741
    probs = survival_probs(num_blocks, drop_path_rate)
    assert probs == lecture  # exactly: p_l = 1 − (l / L)(1 − p_L)
    # Independently: the drop probabilities are linspace(0, rate, L + 1) without its leading 0 ...
    reference = 1.0 - torch.linspace(0.0, drop_path_rate, num_blocks + 1, dtype=torch.float64)[1:]
    assert probs == pytest.approx(reference.tolist(), abs=1e-12)
    # ... so the deepest block survives with p_L and the first one is already droppable, unlike timm's rule.
    assert probs[-1] == pytest.approx(p_last, abs=1e-12)
    if drop_path_rate > 0:
        assert probs[0] < 1.0
        assert all(a > b for a, b in itertools.pairwise(probs))


@pytest.mark.parametrize(
    ("num_blocks", "drop_path_rate", "error", "name"),
    [
        (0, 0.1, ValueError, "num_blocks"),
        (2.0, 0.1, ValueError, "num_blocks"),
        (True, 0.1, ValueError, "num_blocks"),
        (4, -0.1, ValueError, "drop_path_rate"),
        (4, 1.0, ValueError, "drop_path_rate"),
        (4, math.nan, ValueError, "drop_path_rate"),
        (4, "0.1", TypeError, "drop_path_rate"),
    ],
)
def test_survival_probs_rejects_bad_input(num_blocks, drop_path_rate, error, name) -> None:
    with pytest.raises(error, match=name):
        survival_probs(num_blocks, drop_path_rate)


# ------------------------------------------------------------------------------------------- layer arguments
@pytest.mark.parametrize("survival_prob", [0.0, -0.5, 1.01, math.nan])
def test_survival_prob_outside_unit_interval_is_rejected(survival_prob: float) -> None:
    with pytest.raises(ValueError, match=r"survival_prob must be in \(0, 1\]"):
        StochasticDepth(survival_prob)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        StochasticDepth(0.5, mode="sample")
    with pytest.raises(ValueError, match="stochastic_depth_mode"):
        set_stochastic_depth_mode(nn.Sequential(StochasticDepth(0.5)), "per-sample")


# ---------------------------------------------------------------------------------------------- eval / p = 1
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_eval_mode_is_the_identity(mode: str) -> None:
    layer = StochasticDepth(0.3, mode).eval()
    x = torch.randn(16, 4, 3, 3)
    state = torch.get_rng_state()
    assert not any(layer.sample_skip() for _ in range(50))
    assert layer(x) is x
    assert torch.equal(torch.get_rng_state(), state)  # no draw at all


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_survival_prob_one_never_drops(mode: str) -> None:
    layer = StochasticDepth(1.0, mode).train()
    x = torch.randn(16, 4)
    assert not any(layer.sample_skip() for _ in range(50))
    assert layer(x) is x


# ------------------------------------------------------------------------------------------------- row mode
@pytest.mark.parametrize("survival_prob", [0.5, 0.8, 0.95])
def test_row_mode_is_timm_drop_path_for_the_same_seed(survival_prob: float) -> None:
    x = torch.randn(64, 8, 5, 5)
    torch.manual_seed(7)
    expected = DropPath(drop_prob=1 - survival_prob).train()(x)
    torch.manual_seed(7)
    assert torch.equal(StochasticDepth(survival_prob, "row").train()(x), expected)


@pytest.mark.parametrize("survival_prob", [0.5, 0.8, 0.95])
def test_row_mode_keeps_each_sample_with_probability_p_and_scales_by_inverse_p(survival_prob: float) -> None:
    n = 20_000
    x = torch.ones(n, 3, 2, 2)
    out = StochasticDepth(survival_prob, "row", generator=torch.Generator().manual_seed(1)).train()(x)
    rows = out.flatten(1)
    kept = rows[:, 0] != 0
    # one decision per sample: a row is all zeros or all 1/p
    assert torch.equal(rows[~kept], torch.zeros_like(rows[~kept]))
    scale = torch.ones(()).div_(survival_prob)
    assert torch.equal(rows[kept], scale.expand_as(rows[kept]))
    assert binomtest(int(kept.sum()), n, survival_prob).pvalue > ALPHA


def test_row_mode_with_a_generator_leaves_the_global_rng_alone() -> None:
    x = torch.randn(32, 4)
    layer = StochasticDepth(0.5, "row", generator=torch.Generator().manual_seed(3)).train()
    state = torch.get_rng_state()
    first = layer(x)
    assert torch.equal(torch.get_rng_state(), state)
    layer.generator = torch.Generator().manual_seed(3)
    assert torch.equal(layer(x), first)


# ----------------------------------------------------------------------------------------------- batch mode
@pytest.mark.parametrize("survival_prob", [0.5, 0.8, 0.95])
def test_batch_mode_keeps_the_branch_with_probability_p(survival_prob: float) -> None:
    draws = 5_000
    layer = StochasticDepth(survival_prob, "batch", generator=torch.Generator().manual_seed(2)).train()
    kept = sum(not layer.sample_skip() for _ in range(draws))
    assert binomtest(kept, draws, survival_prob).pvalue > ALPHA


def test_batch_mode_scales_a_kept_branch_by_inverse_p_for_the_whole_batch() -> None:
    x = torch.randn(8, 4, 3, 3)
    out = StochasticDepth(0.8, "batch").train()(x)
    torch.testing.assert_close(out, x / 0.8, rtol=0, atol=0)


def test_batch_mode_draws_replay_from_the_generator_seed() -> None:
    def decisions(layer: StochasticDepth) -> list[bool]:
        return [layer.sample_skip() for _ in range(200)]

    a = StochasticDepth(0.6, "batch", generator=torch.Generator().manual_seed(11)).train()
    b = StochasticDepth(0.6, "batch", generator=torch.Generator().manual_seed(11)).train()
    assert decisions(a) == decisions(b)
    # without a generator the global RNG decides, so torch.manual_seed makes runs repeatable
    c = StochasticDepth(0.6, "batch").train()
    torch.manual_seed(5)
    first = decisions(c)
    torch.manual_seed(5)
    assert decisions(c) == first
    assert 0 < sum(first) < len(first)


def test_batch_mode_cannot_be_traced_by_fx_in_training_but_can_in_eval() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branch = nn.Linear(4, 4)
            self.drop_path = StochasticDepth(0.5, "batch")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.drop_path.sample_skip():
                return x
            return x + self.drop_path(self.branch(x))

    block = Block().train()
    with pytest.raises(RuntimeError, match=r'stochastic_depth_mode="batch".*torch\.fx'):
        torch.fx.symbolic_trace(block)
    traced = torch.fx.symbolic_trace(block.eval())
    x = torch.randn(3, 4)
    assert torch.equal(traced(x), block(x))


# --------------------------------------------------------------------------------------------------- helpers
def test_helpers_find_and_configure_every_layer_in_depth_order() -> None:
    layers = [StochasticDepth(p) for p in (0.9, 0.8, 0.7)]
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(layers[0], layers[1]), layers[2])
    assert stochastic_depth_modules(model) == layers
    set_stochastic_depth_mode(model, "batch")
    assert [layer.mode for layer in layers] == ["batch"] * 3
    generator = torch.Generator().manual_seed(0)
    set_stochastic_depth_generator(model, generator)
    assert all(layer.generator is generator for layer in layers)
    with pytest.raises(TypeError, match="generator"):
        set_stochastic_depth_generator(model, 123)


def test_layer_with_a_generator_deep_copies() -> None:
    # timm's ModelEmaV3 deep-copies the model, generator attribute included
    layer = StochasticDepth(0.5, "batch", generator=torch.Generator().manual_seed(4))
    clone = copy.deepcopy(layer)
    assert clone.survival_prob == layer.survival_prob and clone.mode == layer.mode
    assert [clone.train().sample_skip() for _ in range(20)] == [layer.train().sample_skip() for _ in range(20)]


def test_expected_kept_fraction_weights_the_survival_probabilities() -> None:
    assert expected_kept_fraction([1.0, 0.5], [3.0, 1.0]) == pytest.approx((3.0 + 0.5) / 4.0)
    probs = survival_probs(10, 0.5)
    assert expected_kept_fraction(probs, [1.0] * 10) == pytest.approx(sum(probs) / 10)
    with pytest.raises(ValueError, match="equal length"):
        expected_kept_fraction([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        expected_kept_fraction([1.0], [0.0])

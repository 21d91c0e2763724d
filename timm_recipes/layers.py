"""Stochastic depth: the survival rule of the lecture and the layer that applies it.

Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016, https://arxiv.org/abs/1603.09382.
During training the residual branch of block l = 1 … L is dropped with probability 1 − p_l, keeping only the
identity (shortcut) path, where the survival probability decays linearly with depth:

    p_l = 1 − (l / L) (1 − p_L)

At test time the network is unmodified: kept branches are scaled by 1 / p_l during training ("inverted"
scaling, as in timm's ``DropPath``), so the expected training output equals the test-time output.

timm's models spell the same idea ``drop_path_rate`` with the rule ``rate · i / (L − 1)``, i = 0 … L − 1, so
its first block is never dropped. The recipe models keep timm's keyword, ``drop_path_rate = 1 − p_L``, and
follow the lecture's rule (:func:`survival_probs`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "STOCHASTIC_DEPTH_MODES",
    "StochasticDepth",
    "check_rate",
    "check_stochastic_depth_mode",
    "expected_kept_fraction",
    "set_stochastic_depth_generator",
    "set_stochastic_depth_mode",
    "stochastic_depth_modules",
    "survival_probs",
]

STOCHASTIC_DEPTH_MODES = ("row", "batch")


def check_rate(value: float, name: str) -> float:
    """Return a drop probability as a float, or raise naming ``name`` unless it lies in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__}")
    if not (0.0 <= value < 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_stochastic_depth_mode(mode: str, name: str = "stochastic_depth_mode") -> str:
    """Return ``mode``, or raise ``ValueError`` naming ``name`` unless it is one of :data:`STOCHASTIC_DEPTH_MODES`."""
    if not isinstance(mode, str) or mode not in STOCHASTIC_DEPTH_MODES:
        raise ValueError(f"{name} must be one of {STOCHASTIC_DEPTH_MODES}, got {mode!r}")
    return mode


def survival_probs(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Survival probabilities p_1 … p_L of the lecture's linear decay rule.

    Args:
        num_blocks: L, the number of blocks counted in depth order (at least 1).
        drop_path_rate: 1 − p_L, the drop probability of the deepest block, in [0, 1).

    Returns:
        ``[p_1, …, p_L]`` with ``p_l = 1 − (l / L)(1 − p_L)``; all ones when ``drop_path_rate`` is 0.
    """
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks must be an integer >= 1, got {num_blocks!r}")
    p_last = 1.0 - check_rate(drop_path_rate, "drop_path_rate")
    return [1.0 - (l / num_blocks) * (1.0 - p_last) for l in range(1, num_blocks + 1)]  # noqa: E741


def _is_fx_tracing() -> bool:
    """True inside ``torch.fx.symbolic_trace`` (not inside ``torch.compile``, which handles Python branches)."""
    fx = torch.fx._symbolic_trace
    is_tracing = getattr(fx, "is_fx_symbolic_tracing", None) or getattr(fx, "is_fx_tracing", None)
    return bool(is_tracing is not None and is_tracing())


class StochasticDepth(nn.Module):
    """Drops the residual branch of one block with probability ``1 − survival_prob`` during training.

    Huang et al., "Deep Networks with Stochastic Depth", https://arxiv.org/abs/1603.09382.

    The block that owns this layer asks :meth:`sample_skip` *before* it computes its residual branch and, when
    the answer is ``True``, returns its shortcut path alone; otherwise it passes the branch output through
    :meth:`forward`. The layer holds no parameters or buffers, so a block's ``state_dict`` keys are unchanged.

    Two modes:

    * ``"row"`` (default): one Bernoulli(p) draw per sample, like timm's ``DropPath``; the branch is always
      computed, dropped rows are zeroed and kept rows scaled by 1/p. With ``generator=None`` it consumes the
      global RNG exactly as ``timm.layers.DropPath(1 − p)`` does, so both give identical outputs for the
      same seed. Every parameter receives a gradient on every step, and the layer scripts, traces and
      compiles like any timm layer.
    * ``"batch"``: the original paper's rule, one draw per block per forward for the whole mini-batch. A
      dropped block's branch is **not computed** (that is where the training speed-up comes from); a kept
      branch is scaled by 1/p. The draw is a Python-level branch, so this mode cannot be traced by torch.fx
      in training mode (eval mode is fine), and on a step where a block is dropped its parameters get no
      gradient. Under ``DistributedDataParallel`` wrap the model with ``find_unused_parameters=True``, and give
      every rank the same draws (:func:`set_stochastic_depth_generator` with a generator seeded identically
      on all ranks): then all ranks skip the same blocks and none waits for another.

    The draws come from ``generator`` when one is set (it must live on the device of the draws: the input's
    device in ``"row"`` mode, the generator's own device in ``"batch"`` mode, where a CPU generator avoids a
    device synchronisation), otherwise from torch's global RNG. Activation checkpointing
    (``set_grad_checkpointing``) re-runs blocks in the backward pass and restores only the *global* RNG
    state, so use ``generator=None`` together with checkpointing.

    In ``eval()`` mode the layer is the identity in both modes.

    Args:
        survival_prob: p, the probability that the branch is kept, in (0, 1].
        mode: ``"row"`` or ``"batch"``.
        generator: optional source of the random draws (see above).
    """

    def __init__(self, survival_prob: float = 1.0, mode: str = "row", generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(survival_prob, bool) or not isinstance(survival_prob, (int, float)):
            raise TypeError(f"survival_prob must be a float in (0, 1], got {type(survival_prob).__name__}")
        if not (0.0 < survival_prob <= 1.0):
            raise ValueError(f"survival_prob must be in (0, 1], got {survival_prob}")
        self.survival_prob = float(survival_prob)
        self.mode = check_stochastic_depth_mode(mode, "mode")
        self.generator = generator

    def sample_skip(self) -> bool:
        """Draw whether this forward skips the residual branch: only in training, in ``"batch"`` mode."""
        if not self.training or self.mode != "batch" or self.survival_prob >= 1.0:
            return False
        if torch.jit.is_scripting():
            return bool(torch.rand(()) >= self.survival_prob)
        return self._draw_skip()

    @torch.jit.unused
    def _draw_skip(self) -> bool:
        if _is_fx_tracing():
            raise RuntimeError(
                'stochastic_depth_mode="batch" decides in Python whether a block runs, which torch.fx cannot '
                'record; trace the model in eval() mode or use stochastic_depth_mode="row"'
            )
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        return bool(torch.rand((), generator=self.generator, device=device) >= self.survival_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale (``"batch"``) or randomly zero and scale per sample (``"row"``) a computed branch output."""
        if not self.training or self.survival_prob >= 1.0:
            return x
        if self.mode == "batch":
            return x / self.survival_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if torch.jit.is_scripting():
            mask = x.new_empty(shape).bernoulli_(self.survival_prob)
        else:
            mask = x.new_empty(shape).bernoulli_(self.survival_prob, generator=self.generator)
        return x * mask.div_(self.survival_prob)

    def extra_repr(self) -> str:
        return f"survival_prob={self.survival_prob:.4f}, mode={self.mode!r}"


def stochastic_depth_modules(model: nn.Module) -> list[StochasticDepth]:
    """The model's :class:`StochasticDepth` layers, in depth order (one per droppable block)."""
    return [m for m in model.modules() if isinstance(m, StochasticDepth)]


def set_stochastic_depth_mode(model: nn.Module, mode: str) -> list[StochasticDepth]:
    """Switch every :class:`StochasticDepth` layer of ``model`` to ``mode`` (``"row"`` or ``"batch"``)."""
    check_stochastic_depth_mode(mode)
    layers = stochastic_depth_modules(model)
    for layer in layers:
        layer.mode = mode
    return layers


def set_stochastic_depth_generator(model: nn.Module, generator: torch.Generator | None) -> list[StochasticDepth]:
    """Make every :class:`StochasticDepth` layer of ``model`` draw from ``generator`` (``None``: global RNG).

    One generator shared by all layers yields their draws in depth order; seeding it identically on every
    rank of a distributed run makes all ranks drop the same blocks in ``"batch"`` mode.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    layers = stochastic_depth_modules(model)
    for layer in layers:
        layer.generator = generator
    return layers


def expected_kept_fraction(survival: list[float], weights: list[float]) -> float:
    """Expected fraction of the weighted branch work that runs: ``Σ p_l w_l / Σ w_l`` (e.g. w_l = FLOPs)."""
    if len(survival) != len(weights) or not weights:
        raise ValueError("survival and weights must be non-empty and of equal length")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    return math.fsum(p * w for p, w in zip(survival, weights)) / total

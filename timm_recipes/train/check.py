"""The lecture's sanity checks before a training run (Karpathy, "A Recipe for Training Neural Networks",
http://karpathy.github.io/2019/04/25/recipe/): become one with the data, check the loss at initialisation, overfit
one small batch.

**The initial loss.** A freshly initialised classifier should predict roughly uniformly, p_c = 1/C. For *any*
target distribution y (one-hot, label-smoothed, Mixup/CutMix-mixed: every row sums to 1) the cross-entropy of the
uniform prediction is

    CE(y, uniform) = -sum_c y_c ln(1/C) = ln C · sum_c y_c = ln C,

so the expected initial loss is ln C (2.303 for ten classes) with or without smoothing or mixing. What the soft
targets change is the *floor* of the loss: CE(y, p) = H(y) + KL(y || p), and the entropy of the targets H(y) is what
no model can get below. One-hot targets have H = 0 (the initial KL is ln C and training can drive the loss to 0);
smoothing with eps gives H = -(1 - eps + eps/C) ln(1 - eps + eps/C) - (C - 1)(eps/C) ln(eps/C) (0.500 for eps = 0.1,
C = 10); a Mixup pair with weight lambda has H = -lambda ln lambda - (1 - lambda) ln(1 - lambda). A KL-divergence
loss (``nn.KLDivLoss``, the lecture's slide) therefore starts at ln C - H(y), not at ln C, and ends at 0 rather than
at H(y). :func:`expected_initial_loss` computes all three for the actual targets of a batch.

**Overfit one batch.** With every regulariser off (no augmentation, Mixup, smoothing, dropout, stochastic depth or
weight decay; the recipe's optimizer at a constant learning rate) a working model, loss and optimizer reach 100 %
training accuracy on a handful of images within a few dozen steps. Failing that, :func:`overfit_one_batch` names
the likely causes from what it saw (the learning rate, a diverging or flat loss, frozen weights, identical inputs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CheckResult", "expected_initial_loss", "measure_initial_loss", "overfit_one_batch", "sample_batch"]


@dataclass
class CheckResult:
    """One check: its name, ``"pass"`` / ``"warn"`` / ``"fail"``, a one-line message and the numbers behind it."""

    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "details": self.details}


# ================================================================================================ initial loss
def expected_initial_loss(targets: torch.Tensor) -> dict[str, float]:
    """The loss of a uniform prediction against soft ``targets`` (``N × C``, rows summing to 1), batch-averaged.

    Returns:
        ``{"cross_entropy": -mean_i sum_c y_ic ln(1/C)`` (= ln C), ``"target_entropy": mean_i H(y_i)``,
        ``"kl": cross_entropy - target_entropy`` (the KL divergence from the targets to the uniform prediction)}.

    Raises:
        ValueError: not an ``N × C`` tensor of probabilities.
    """
    if not isinstance(targets, torch.Tensor) or targets.ndim != 2 or targets.shape[0] < 1 or targets.shape[1] < 2:
        raise ValueError(f"targets must be an N x C tensor with C >= 2, got {getattr(targets, 'shape', targets)}")
    y = targets.double()
    if (y < 0).any() or not torch.allclose(y.sum(1), torch.ones_like(y[:, 0]), atol=1e-5):
        raise ValueError("targets must be probabilities: non-negative rows summing to 1")
    c = y.shape[1]
    ce = float((-(y * math.log(1.0 / c)).sum(1)).mean())
    entropy = float((-(torch.where(y > 0, y * y.clamp_min(1e-300).log(), torch.zeros_like(y))).sum(1)).mean())
    return {"cross_entropy": ce, "target_entropy": entropy, "kl": ce - entropy, "ln_c": math.log(c)}


def measure_initial_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> float:
    """Cross-entropy (soft targets) of ``model`` on one batch, in eval mode, without gradients."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            logp = F.log_softmax(model(images).float(), dim=-1)
    finally:
        model.train(was)
    return float(-(targets.float() * logp).sum(1).mean())


# ================================================================================================ overfit
def sample_batch(dataset: Any, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images and labels of ``dataset`` (a fixed random choice; the first ``n`` of an iterable source)."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        if len(dataset) < 1:
            raise ValueError("the training split is empty")
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        items = [dataset[i] for i in order]
    else:
        items = []
        for item in dataset:
            items.append(item)
            if len(items) >= n:
                break
    images = torch.stack([torch.as_tensor(x) for x, _ in items]).float()
    labels = torch.as_tensor([int(y) for _, y in items])
    return images, labels


def _likely_causes(lr: float, losses: Sequence[float], model: nn.Module, images: torch.Tensor) -> list[str]:
    causes = []
    if lr == 0:
        causes.append("optim.lr is 0: the weights never change")
    if not any(p.requires_grad for p in model.parameters()):
        causes.append("no parameter requires a gradient (the model is frozen)")
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) < len(losses):
        causes.append("the loss became NaN/inf: the learning rate is too high, or the inputs are not normalised")
    elif finite and finite[-1] > 0.9 * finite[0]:
        causes.append("the loss barely decreased: learning rate too low, or labels that do not match the images")
    elif finite:
        causes.append("the loss decreases but too slowly: raise --steps or the learning rate")
    if images.shape[0] > 1 and float(images.flatten(1).std(0).max()) < 1e-6:
        causes.append("all images of the batch are identical: the data pipeline is broken")
    return causes


def overfit_one_batch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer_name: str = "adamw",
    lr: float = 1e-3,
    momentum: float = 0.9,
    max_steps: int = 200,
    device: str | torch.device = "cpu",
) -> CheckResult:
    """Train a copy of ``model`` on one batch (no regularisation, constant lr) until 100 % training accuracy.

    Accuracy is measured on the batch in eval mode after each step (BatchNorm with its running statistics, the way
    the model will be used), so that a pass means the weights, not the batch statistics, fit the batch.

    Returns:
        A :class:`CheckResult` (``"overfit"``): ``pass`` with the number of steps, or ``fail`` after ``max_steps``
        naming the likely causes.
    """
    from timm_recipes.train.optim import create_optimizer

    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    if lr < 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev)
    x, y = images.to(dev), labels.to(dev)
    optimizer = create_optimizer(net, optimizer_name, lr, 0.0, momentum=momentum)
    losses: list[float] = []
    best, reached = 0.0, None
    for step in range(1, max_steps + 1):
        net.train()
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        net.eval()
        with torch.no_grad():
            acc = float((net(x).argmax(1) == y).float().mean()) * 100.0
        best = max(best, acc)
        if acc == 100.0:
            reached = step
            break
        if not math.isfinite(losses[-1]):
            break
    details = {
        "batch": int(x.shape[0]), "optimizer": optimizer_name, "lr": lr, "max_steps": max_steps,
        "steps_to_100": reached, "best_accuracy": best, "first_loss": losses[0], "last_loss": losses[-1],
    }  # fmt: skip
    if reached is not None:
        return CheckResult("overfit", "pass", f"100 % training accuracy on {x.shape[0]} images after {reached} steps",
                           details)  # fmt: skip
    causes = _likely_causes(lr, losses, net, x)
    details["likely_causes"] = causes
    return CheckResult(
        "overfit",
        "fail",
        f"did not reach 100 % training accuracy on one batch of {x.shape[0]} images in {len(losses)} steps "
        f"(best {best:.1f} %, loss {losses[0]:.3f} -> {losses[-1]:.3f}); likely causes: " + "; ".join(causes),
        details,
    )

"""Losses: soft-target CE, label smoothing, KL divergence, against PyTorch, timm and the lecture's encoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy
from timm.loss import SoftTargetCrossEntropy as TimmSoftTargetCrossEntropy
from torch import nn

from timm_recipes.train.losses import (
    SoftTargetCrossEntropy,
    create_loss,
    kl_div_loss,
    smoothed_targets,
    soft_target_cross_entropy,
)

N, C, EPS = 16, 10, 0.1


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(N, C, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, C, (N,), generator=g)
    return logits, labels


def lecture_smoothing(labels: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """LS(y, eps) built entry by entry: eps / C everywhere, 1 - eps (C - 1) / C at the true class."""
    out = torch.empty(len(labels), num_classes, dtype=torch.float64)
    for i, y in enumerate(labels.tolist()):
        for k in range(num_classes):
            out[i, k] = 1 - eps * (num_classes - 1) / num_classes if k == y else eps / num_classes
    return out


def test_soft_ce_on_one_hot_equals_cross_entropy(batch) -> None:
    logits, labels = batch
    one_hot = F.one_hot(labels, C).double()
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(SoftTargetCrossEntropy()(logits, one_hot), expected, atol=1e-6)
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot, "none"), per_sample, atol=1e-6)
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot, "sum"), per_sample.sum(), atol=1e-5)


def test_torch_label_smoothing_equals_soft_ce_on_lecture_targets(batch) -> None:
    logits, labels = batch
    targets = lecture_smoothing(labels, C, EPS)
    assert torch.allclose(smoothed_targets(labels, C, EPS).double(), targets, atol=1e-7)
    torch_ls = create_loss(EPS, soft_targets=False)(logits, labels)
    assert torch.allclose(torch_ls, F.cross_entropy(logits, labels, label_smoothing=EPS))
    assert torch.allclose(SoftTargetCrossEntropy()(logits, targets), torch_ls, atol=1e-6)
    # ... and differs from the unsmoothed loss, so the comparison has teeth.
    assert not torch.allclose(torch_ls, F.cross_entropy(logits, labels), atol=1e-3)


def test_ce_and_kl_differ_by_the_targets_entropy_and_share_the_gradient(batch) -> None:
    logits, labels = batch
    targets = lecture_smoothing(labels, C, EPS)
    x = logits.clone().requires_grad_(True)
    ce = soft_target_cross_entropy(x, targets)
    kl = kl_div_loss(x, targets)
    entropy = -(targets * targets.log()).sum(dim=1).mean()
    assert torch.allclose(ce - kl, entropy, atol=1e-6)
    # For LS targets the entropy is the same for every sample: a constant of eps and C alone.
    p_true, p_other = 1 - EPS * (C - 1) / C, EPS / C
    h = -(
        p_true * torch.log(torch.tensor(p_true, dtype=torch.float64))
        + (C - 1) * p_other * torch.log(torch.tensor(p_other, dtype=torch.float64))
    )
    assert torch.allclose(entropy, h, atol=1e-6)
    (g_ce,) = torch.autograd.grad(ce, x)
    (g_kl,) = torch.autograd.grad(kl, x)
    assert torch.allclose(g_ce, g_kl, atol=1e-7)
    # The gradient of either w.r.t. the logits is (softmax - p) / N.
    assert torch.allclose(g_ce, (logits.softmax(-1) - targets) / N, atol=1e-6)


def test_kl_div_matches_torch_kl_div_loss(batch) -> None:
    logits, labels = batch
    targets = lecture_smoothing(labels, C, 0.3)
    expected = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(logits, -1), targets)
    assert torch.allclose(kl_div_loss(logits, targets), expected, atol=1e-6)


def test_agrees_with_timm_losses(batch) -> None:
    logits, labels = batch
    torch.manual_seed(1)
    soft = torch.distributions.Dirichlet(torch.ones(C, dtype=torch.float64)).sample((N,))
    assert torch.allclose(SoftTargetCrossEntropy()(logits, soft), TimmSoftTargetCrossEntropy()(logits, soft))
    ours = create_loss(EPS, soft_targets=False)(logits, labels)
    assert torch.allclose(ours, LabelSmoothingCrossEntropy(smoothing=EPS)(logits, labels), atol=1e-10)


def test_smoothing_is_applied_exactly_once_with_soft_targets(batch) -> None:
    logits, labels = batch
    loss = create_loss(EPS, soft_targets=True)
    assert isinstance(loss, SoftTargetCrossEntropy)
    # The mixer's targets already hold LS(y, eps); unmixed, the loss must equal CE with label_smoothing=eps ...
    once = F.cross_entropy(logits, labels, label_smoothing=EPS)
    assert torch.allclose(loss(logits, lecture_smoothing(labels, C, EPS)), once, atol=1e-6)
    # ... and not CE with the targets smoothed a second time.
    twice = lecture_smoothing(labels, C, EPS) * (1 - EPS) + EPS / C
    assert not torch.allclose(loss(logits, twice), once, atol=1e-4)
    assert isinstance(create_loss(0.0, soft_targets=False), nn.CrossEntropyLoss)
    assert create_loss(EPS, soft_targets=False).label_smoothing == EPS


def test_bad_input(batch) -> None:
    logits, labels = batch
    for eps in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            create_loss(eps, soft_targets=False)
    with pytest.raises(TypeError, match="soft_targets"):
        create_loss(0.1, soft_targets="yes")
    with pytest.raises(TypeError, match="targets"):
        SoftTargetCrossEntropy()(logits, labels)
    with pytest.raises(ValueError, match="targets"):
        SoftTargetCrossEntropy()(logits, torch.zeros(N, C + 1))
    with pytest.raises(ValueError, match="reduction"):
        SoftTargetCrossEntropy(reduction="avg")
    with pytest.raises(ValueError, match="smoothing"):
        smoothed_targets(labels, C, 1.5)

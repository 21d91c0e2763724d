"""Optimizers: which parameters decay, and coupled (SGD) vs decoupled (AdamW) weight decay, step by step."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from timm_recipes.train.optim import create_optimizer, no_decay_parameter_names

NORMS = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


class _Tiny(nn.Module):
    """Conv + BatchNorm + GroupNorm + LayerNorm + Linear: every kind of 1-D parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.ln(x))


def _expected_no_decay(model: nn.Module) -> set[str]:
    """Biases and norm-layer parameters, found from the module types (not from the tensors' shapes)."""
    names = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for param_name, _ in module.named_parameters(recurse=False):
            if isinstance(module, NORMS) or param_name == "bias":
                names.add(prefix + param_name)
    return names


def _groups_by_decay(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[float, set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[float, set[str]] = {}
    for group in optimizer.param_groups:
        out.setdefault(group["weight_decay"], set()).update(names[id(p)] for p in group["params"])
    return out


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_no_decay_group_holds_exactly_biases_and_norm_parameters(name: str) -> None:
    arch = "recipe_resnet18" if "recipe_resnet18" in timm.list_models("recipe_*") else "resnet18"
    for model in (timm.create_model(arch, num_classes=10), _Tiny()):
        optimizer = create_optimizer(model, name, lr=0.1, weight_decay=1e-4)
        groups = _groups_by_decay(model, optimizer)
        expected = _expected_no_decay(model)
        all_names = {n for n, _ in model.named_parameters()}
        assert groups[0.0] == expected
        assert groups[1e-4] == all_names - expected
        assert set(no_decay_parameter_names(model)) == expected
        # Every parameter in the no-decay group is 1-D, every decayed one is not.
        shapes = dict(model.named_parameters())
        assert all(shapes[n].ndim == 1 for n in groups[0.0]) and all(shapes[n].ndim > 1 for n in groups[1e-4])


def test_decay_norm_and_bias_and_frozen_parameters() -> None:
    model = _Tiny()
    groups = _groups_by_decay(model, create_optimizer(model, "sgd", 0.1, 1e-4, decay_norm_and_bias=True))
    assert groups == {1e-4: {n for n, _ in model.named_parameters()}}
    model.conv.weight.requires_grad_(False)
    groups = _groups_by_decay(model, create_optimizer(model, "sgd", 0.1, 1e-4))
    assert "conv.weight" not in groups[0.0] | groups[1e-4]


def test_optimizer_kinds() -> None:
    model = _Tiny()
    sgd = create_optimizer(model, "sgd", 0.1, 1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert not create_optimizer(model, "momentum", 0.1, 1e-4).defaults["nesterov"]
    assert isinstance(create_optimizer(model, "adamw", 1e-3, 0.05), torch.optim.AdamW)
    assert type(create_optimizer(model, "lamb", 1e-3, 0.05)).__name__ == "Lamb"


def _one_step(name: str, lr: float, wd: float, **kw) -> tuple[nn.Linear, dict[str, torch.Tensor], dict]:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).double()
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    optimizer = create_optimizer(layer, name, lr, wd, **kw)
    x = torch.randn(8, 4, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in layer.named_parameters()}
    optimizer.step()
    return layer, before, grads


def test_sgd_weight_decay_is_coupled_as_in_the_lecture() -> None:
    lr, wd = 0.1, 0.01
    layer, theta, grad = _one_step("momentum", lr, wd, momentum=0.0)
    # theta - lr (grad + lambda theta) = (1 - lr lambda) theta - lr grad, for the decayed weight ...
    assert torch.allclose(layer.weight, theta["weight"] - lr * (grad["weight"] + wd * theta["weight"]))
    assert torch.allclose(layer.weight, (1 - lr * wd) * theta["weight"] - lr * grad["weight"])
    # ... and no decay on the bias.
    assert torch.allclose(layer.bias, theta["bias"] - lr * grad["bias"])
    # Nesterov (first step: buffer = grad + lambda theta, update = (1 + mu) of it): decay inside the gradient.
    layer, theta, grad = _one_step("sgd", lr, wd, momentum=0.9)
    assert torch.allclose(layer.weight, theta["weight"] - lr * 1.9 * (grad["weight"] + wd * theta["weight"]))


def test_adamw_weight_decay_is_decoupled() -> None:
    lr, wd, eps = 1e-2, 0.1, 1e-8
    decayed, theta, grad = _one_step("adamw", lr, wd, eps=eps)
    plain, _, _ = _one_step("adamw", lr, 0.0, eps=eps)
    # First Adam step: m_hat = g, v_hat = g^2, so the adaptive step is g / (|g| + eps).
    adam_step = grad["weight"] / (grad["weight"].abs() + eps)
    assert torch.allclose(decayed.weight, (1 - lr * wd) * theta["weight"] - lr * adam_step)
    # Decoupled: the difference made by weight decay is -lr lambda theta, whatever the gradient.
    assert torch.allclose(decayed.weight - plain.weight, -lr * wd * theta["weight"])
    assert torch.allclose(decayed.bias, plain.bias)


def test_bad_input() -> None:
    model = _Tiny()
    with pytest.raises(ValueError, match="name"):
        create_optimizer(model, "sgdd", 0.1, 1e-4)
    with pytest.raises(ValueError, match="lr"):
        create_optimizer(model, "sgd", -0.1, 1e-4)
    with pytest.raises(ValueError, match="weight_decay"):
        create_optimizer(model, "sgd", 0.1, -1e-4)
    with pytest.raises(ValueError, match="momentum"):
        create_optimizer(model, "sgd", 0.1, 1e-4, momentum=1.0)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        create_optimizer(model, "sgd", 0.1, 1e-4)

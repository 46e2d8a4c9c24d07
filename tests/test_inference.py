"""Folding BatchNorm and channels-last keep each classifier's function and input gradient."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hac.models.classifiers import CLASSIFIERS, create_classifier
from hac.models.inference import fold_batchnorm, freeze_for_inference

FOLDED = [name for name in CLASSIFIERS.names() if CLASSIFIERS.get(name).fold_batchnorm]


def _randomise_batchnorm(net: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters, so that a wrong fold shows."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(shape, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(shape, generator=generator))


def _logits_and_input_gradient(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = net(x)
    (gradient,) = torch.autograd.grad(logits.logsumexp(1).sum() - logits[:, 0].sum(), x)
    return logits.detach(), gradient


def test_the_conv_nets_are_the_ones_folded():
    assert {"efficientnet-lite0", "resnet50", "resnet20"} <= set(FOLDED)
    assert "vit-b-16" not in FOLDED  # LayerNorm, no BatchNorm to fold


@pytest.mark.parametrize("name", FOLDED)
def test_folding_keeps_logits_and_input_gradients(name):
    torch.manual_seed(0)
    # float64: in float32, rounding flips a few ReLUs of a deep random net and so its local gradient
    reference = CLASSIFIERS.get(name).build().eval().double()
    _randomise_batchnorm(reference, torch.Generator().manual_seed(1))
    fast = freeze_for_inference(copy.deepcopy(reference))
    assert not any(isinstance(module, nn.BatchNorm2d) for module in fast.modules())
    assert not any(parameter.requires_grad for parameter in fast.parameters())

    size = 32 if CLASSIFIERS.get(name).labels == "cifar10" else 96  # odd-sized feature maps included
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    logits, gradient = _logits_and_input_gradient(reference, x)
    fast_logits, fast_gradient = _logits_and_input_gradient(fast, x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast_logits, logits, rtol=1e-9, atol=1e-9 * logits.abs().max().item())
    torch.testing.assert_close(fast_gradient, gradient, rtol=1e-9, atol=1e-9 * gradient.abs().max().item())


def test_fold_skips_a_batchnorm_that_follows_no_conv():
    net = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (4, 1, 1)), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    assert fold_batchnorm(net.eval()) == 0
    assert isinstance(net[2], nn.BatchNorm2d)


def test_the_embedded_classifier_is_frozen_and_channels_last():
    classifier = create_classifier("efficientnet-lite0")
    assert classifier.channels_last
    assert not any(parameter.requires_grad for parameter in classifier.parameters())
    assert classifier.net.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in classifier.modules())

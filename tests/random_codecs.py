"""Random-weight learned codecs whose rates mean something, shared by the codec tests.

A freshly initialised model puts almost every latent at zero, so its bitstream
measures only coder overhead. ``calibrated`` spreads the latents to a chosen
standard deviation and makes the entropy model predict scales of that size.
"""

from __future__ import annotations

import torch
from compressai.models import CompressionModel
from torch import nn

from hac.codecs.compressai.codec import latent_kind

__all__ = ["Gain", "calibrated", "images"]


class Gain(nn.Module):
    """Multiply by a constant."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def calibrated(model: CompressionModel, x: torch.Tensor, spread: float = 4.0, keep_layout: bool = True) -> CompressionModel:
    """Spread a random model's latents on ``x`` to std ``spread`` and predict scales of about that size.

    With ``keep_layout`` the gain is folded into the last analysis / first synthesis
    convolution where possible, so the state dict keeps CompressAI's key layout;
    otherwise (or when that is impossible) ``Gain`` modules wrap ``g_a`` and ``g_s``.
    """
    with torch.no_grad():
        gain = spread / model.g_a(x).std().item()
        last, first = model.g_a[-1], model.g_s[0]
        if keep_layout and isinstance(last, nn.Conv2d) and isinstance(first, nn.ConvTranspose2d):
            last.weight.mul_(gain)
            last.bias.mul_(gain)
            first.weight.div_(gain)
        else:
            model.g_a = nn.Sequential(model.g_a, Gain(gain))
            model.g_s = nn.Sequential(Gain(1 / gain), model.g_s)
        kind = latent_kind(model)
        # the convolution whose first M output channels hold the scales
        layers = {"scale": lambda: model.h_s[-2], "mean-scale": lambda: model.h_s[-1],
                  "autoregressive": lambda: model.entropy_parameters[-1]}  # fmt: skip
        if kind in layers:
            layer = layers[kind]()
            layer.weight.mul_(0.01)
            layer.bias.zero_()
            layer.bias[: model.M].fill_(spread)
    return model.eval()


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded uniform random images of ``shape``."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))

"""Sanity checks that make gradient masking visible.

A defence that merely breaks gradients looks robust to a gradient attack and
is not (Athalye et al., ICML 2018). These checks say when that is happening:

- :func:`gradient_health`: the fraction of input-gradient entries of the
  attacker's loss that are zero, or NaN/inf; a gradient that does not exist
  at all (the graph was cut, e.g. a codec run under ``torch.no_grad``) counts
  as fully masked.
- :func:`loss_rise`: whether the attack actually raised the loss it
  maximises, on the attacked model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GradientHealth", "gradient_health", "loss_rise", "MASKED_ZERO_FRACTION"]

MASKED_ZERO_FRACTION = 0.5
"""More than this fraction of exactly-zero input gradients is reported as masked."""


@dataclass
class GradientHealth:
    """Input-gradient statistics of the cross-entropy loss through a model."""

    zero_fraction: float
    nonfinite_fraction: float
    mean_abs: float
    graph_cut: bool

    @property
    def masked(self) -> bool:
        return self.graph_cut or self.nonfinite_fraction > 0 or self.zero_fraction > MASKED_ZERO_FRACTION

    def explain(self) -> str:
        if self.graph_cut:
            return "no gradient reaches the input (the graph is cut, e.g. a codec run without autograd)"
        if self.nonfinite_fraction > 0:
            return f"{self.nonfinite_fraction:.1%} of input gradients are NaN/inf"
        if self.zero_fraction > MASKED_ZERO_FRACTION:
            return f"{self.zero_fraction:.1%} of input gradients are exactly zero"
        return f"gradients look healthy (mean |g| = {self.mean_abs:.2e}, {self.zero_fraction:.1%} zero)"


def gradient_health(model: nn.Module, x: Tensor, y: Tensor) -> GradientHealth:
    """Gradient of the cross-entropy loss of ``model`` w.r.t. ``x`` (N, 3, H, W) in [0, 1], labels ``y`` (N,)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        if not loss.requires_grad:
            return GradientHealth(1.0, 0.0, 0.0, graph_cut=True)
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        return GradientHealth(1.0, 0.0, 0.0, graph_cut=True)
    finite = torch.isfinite(grad)
    return GradientHealth(
        zero_fraction=(grad == 0).float().mean().item(),
        nonfinite_fraction=(~finite).float().mean().item(),
        mean_abs=grad[finite].abs().mean().item() if finite.any() else 0.0,
        graph_cut=False,
    )


@torch.no_grad()
def loss_rise(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean cross-entropy on the clean and on the adversarial batch, through ``model``."""
    return F.cross_entropy(model(x), y).item(), F.cross_entropy(model(x_adv), y).item()

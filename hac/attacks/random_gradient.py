"""The random-gradient control: an attack that follows random directions instead of the gradient.

If PGD with random directions of the same norm as the real input gradient does
about as well as PGD with the real gradient, the gradient carries no
information and a gradient attack's failure says nothing about robustness
(Carlini et al., "On Evaluating Adversarial Robustness", 2019, section 5).

:class:`RandomGradient` wraps any model: its forward pass is the model's, its
backward pass hands the input a Gaussian direction rescaled, per image, to the
L2 norm of the real gradient (a zero gradient gets an unscaled one). Any gradient attack run against the wrapper is
that attack's random-direction control.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RandomGradient"]


class _RandomDirection(torch.autograd.Function):
    """Identity forward; backward: a random direction with the incoming gradient's per-image L2 norm."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D401
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        direction = torch.randn_like(grad)
        wanted = grad.flatten(1).norm(dim=1)
        # a zero gradient (fully masked) gets a unit-free random direction, so the control still moves
        scale = torch.where(wanted > 0, wanted / direction.flatten(1).norm(dim=1).clamp_min(1e-12), torch.ones_like(wanted))
        return direction * scale.view(-1, *([1] * (grad.dim() - 1)))


class RandomGradient(nn.Module):
    """``model`` with its input gradient replaced by a random direction of the same norm.

    Input (N, C, H, W) in [0, 1]; output ``model``'s logits unchanged.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_RandomDirection.apply(x) if x.requires_grad else x)

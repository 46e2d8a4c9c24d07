"""Threat models: what the attacker knows about the purifier, as modules to attack.

Every threat model turns (purifier, classifier) into the model the attack
sees; the attack itself never special-cases a defence.

- ``oblivious``: the attacker sees the classifier alone; the defence is applied
  afterwards. A grey-box baseline, never a robustness claim.
- ``bpda``: forward through the real codecs, backward as the identity
  (Backward Pass Differentiable Approximation, Athalye et al., ICML 2018).
- ``straight-through``: forward through the real codecs, backward through each
  codec's differentiable surrogate (straight-through rounding of latents for
  learned codecs, a differentiable JPEG for JPEG); identity where a codec has none.
- ``eot``: ``straight-through`` averaged over ``eot_samples`` draws of a
  stochastic purifier (Expectation over Transformation, Athalye et al. 2018).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..codecs import Codec
from ..core.choices import Choice
from ..defence.purify import Purifier

__all__ = [
    "ThreatModel",
    "attacked_model",
    "BPDAPurifier",
    "StraightThroughPurifier",
    "ExpectationOverTransformation",
]


class ThreatModel(Choice):
    """What the attacker knows about the purifier (see the module docstring); ``ThreatModel("bpda")`` parses."""

    OBLIVIOUS = "oblivious"
    BPDA = "bpda"
    STRAIGHT_THROUGH = "straight-through"
    EOT = "eot"

    @classmethod
    def unknown(cls, value: object) -> str:
        return f"unknown threat model {value!r}; valid choices: {', '.join(cls.values())}"


def _real(codec: Codec, x: Tensor) -> Tensor:
    with torch.no_grad():
        return codec(x.detach()).x_hat


class _BackwardAsIdentity(torch.autograd.Function):
    """y = real(x) in the forward pass; dy/dx = I in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # noqa: D401
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def _with_surrogate_gradient(real: Tensor, approx: Tensor) -> Tensor:
    """The value of ``real`` with the gradient of ``approx``."""
    return real + (approx - approx.detach())


class _ChainedPurifier(nn.Module):
    """Runs a purifier's chain for its rounds, one codec at a time, through ``step``."""

    def __init__(self, purifier: Purifier, step: Callable[[Codec, Tensor], Tensor]) -> None:
        super().__init__()
        self.purifier = purifier
        self._step = step

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.purifier.rounds):
            for codec in self.purifier.codecs:
                x = self._step(codec, x)
        return x


class BPDAPurifier(_ChainedPurifier):
    """Real codecs forward, identity backward (per codec, every round)."""

    def __init__(self, purifier: Purifier) -> None:
        super().__init__(purifier, lambda codec, x: _BackwardAsIdentity.apply(x, _real(codec, x)))


class StraightThroughPurifier(_ChainedPurifier):
    """Real codecs forward, each codec's differentiable surrogate backward (identity if it has none)."""

    def __init__(self, purifier: Purifier) -> None:
        def step(codec: Codec, x: Tensor) -> Tensor:
            real = _real(codec, x)
            if not codec.has_surrogate():
                return _BackwardAsIdentity.apply(x, real)
            return _with_surrogate_gradient(real, codec.surrogate(x))

        super().__init__(purifier, step)


class ExpectationOverTransformation(nn.Module):
    """Mean logits of ``model`` over ``samples`` forward passes (each draws the purifier's randomness anew)."""

    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"eot_samples must be a positive integer, got {samples!r}")
        self.model = model
        self.samples = samples

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


def attacked_model(classifier: nn.Module, purifier: Purifier | None, threat: ThreatModel | str, eot_samples: int = 8) -> nn.Module:
    """The model an attacker under ``threat`` computes gradients through.

    Args:
        classifier: [0, 1] images -> logits.
        purifier: the defence, or ``None`` for an undefended classifier.
        threat: a :class:`ThreatModel` (or its value).
        eot_samples: draws per step for ``eot``.

    Returns:
        ``classifier`` (oblivious, or no purifier) or
        ``nn.Sequential(purifier_in_threat_mode, classifier)`` (wrapped in EOT for ``eot``).
    """
    threat = ThreatModel(threat)
    if purifier is None or threat is ThreatModel.OBLIVIOUS:
        return classifier
    if threat is ThreatModel.BPDA:
        return nn.Sequential(BPDAPurifier(purifier), classifier).eval()
    model = nn.Sequential(StraightThroughPurifier(purifier), classifier)
    if threat is ThreatModel.EOT:
        stochastic = any(codec.stochastic for codec in purifier.codecs)
        model = ExpectationOverTransformation(model, eot_samples if stochastic else 1)
    # New modules start in training mode; attacks restore the mode they found, and a
    # classifier left in training mode would update its batch-norm statistics.
    return model.eval()

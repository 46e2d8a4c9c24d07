"""How each step of the suite attacks: the model it differentiates (or queries) and the attack call.

:class:`StepAttacker` turns a :class:`~hac.audit.suite.Step` into adversarial
images: the threat model picks what the attacker sees (the bare classifier,
the purifier under BPDA / straight-through / EOT, the learned surrogate, or
the real purifier for queries only), a ``control`` step gets random gradient
directions, and ``acm`` attacks the first codec itself. Every adversarial image
is on the 8-bit grid and within the step's eps.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attacks.classifier_attacks import create_attack, quantize_adversarial
from ..attacks.codec_attacks import CodecAttackSettings, attack_codec, check_objective
from ..attacks.learned_surrogate import LearnedSurrogatePurifier, SurrogateCache, surrogate_key, train_surrogate
from ..attacks.random_gradient import RandomGradient
from ..attacks.threats import attacked_model
from ..core.cancel import StopCheck
from ..defence.purify import Purifier
from ..evaluation.runner import unit_seed
from .suite import AuditConfig, Step

__all__ = ["StepAttacker", "acm_possible", "SURROGATE_RADIUS"]

SURROGATE_RADIUS = 4
"""The learned surrogate is trained on noise up to this many times the audit's eps around the images."""


def acm_possible(purifier: Purifier | None) -> bool:
    """Whether the purifier's first codec can be attacked for distortion with gradients."""
    if purifier is None:
        return False
    try:
        check_objective(purifier.codecs[0], "distortion")
    except ValueError:
        return False
    return True


class StepAttacker:
    """Runs steps against one defence.

    Args:
        config: the audit settings (eps, EOT samples, surrogate training steps, seed).
        classifier: [0, 1] images -> logits.
        purifier: the defence, or ``None`` (the bare classifier).
        surrogate_images: called once, when the learned surrogate must be trained: the images
            (N, 3, H, W) in [0, 1] whose neighbourhood it learns.
        cache: where trained surrogates are kept.
        stop: optional check run at every attack step and surrogate training step (see :mod:`hac.core.cancel`).
    """

    def __init__(self, config: AuditConfig, classifier: nn.Module, purifier: Purifier | None,
                 surrogate_images: Callable[[], Tensor], cache: SurrogateCache, stop: StopCheck | None = None) -> None:
        self.config, self.classifier, self.purifier = config, classifier, purifier
        self.surrogate_images, self.cache, self.stop = surrogate_images, cache, stop
        self.surrogate_net = None
        self.surrogate_stats: dict | None = None

    @torch.no_grad()
    def correct(self, x: Tensor, y: Tensor) -> Tensor:
        """(N,) bool: the defence (purifier, then classifier) classifies ``x`` as ``y``."""
        return self.classifier(x if self.purifier is None else self.purifier(x)).argmax(1) == y

    def _surrogate(self) -> nn.Module:
        if self.surrogate_net is None:
            radius = min(1.0, SURROGATE_RADIUS * self.config.eps)
            key = surrogate_key(self.purifier, radius, self.config.surrogate_steps)
            net = self.cache.load(key)
            x = None
            if net is None:
                x = self.surrogate_images()
                net, stats = train_surrogate(self.purifier, x, radius, steps=self.config.surrogate_steps,
                                             seed=unit_seed(self.config.seed, "surrogate", 0), stop=self.stop)
                self.cache.save(key, net)
                self.surrogate_stats = {"key": key, "cached": False, "radius": radius, **stats}
            else:
                self.surrogate_stats = {"key": key, "cached": True, "radius": radius}
            device = next((p.device for p in self.purifier.parameters()), None) or (x.device if x is not None else "cpu")
            self.surrogate_net = net.to(device)
        return nn.Sequential(LearnedSurrogatePurifier(self.purifier, self.surrogate_net), self.classifier).eval()

    def model(self, step: Step) -> nn.Module | None:
        """What ``step``'s attack runs against (``None`` for ``acm``, which attacks the codec)."""
        threat = step.threat
        if step.attack == "acm":
            return None
        if threat in ("oblivious", "white-box", "transfer") or self.purifier is None:
            model = self.classifier
        elif threat == "learned-surrogate":
            model = self._surrogate()
        elif threat == "real":
            model = nn.Sequential(self.purifier, self.classifier).eval()
        else:
            model = attacked_model(self.classifier, self.purifier, threat, self.config.eot_samples)
        return RandomGradient(model).eval() if step.family == "control" else model

    def attack(self, step: Step, model: nn.Module | None, x: Tensor, y: Tensor, seed: int) -> Tensor:
        """Adversarial images for ``x`` (N, 3, H, W), 8-bit valued in [0, 1], labels ``y`` (N,)."""
        if step.attack == "acm":
            settings = CodecAttackSettings("distortion", step.eps, "pgd", step.params["steps"])
            return attack_codec(self.purifier.codecs[0], x, settings, torch.Generator().manual_seed(seed), self.stop)
        params = dict(step.params)
        if step.attack in ("apgd", "square"):
            params["seed"] = seed % (2**31)
        return quantize_adversarial(x, create_attack(step.attack, model, stop=self.stop, **params)(x, y))

"""One image batch through the whole story: attack, purify, classify, measure.

:func:`attack_and_purify` is what the ``attack`` CLI command and the app's
"Attack & purify" tab call. The batch evaluation reuses its pieces but
schedules them itself, to share work across a grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..attacks.classifier_attacks import create_attack, quantize_adversarial
from ..models.classifiers import Classifier
from ..attacks.diagnostics import GradientHealth, gradient_health, loss_rise
from ..core.images import to_8bit
from ..core.cancel import StopCheck
from ..core.metrics import l2, linf, psnr
from .purify import Purifier, PurifyResult
from ..attacks.threats import ThreatModel, attacked_model

__all__ = ["DefenceReport", "attack_and_purify"]

logger = logging.getLogger(__name__)


@dataclass
class DefenceReport:
    """Everything one attack-and-purify run produced, per image where it makes sense.

    Images are (N, 3, H, W) in [0, 1] on the 8-bit grid; ``labels`` are the
    labels attacked (true labels when given, else the clean predictions).
    """

    attack: str
    eps: float | None
    threat: str
    chain: str
    rounds: int
    labels: Tensor
    clean: Tensor
    adversarial: Tensor
    purified: PurifyResult
    purified_clean: PurifyResult
    top5: dict[str, list]  # "clean", "adversarial", "purified", "purified_clean" -> per image [(index, name, prob)]
    linf: Tensor
    l2: Tensor
    adversarial_psnr: Tensor
    gradients: GradientHealth
    loss_clean: float
    loss_adversarial: float
    warnings: list[str] = field(default_factory=list)

    def correct(self, key: str) -> Tensor:
        """(N,) bool: top-1 of ``key`` equals the attacked label."""
        return torch.tensor([rows[0][0] == int(label) for rows, label in zip(self.top5[key], self.labels)])


def attack_and_purify(
    x: Tensor,
    classifier: Classifier,
    attack: str,
    chain,
    rounds: int = 1,
    threat: ThreatModel | str = ThreatModel.BPDA,
    labels: Tensor | None = None,
    eot_samples: int = 8,
    stop: StopCheck | None = None,
) -> DefenceReport:
    """Attack ``x`` under ``threat``, then purify and classify clean, adversarial and purified images.

    Args:
        x: (N, 3, H, W) in [0, 1]; rounded to 8 bits first.
        classifier: the defended classifier.
        attack: attack spec, e.g. ``"pgd:eps=4/255,steps=10"``.
        chain: codec chain (see :func:`hac.defence.purify.build_chain`).
        rounds: purification rounds.
        threat: a :class:`hac.attacks.threats.ThreatModel` (or its value).
        labels: (N,) true labels; default: the clean top-1 predictions.
        eot_samples: samples per step for the ``eot`` threat model.
        stop: optional check run at every attack step and between stages; it stops the
            work by raising :class:`hac.core.cancel.Cancelled`.
    """
    threat = ThreatModel(threat)
    purifier = Purifier(chain, rounds).to(x.device)
    x = to_8bit(x)
    if labels is None:
        with torch.no_grad():
            labels = classifier(x).argmax(1)
    model = attacked_model(classifier, purifier, threat, eot_samples)
    built = create_attack(attack, model, stop=stop)
    warnings = []
    health = gradient_health(model, x, labels)
    if health.masked and not built.entry.gradient_free:
        warnings.append(f"masked gradients under threat model {threat.value!r}: {health.explain()}; "
                        "robustness measured with this attack is not trustworthy")
    x_adv = quantize_adversarial(x, built(x, labels))
    loss_clean, loss_adv = loss_rise(model, x, x_adv, labels)
    if loss_adv <= loss_clean:
        warnings.append(f"the attack did not raise the loss on the attacked model ({loss_clean:.3f} -> {loss_adv:.3f}); "
                        "check the threat model and step size")
    for message in warnings:
        logger.warning(message)
    if stop is not None:
        stop()
    purified = purifier.run(x_adv)
    purified_clean = purifier.run(x)
    top5 = {key: classifier.top_k(images) for key, images in
            (("clean", x), ("adversarial", x_adv), ("purified", purified.x), ("purified_clean", purified_clean.x))}
    return DefenceReport(
        attack=built.describe(), eps=built.params.get("eps"), threat=threat, chain="+".join(c.describe() for c in purifier.codecs), rounds=rounds,
        labels=labels, clean=x, adversarial=x_adv, purified=purified, purified_clean=purified_clean, top5=top5,
        linf=linf(x_adv - x), l2=l2(x_adv - x), adversarial_psnr=psnr(x_adv, x), gradients=health,
        loss_clean=loss_clean, loss_adversarial=loss_adv, warnings=warnings,
    )

"""Attacks and threat models on the real EfficientNet-Lite0 and real photos."""

from __future__ import annotations

import pytest
import torch

from hac.attacks.classifier_attacks import attack_names, create_attack, quantize_adversarial
from hac.attacks.diagnostics import gradient_health
from hac.core.images import to_8bit
from hac.defence.pipeline import attack_and_purify
from hac.defence.purify import Purifier
from hac.attacks.threats import ThreatModel, attacked_model

EPS = 4 / 255


def _labels(classifier, photos):
    """The clean top-1 of each photo (each is one of its accepted classes; see the classifier tests)."""
    with torch.no_grad():
        return classifier(to_8bit(photos[0])).argmax(1)


def _accepted(predictions: torch.Tensor, photos) -> int:
    return sum(int(p) in ok for p, ok in zip(predictions, photos[1]))


@pytest.fixture(scope="module")
def reports(classifier, photos):
    """PGD-10 at 4/255 against JPEG q=25 under each gradient threat model (seeded)."""
    out = {}
    for threat in ("oblivious", "bpda", "straight-through"):
        torch.manual_seed(0)
        out[threat] = attack_and_purify(photos[0], classifier, "pgd:eps=4/255,steps=10", "jpeg:q=25", 1, threat,
                                        labels=_labels(classifier, photos))
    return out


@pytest.mark.slow
def test_pgd_flips_every_photo_and_fgsm_no_more(classifier, photos, reports):
    adversarial = reports["oblivious"].adversarial
    x, labels = to_8bit(photos[0]), _labels(classifier, photos)
    fgsm = quantize_adversarial(x, create_attack("fgsm:eps=4/255", classifier)(x, labels))
    pgd_flipped = (classifier(adversarial).argmax(1) != labels).sum()
    fgsm_flipped = (classifier(fgsm).argmax(1) != labels).sum()
    assert fgsm_flipped <= pgd_flipped == len(labels)


def _top1(report, key):
    return torch.tensor([rows[0][0] for rows in report.top5[key]])


@pytest.mark.slow
def test_jpeg_restores_most_oblivious_examples(photos, reports):
    report = reports["oblivious"]
    fooled = [int(p) not in ok for p, ok in zip(_top1(report, "adversarial"), photos[1])]
    restored = [int(p) in ok for p, ok in zip(_top1(report, "purified"), photos[1])]
    assert sum(fooled) >= 4
    assert sum(r for r, f in zip(restored, fooled) if f) > sum(fooled) / 2


@pytest.mark.slow
def test_adaptive_attacks_are_at_least_as_strong(photos, reports):
    def survived(threat):
        return _accepted(_top1(reports[threat], "purified"), photos)

    assert survived("bpda") <= survived("oblivious")
    assert survived("straight-through") <= survived("oblivious")
    for report in reports.values():
        assert report.loss_adversarial > report.loss_clean and not report.warnings


@pytest.mark.slow
def test_budget_is_respected_exactly(photos, reports):
    for report in reports.values():
        delta = report.adversarial - report.clean
        assert delta.abs().max() <= EPS + 1e-6
        assert report.adversarial.min() >= 0 and report.adversarial.max() <= 1
        # on the 8-bit grid: what a PNG of the adversarial image holds
        assert torch.equal(report.adversarial, to_8bit(report.adversarial))


def test_quantize_adversarial_keeps_budget_and_grid():
    torch.manual_seed(0)
    x = to_8bit(torch.rand(2, 3, 8, 8))
    x_adv = (x + (torch.rand_like(x) * 2 - 1) * EPS).clamp(0, 1)
    q = quantize_adversarial(x, x_adv)
    assert (q - x).abs().max() <= EPS + 1e-6 and torch.equal(q, to_8bit(q))


def _learned_codec():
    from hac.codecs.compressai.zoo import random_model
    from hac.codecs.compressai.codec import CompressAICodec

    torch.manual_seed(0)
    return CompressAICodec(random_model("bmshj2018-hyperprior", 1))


def test_straight_through_reaches_the_pixels_but_a_plain_purifier_masks(classifier):
    purifier = Purifier([_learned_codec()])
    x = torch.rand(1, 3, 64, 64)
    y = torch.tensor([0])
    straight = gradient_health(attacked_model(classifier, purifier, "straight-through"), x, y)
    assert not straight.masked and straight.mean_abs > 0
    plain = gradient_health(torch.nn.Sequential(purifier, classifier).eval(), x, y)
    assert plain.masked and plain.graph_cut
    assert "no gradient reaches the input" in plain.explain()


def test_masked_gradient_warning_is_reported(classifier, monkeypatch):
    import hac.defence.pipeline as pipeline

    plain = lambda classifier, purifier, threat, eot: torch.nn.Sequential(purifier, classifier).eval()  # noqa: E731
    monkeypatch.setattr(pipeline, "attacked_model", plain)
    with pytest.raises(RuntimeError):
        # torchattacks itself cannot differentiate a cut graph; the diagnostic runs first and says why
        pipeline.attack_and_purify(torch.rand(1, 3, 64, 64), classifier, "fgsm", [_learned_codec()], threat="bpda")


def test_attacks_do_not_change_the_classifier(classifier, photos):
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    model = attacked_model(classifier, Purifier("jpeg:q=50"), "bpda")
    create_attack("pgd:steps=1", model)(to_8bit(photos[0][:1]), torch.tensor([0]))
    assert not classifier.training
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pgd:eps=-0.1", "eps must be a positive number"),
        ("pgd:eps=0", "eps must be a positive number"),
        ("pgd:steps=0", "steps must be a positive integer"),
        ("pgd:steps=2.5", "steps must be a positive integer"),
        ("pgd:alpha=-1", "alpha .step size. must be a positive number"),
        ("pgd:epsilon=0.1", "attack 'pgd' has no parameter.s. epsilon; valid parameters: alpha, eps"),
        ("fgsn", "unknown attack 'fgsn'; valid choices: .*fgsm"),
    ],
)
def test_bad_attack_settings(classifier, spec, message):
    with pytest.raises(ValueError, match=message):
        create_attack(spec, classifier)


def test_unknown_threat(classifier):
    with pytest.raises(ValueError, match="unknown threat model 'whitebox'; valid choices: oblivious, bpda"):
        attacked_model(classifier, Purifier("jpeg"), "whitebox")


def test_registry_has_the_promised_attacks():
    assert {"fgsm", "bim", "pgd", "pgd-l2", "cw", "deepfool", "apgd", "autoattack", "square"} <= set(attack_names())
    assert ThreatModel.values() == ("oblivious", "bpda", "straight-through", "eot")

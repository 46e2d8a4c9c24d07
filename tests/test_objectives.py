"""hac.training.objectives: each kind of run gets its own loss object, chosen once from the config."""

from __future__ import annotations

import pytest
import torch

from hac.training import TrainConfig, build_model
from hac.training.objectives import (
    OBJECTIVES,
    Adversarial,
    DecoderOnly,
    RateDistortion,
    Realism,
    create_objective,
)


def _objective(architecture: str = "mbt2018-mean", **overrides):
    config = TrainConfig(**{"data": "", "run_dir": "", "architecture": architecture, "N": 16, "M": 16, "crop": 64, **overrides})
    config.validate()
    model = build_model(architecture, config.N, config.M)
    return create_objective(config, model, torch.device("cpu"), torch.Generator().manual_seed(0)), model


@pytest.mark.parametrize(
    ("overrides", "kind", "betas", "extra_state"),
    [
        ({}, RateDistortion, (0.9, 0.999), set()),
        ({"adversarial": True, "adv_steps": 1}, Adversarial, (0.9, 0.999), set()),
        ({"realism_weight": 0.5, "init_from": "x.safetensors"}, Realism, (0.5, 0.999), {"discriminator", "disc_optimizer"}),
        ({"decoder_only": True, "init_from": "x.safetensors"}, DecoderOnly, (0.9, 0.999), set()),
    ],
)
def test_the_config_picks_one_objective_with_its_parameters_and_state(overrides, kind, betas, extra_state):
    objective, model = _objective(**overrides)
    assert type(objective) is kind and objective.adam_betas == betas and set(objective.state()) == extra_state
    main, aux = objective.parameters()
    if kind in (Realism, DecoderOnly):  # the decoder alone learns; the rest is frozen
        assert aux == [] and {id(p) for p in main} == {id(p) for p in model.g_s.parameters()}
        assert not any(p.requires_grad for name, p in model.named_parameters() if not name.startswith("g_s."))
    else:
        assert aux and all(p.requires_grad for p in main)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    terms = objective.terms(x)
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"]) and "mse" in terms
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in main)


def test_the_plain_objective_is_last_and_applies_to_every_config():
    assert OBJECTIVES[-1] is RateDistortion and RateDistortion.applies(TrainConfig(data="", run_dir=""))
    objective, _ = _objective("comdefend", crop=32)
    assert type(objective) is RateDistortion and objective.parameters()[1] == []


@pytest.mark.parametrize("flag", [{"adversarial": True}, {"purify_against": "efficientnet-lite0"}])
def test_attacks_during_training_need_a_compressai_codec(flag):
    with pytest.raises(ValueError, match="fine-tunes CompressAI codecs; comdefend has its own loss"):
        _objective("comdefend", crop=32, **flag)

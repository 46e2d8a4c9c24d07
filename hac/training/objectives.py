"""What a training step minimises: one :class:`TrainingObjective` per kind of run, chosen once from the config.

=======================  ==========================================================  ======================
objective                loss of one batch ``x`` (N, 3, H, W) in [0, 1]              what learns
=======================  ==========================================================  ======================
:class:`RateDistortion`  the architecture's loss (λ·255²·MSE + bpp; ComDefend's)     the whole codec
:class:`Adversarial`     rate–distortion of attacked inputs against the clean batch  the whole codec
:class:`PurifyAgainst`   the same, inputs attacked on a classifier (+ its logits)    the whole codec
:class:`Realism`         λ·255²·MSE + GAN + feature matching, real latents           the decoder ``g_s``
:class:`DecoderOnly`     λ·255²·MSE of the decoder on the real latents               the decoder ``g_s``
=======================  ==========================================================  ======================

:func:`create_objective` picks the first of :data:`OBJECTIVES` whose ``applies(config)`` holds
(:meth:`TrainConfig.validate <hac.training.config.TrainConfig.validate>` allows at most one).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from .adversarial import (
    AdversarialTrainingSettings,
    adversarial_terms,
    attacked_rows,
    classifier_attacked_batch,
    logit_distance,
)
from .architectures import ARCHITECTURES, Architecture, rd_loss, split_parameters
from .config import TrainConfig
from .decoder_tuning import decoder_terms, freeze_all_but_decoder
from .realism import PatchDiscriminator, realism_step

__all__ = [
    "TrainingObjective",
    "RateDistortion",
    "Adversarial",
    "PurifyAgainst",
    "Realism",
    "DecoderOnly",
    "OBJECTIVES",
    "create_objective",
]


class TrainingObjective(ABC):
    """The loss of one kind of training run, built for one model.

    Attributes:
        name: how the log names the run's objective.
        adam_betas: the main optimizer's Adam betas.
    """

    name: ClassVar[str]
    adam_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @staticmethod
    @abstractmethod
    def applies(config: TrainConfig) -> bool:
        """Whether ``config`` describes a run of this objective."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: TrainConfig, model: nn.Module, device: torch.device,
                    generator: torch.Generator) -> "TrainingObjective":
        """The objective of the run ``config`` for ``model`` (``ValueError`` if the architecture does not fit)."""

    def parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """The main optimizer's parameters and the auxiliary optimizer's (the entropy bottleneck's ``quantiles``)."""
        return split_parameters(self.model)

    def state(self) -> dict[str, object]:
        """What a checkpoint must hold besides the model and its optimizers (e.g. a discriminator)."""
        return {}

    @abstractmethod
    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """The loss terms of the clean batch ``x`` (N, 3, H, W) in [0, 1]: ``loss`` (backpropagated), ``mse``, ..."""


def _compressai_only(config: TrainConfig, flag: str) -> Architecture:
    arch = ARCHITECTURES.get(config.architecture)
    if arch.loss is not None:
        raise ValueError(f"{flag} fine-tunes CompressAI codecs; {config.architecture} has its own loss")
    return arch


class RateDistortion(TrainingObjective):
    """The architecture's own loss (:meth:`Architecture.loss_terms`): CompressAI's rate–distortion loss or ComDefend's."""

    name = "rate-distortion"

    def __init__(self, model: nn.Module, architecture: Architecture, lmbda: float) -> None:
        super().__init__(model)
        self.architecture, self.lmbda = architecture, lmbda

    @staticmethod
    def applies(config: TrainConfig) -> bool:
        return True

    @classmethod
    def from_config(cls, config, model, device, generator):
        return cls(model, ARCHITECTURES.get(config.architecture), config.lmbda)

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        return self.architecture.loss_terms(self.model, x, self.lmbda)


class Adversarial(TrainingObjective):
    """Attacked inputs, clean targets (:func:`hac.training.adversarial.adversarial_terms`)."""

    name = "adversarial"

    def __init__(self, model: nn.Module, settings: AdversarialTrainingSettings, lmbda: float,
                 rate_gap_weight: float, latent_weight: float, generator: torch.Generator) -> None:
        super().__init__(model)
        self.settings, self.lmbda, self.generator = settings, lmbda, generator
        self.rate_gap_weight, self.latent_weight = rate_gap_weight, latent_weight

    @staticmethod
    def applies(config: TrainConfig) -> bool:
        return config.adversarial

    @classmethod
    def from_config(cls, config, model, device, generator):
        _compressai_only(config, "--adversarial")
        settings = AdversarialTrainingSettings(config.adv_eps, config.adv_steps, config.adv_objective, config.adv_fraction)
        if config.adv_rate_gap_weight and not attacked_rows(settings, config.batch_size, "rate").numel():
            raise ValueError(f"--adv-rate-gap-weight needs rate-attacked images; --adv-objective {config.adv_objective} "
                             f"with --adv-fraction {config.adv_fraction} of a batch of {config.batch_size} has none")
        return cls(model, settings, config.lmbda, config.adv_rate_gap_weight, config.adv_latent_weight, generator)

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        return adversarial_terms(self.model, x, self.settings, self.lmbda, self.rate_gap_weight,
                                 self.latent_weight, self.generator)


class PurifyAgainst(TrainingObjective):
    """Inputs attacked on a classifier, clean targets, plus HGD's logit distance where weighted
    (:func:`hac.training.adversarial.classifier_attacked_batch`, :func:`~hac.training.adversarial.logit_distance`)."""

    name = "purify-against"

    def __init__(self, model: nn.Module, classifier: nn.Module, attack, fraction: float, lmbda: float,
                 logit_weight: float) -> None:
        super().__init__(model)
        self.classifier, self.lmbda, self.logit_weight = classifier, lmbda, logit_weight
        self.attacked = functools.partial(classifier_attacked_batch, attack, classifier, fraction=fraction)

    @staticmethod
    def applies(config: TrainConfig) -> bool:
        return bool(config.purify_against)

    @classmethod
    def from_config(cls, config, model, device, generator):
        _compressai_only(config, "--purify-against")
        from ..attacks.classifier_attacks import create_attack
        from ..models.classifiers import create_classifier  # timm: imported only for these runs

        classifier = create_classifier(config.purify_against, device=device)
        classifier.requires_grad_(False)
        attack = create_attack(config.purify_attack, classifier)
        return cls(model, classifier, attack, config.purify_fraction, config.lmbda, config.purify_logit_weight)

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        out = self.model(self.attacked(x))
        terms = rd_loss(out, x, self.lmbda)
        if self.logit_weight:
            terms["logits"] = logit_distance(self.classifier, out["x_hat"], x)
            terms["loss"] = terms["loss"] + self.logit_weight * terms["logits"]
        return terms


class _DecoderAlone(TrainingObjective):
    """Only ``g_s`` learns: the encoder and entropy models are frozen, every bitstream stays the same."""

    def parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return freeze_all_but_decoder(self.model), []


class Realism(_DecoderAlone):
    """The decoder against a patch discriminator (:func:`hac.training.realism.realism_step`); GAN practice: Adam β1 0.5."""

    name = "realism"
    adam_betas = (0.5, 0.999)

    def __init__(self, model: nn.Module, discriminator: nn.Module, disc_optimizer: torch.optim.Optimizer,
                 lmbda: float, weight: float, feature_weight: float) -> None:
        super().__init__(model)
        self.discriminator, self.disc_optimizer = discriminator, disc_optimizer
        self.lmbda, self.weight, self.feature_weight = lmbda, weight, feature_weight

    @staticmethod
    def applies(config: TrainConfig) -> bool:
        return bool(config.realism_weight)

    @classmethod
    def from_config(cls, config, model, device, generator):
        discriminator = PatchDiscriminator(config.disc_width).to(device, memory_format=torch.channels_last)
        disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.disc_lr, betas=(0.5, 0.999))
        return cls(model, discriminator, disc_optimizer, config.lmbda, config.realism_weight, config.realism_feature_weight)

    def state(self) -> dict[str, object]:
        return {"discriminator": self.discriminator, "disc_optimizer": self.disc_optimizer}

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        return realism_step(self.model, self.discriminator, self.disc_optimizer, x, self.lmbda, self.weight,
                            self.feature_weight)


class DecoderOnly(_DecoderAlone):
    """The decoder alone on the real latents of clean crops, pixels only (:func:`hac.training.decoder_tuning.decoder_terms`)."""

    name = "decoder-only"

    def __init__(self, model: nn.Module, lmbda: float) -> None:
        super().__init__(model)
        self.lmbda = lmbda

    @staticmethod
    def applies(config: TrainConfig) -> bool:
        return config.decoder_only

    @classmethod
    def from_config(cls, config, model, device, generator):
        return cls(model, config.lmbda)

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        return decoder_terms(self.model, x, self.lmbda)


OBJECTIVES: tuple[type[TrainingObjective], ...] = (Adversarial, PurifyAgainst, Realism, DecoderOnly, RateDistortion)
"""In the order :func:`create_objective` asks them; :class:`RateDistortion`, the plain run, applies to every config."""


def create_objective(config: TrainConfig, model: nn.Module, device: torch.device,
                     generator: torch.Generator) -> TrainingObjective:
    """The objective of the run ``config`` for ``model`` on ``device`` (``generator`` draws its random attacks' starts).

    Raises:
        ValueError: the objective does not fit the architecture (e.g. ``--adversarial`` with ComDefend).
    """
    kind = next(objective for objective in OBJECTIVES if objective.applies(config))
    return kind.from_config(config, model, device, generator)

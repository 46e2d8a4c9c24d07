"""The description of a training run (:class:`TrainConfig`) and its learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .architectures import ARCHITECTURES

__all__ = ["TrainConfig", "lr_factor", "RECORDS_FOLDER"]

RECORDS_FOLDER = "training-state"
"""The repository folder of training runs' records (config, metrics, log); their checkpoints live elsewhere."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    Attributes:
        data: image folder for training (recursive jpg/jpeg/png).
        run_dir: folder for checkpoints, log and metrics, outside git (e.g. ``runs/<run>``; not under
            ``training-state/``, which holds the records that ``hac train pack`` copies there).
        architecture: key of :data:`~hac.training.architectures.ARCHITECTURES`.
        N, M: channel widths of the CompressAI model.
        lmbda: rate–distortion trade-off λ (loss = λ·255²·MSE + bpp).
        quality: rate-point label (q1..q3), used by :func:`~hac.training.export.export`.
        crop, batch_size: random crop side (a multiple of 64) and batch size.
        steps: total optimiser steps of the run (may be raised on resume).
        lr, aux_lr: Adam learning rates of the main and auxiliary optimizers.
        warmup_steps: linear LR warm-up from 0.
        lr_schedule: ``"step"`` (×``lr_decay_factor`` from ``lr_decay_at``·steps),
            ``"cosine"`` (to ``lr_decay_factor``·lr at ``steps``) or ``"constant"``.
        clip_max_norm: gradient-norm clipping of the main loss (0 disables).
        log_every, checkpoint_every, snapshot_every, eval_every: cadences in steps (0 disables).
        eval_dir: folder of evaluation images (e.g. Kodak), coded for real.
        eval_images: evaluate on the first K images only (``None``: all).
        seed: seeds initialisation, quantisation noise and crops.
        threads: ``torch.set_num_threads`` (``None``: all cores).
        init_from: checkpoint or exported weights to start from (fine-tuning another λ).
        device: torch device to train on (``"cpu"``, ``"cuda"``); checkpoints are device-independent.
        adversarial, adv_eps, adv_steps, adv_objective, adv_fraction: adversarial fine-tuning of a
            CompressAI codec (:mod:`hac.training.adversarial`): ``adv_fraction`` of each batch is
            attacked by ``adv_steps``-step PGD within ``adv_eps`` on ``adv_objective``
            (``distortion``, ``rate`` or both, comma-separated); the loss compares with the clean batch.
        adv_rate_gap_weight, adv_latent_weight: add these weights times
            :func:`hac.training.adversarial.rate_gap` (the bits the rate-attacked images cost over their
            clean versions) and :func:`hac.training.adversarial.latent_shift` (how far the attacks move
            the latents, in predicted scales) to the loss (0: off).
        purify_against, purify_attack, purify_fraction, purify_logit_weight: fine-tune a CompressAI
            codec as a purifier for one classifier (:func:`hac.training.adversarial.classifier_attacked_batch`):
            ``purify_fraction`` of each batch is attacked on the classifier ``purify_against`` by
            ``purify_attack`` (an attack spec, labels = the classifier's own clean predictions); the
            loss compares the codec's output with the clean batch, in pixels and, with weight
            ``purify_logit_weight`` (0: off), in the classifier's logits
            (:func:`hac.training.adversarial.logit_distance`).
        exclude: a file of image paths relative to ``data``, one per line, left out of training
            (e.g. an evaluation's ``image_ids.txt``).
        realism_weight, realism_feature_weight, disc_lr, disc_width: realism fine-tuning of a mean-scale
            hyperprior's decoder (:mod:`hac.training.realism`; 0: off): the encoder and entropy models are
            frozen (the bitstreams stay the same), and ``g_s`` learns against a patch discriminator
            (Adam ``disc_lr``, first layer ``disc_width`` channels), with weight
            ``realism_weight`` on the GAN loss and ``realism_feature_weight`` on feature matching.
        decoder_only: fine-tune only ``g_s`` of a mean-scale hyperprior on the real quantised latents of clean
            crops, loss λ·255²·MSE (:mod:`hac.training.decoder_tuning`; the bitstreams stay the same), e.g. to win
            back the clean quality an adversarial fine-tune cost.
    """

    data: str
    run_dir: str
    architecture: str = "mbt2018-mean"
    N: int = 128
    M: int = 192
    lmbda: float = 0.0130
    quality: int | None = None
    crop: int = 128
    batch_size: int = 8
    steps: int = 100_000
    lr: float = 1e-4
    aux_lr: float = 1e-3
    warmup_steps: int = 0
    lr_schedule: str = "step"
    lr_decay_at: float = 0.9
    lr_decay_factor: float = 0.1
    clip_max_norm: float = 1.0
    log_every: int = 100
    checkpoint_every: int = 500
    snapshot_every: int = 10_000
    eval_every: int = 5_000
    eval_dir: str | None = None
    eval_images: int | None = None
    seed: int = 0
    threads: int | None = None
    init_from: str | None = None
    device: str = "cpu"
    adversarial: bool = False
    adv_eps: float = 4 / 255
    adv_steps: int = 3
    adv_objective: str = "distortion,rate"
    adv_fraction: float = 0.5
    adv_rate_gap_weight: float = 0.0
    adv_latent_weight: float = 0.0
    purify_against: str | None = None
    purify_attack: str = "pgd:eps=4/255,steps=5"
    purify_fraction: float = 0.75
    purify_logit_weight: float = 0.0
    exclude: str | None = None
    realism_weight: float = 0.0
    realism_feature_weight: float = 1.0
    disc_lr: float = 4e-4
    disc_width: int = 64
    decoder_only: bool = False

    @property
    def trains_decoder_alone(self) -> bool:
        """A realism or decoder-only run: only ``g_s`` learns, the encoder and entropy models are frozen."""
        return bool(self.realism_weight or self.decoder_only)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        arch = ARCHITECTURES.get(self.architecture)
        if RECORDS_FOLDER in Path(self.run_dir).parts:
            raise ValueError(f"run_dir={self.run_dir} is inside {RECORDS_FOLDER}/, which is committed: checkpoints go to a "
                             f"run folder outside git (e.g. runs/<run>); copy the run's records with "
                             f"'hac train pack RUN_DIR --out {RECORDS_FOLDER}/<run>'")
        if self.adversarial and self.purify_against:
            raise ValueError("--adversarial (attacks on the codec) and --purify-against (attacks on a classifier) "
                             "are separate fine-tunes; choose one")
        if self.realism_weight < 0 or self.realism_feature_weight < 0 or self.disc_lr <= 0 or self.disc_width <= 0:
            raise ValueError(f"realism_weight={self.realism_weight} and realism_feature_weight={self.realism_feature_weight} "
                             f"must be >= 0, disc_lr={self.disc_lr} and disc_width={self.disc_width} positive")
        if self.realism_weight and self.decoder_only:
            raise ValueError("--realism-weight already trains the decoder alone; leave out --decoder-only")
        if self.trains_decoder_alone:
            flag = "--realism-weight" if self.realism_weight else "--decoder-only"
            if self.adversarial or self.purify_against or self.architecture != "mbt2018-mean":
                raise ValueError(f"{flag} fine-tunes the decoder of an mbt2018-mean codec on clean inputs; "
                                 "it does not combine with --adversarial or --purify-against, nor with "
                                 f"architecture {self.architecture!r}")
            if not self.init_from:
                raise ValueError(f"{flag} trains the decoder of an existing codec with its encoder frozen; "
                                 "pass --init-from WEIGHTS (e.g. hac/hub/shipped/hac-hyperprior-q1.safetensors)")
        for name in ("adv_rate_gap_weight", "adv_latent_weight"):
            weight = getattr(self, name)
            if weight < 0 or (weight and not self.adversarial):
                raise ValueError(f"{name}={weight} must be >= 0, and needs --adversarial (the attacks it penalises)")
        if not 0 <= self.purify_fraction <= 1:
            raise ValueError(f"purify_fraction={self.purify_fraction} must be in [0, 1]")
        if self.purify_logit_weight < 0 or (self.purify_logit_weight and not self.purify_against):
            raise ValueError(f"purify_logit_weight={self.purify_logit_weight} must be >= 0, and needs purify_against "
                             "(the classifier whose logits it compares)")
        if self.crop <= 0 or self.crop % arch.multiple:
            raise ValueError(
                f"crop={self.crop} must be a positive multiple of {arch.multiple} for {self.architecture} "
                f"(its latents are {arch.multiple}x smaller than the image); try {max(arch.multiple, self.crop // arch.multiple * arch.multiple)}"
            )
        if self.lr_schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; valid: step, cosine, constant")
        for name in ("batch_size", "steps", "N", "M"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if not 0 < self.lr_decay_at <= 1:
            raise ValueError(f"lr_decay_at={self.lr_decay_at} must be a fraction in (0, 1]")
        if self.lmbda <= 0:
            raise ValueError(f"lmbda={self.lmbda} must be positive")

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**dict(values))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based)."""
    factor = 1.0
    if config.warmup_steps and step < config.warmup_steps:
        factor = (step + 1) / config.warmup_steps
    if config.lr_schedule == "step":
        if step >= int(config.lr_decay_at * config.steps):
            factor *= config.lr_decay_factor
    elif config.lr_schedule == "cosine":
        t = min(step / config.steps, 1.0)
        floor = config.lr_decay_factor
        factor *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return factor

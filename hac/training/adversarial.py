"""Adversarial fine-tuning of a learned codec against attacks on the codec itself.

Zhu, Sun et al., "Attack and Defense Analysis of Learned Image Compression"
(2024) fine-tune learned codecs on adversarial inputs and report that this cut
the rate-distortion cost of their most vulnerable model under attack by 95.52 %.
This module gives :mod:`hac.training` the two pieces it needs:

* :func:`adversarial_batch`: attack a fraction of a training batch on the fly
  (PGD through :meth:`~hac.codecs.compressai.codec.CompressAICodec.rd_surrogate`, the
  straight-through eval-mode surrogate, on the distortion and/or rate
  objective) and return the mixed batch. The model's training flag is left as
  it was, and no parameter gradient is accumulated (gradients are taken with
  respect to the input only). The training loss then compares the codec's
  output for the mixed batch with the *clean* batch: reconstructing the clean
  image from an attacked input is what the distortion attack measures;
* :func:`robustness_report`: before/after numbers from the real codec: the clean
  rate-distortion point and its cost, and every attack's PSNR drop, bitrate
  factor and rate-distortion cost ``bpp + lambda * 255**2 * MSE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from compressai.models import CompressionModel
from torch import Tensor

from ..attacks.classifier_attacks import quantize_adversarial
from ..attacks.codec_attacks import CodecAttackResult, CodecAttackSettings, attack_codec, run_codec_attacks
from ..codecs.compressai.codec import CompressAICodec
from ..core.metrics import bits_per_pixel
from .architectures import rd_loss

__all__ = [
    "AdversarialTrainingSettings",
    "attack_view",
    "adversarial_inputs",
    "adversarial_batch",
    "attacked_rows",
    "rate_gap",
    "latent_shift",
    "adversarial_terms",
    "classifier_attacked_batch",
    "logit_distance",
    "rd_cost",
    "RobustnessReport",
    "robustness_report",
]


@dataclass(frozen=True)
class AdversarialTrainingSettings:
    """How the inputs of adversarial fine-tuning are made.

    Attributes:
        eps: L-inf budget of the attacks (pixel units, e.g. ``4/255``).
        steps: PGD iterations per training step (each costs one forward and
            backward pass of the codec).
        objectives: the attacks' objectives (``"distortion"``, ``"rate"``); attacked
            images are assigned to them in turn.
        fraction: share of each batch that is attacked, in [0, 1]; the first
            ``round(fraction * N)`` images of the batch.
        random_start: PGD starts from a random point of the eps-ball.

    Raises:
        ValueError: a value out of range or an unknown objective.
    """

    eps: float = 4 / 255
    steps: int = 3
    objectives: tuple[str, ...] = ("distortion", "rate")
    fraction: float = 0.5
    random_start: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.objectives, str):
            object.__setattr__(self, "objectives", tuple(o.strip() for o in self.objectives.split(",") if o.strip()))
        if not self.objectives:
            raise ValueError("adversarial training needs at least one objective: distortion, rate or both")
        for objective in self.objectives:
            self.attack(objective)  # validates objective, eps and steps
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not 0 <= self.fraction <= 1:
            raise ValueError(f"the attacked fraction of a batch must be in [0, 1], got {self.fraction!r}")

    def attacked_count(self, batch_size: int) -> int:
        """How many images of a batch of ``batch_size`` are attacked: the first ``round(fraction * N)``."""
        return int(round(self.fraction * batch_size))

    def attack(self, objective: str) -> CodecAttackSettings:
        """The PGD settings for one objective."""
        return CodecAttackSettings(objective, self.eps, "pgd", self.steps, starts=("random",) if self.random_start else ("zero",))


def attack_view(model: CompressionModel) -> CompressAICodec:
    """A codec around ``model`` for attacking it, leaving its training flag as it was.

    Building the codec sets eval mode and builds missing CDF tables; the
    surrogate the attacks use never reads the training flag (it always rounds),
    so the flag is restored at once.
    """
    was_training = model.training
    codec = CompressAICodec(model)
    model.train(was_training)
    return codec


def _on_grid(x: Tensor) -> Tensor:
    return torch.round(x.detach().clamp(0, 1) * 255) / 255


def adversarial_inputs(
    model: CompressionModel,
    x: Tensor,
    objective: str,
    settings: AdversarialTrainingSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PGD inputs (N, 3, H, W) that raise ``model``'s distortion or rate, within ``settings.eps`` of ``x``.

    ``x`` is put on the 8-bit grid first (training crops of 8-bit images already are).
    """
    return attack_codec(attack_view(model), _on_grid(x), settings.attack(objective), generator)


def adversarial_batch(
    model: CompressionModel,
    x: Tensor,
    settings: AdversarialTrainingSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The batch to train on: the first ``round(fraction * N)`` images attacked, the rest clean.

    Attacked images take the objectives in turn (distortion, rate, distortion, ...).

    Shape:
        x (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1], no gradient.
    """
    mixed = x.detach().clone()
    for objective in dict.fromkeys(settings.objectives):
        chosen = attacked_rows(settings, x.shape[0], objective).to(x.device)
        if chosen.numel():
            mixed[chosen] = adversarial_inputs(model, x[chosen], objective, settings, generator).to(x.dtype)
    return mixed


def attacked_rows(settings: AdversarialTrainingSettings, batch_size: int, objective: str) -> Tensor:
    """The rows of a batch of ``batch_size`` that :func:`adversarial_batch` attacks on ``objective`` (sorted)."""
    turns = len(settings.objectives)
    rows = [row for row in range(settings.attacked_count(batch_size)) if settings.objectives[row % turns] == objective]
    return torch.tensor(rows, dtype=torch.long)


def rate_gap(model: CompressionModel, attacked_likelihoods: Mapping[str, Tensor], clean: Tensor) -> Tensor:
    """Mean over images of the bits per pixel a rate attack added, ``max(0, bpp(attacked) - bpp(clean))`` (a scalar).

    ``attacked_likelihoods`` are ``model``'s likelihoods for the attacked versions of ``clean``
    (N, 3, H, W); ``clean`` is coded here, without gradients: it is the reference, so minimising the
    gap lowers the attacked images' bits towards their clean ones and never rewards spending more
    bits on clean images.
    """
    pixels = clean.shape[2] * clean.shape[3]
    with torch.no_grad():
        reference = bits_per_pixel(model(clean)["likelihoods"], pixels)
    return (bits_per_pixel(attacked_likelihoods, pixels) - reference).clamp_min(0).mean()


def latent_shift(model: CompressionModel, attacked: Tensor, clean: Tensor) -> Tensor:
    """Mean squared move of the latents ``y`` under attack, in units of the clean image's predicted scales.

    The bits of a latent grow with ``((y - mean) / scale)**2``, so a rate attack moves ``y`` where the
    hyperprior expects little; this measures that move for hyperprior models (``h_s`` predicting
    scales, or scales and means). Gradients flow through both encodings (the scales are a fixed
    yardstick), as TRADES (Zhang et al., ICML 2019) penalises how far an attack moves a classifier's
    output rather than the output itself.
    """
    kind = attack_view(model).kind
    if kind not in ("scale", "mean-scale"):
        raise ValueError(f"latent_shift needs a scale or mean-scale hyperprior, not a {kind} model")
    y_clean, y_attacked = model.g_a(clean), model.g_a(attacked)
    with torch.no_grad():
        params = model.h_s(model.h_a(y_clean.abs() if kind == "scale" else y_clean))
        scales = params if kind == "scale" else params.chunk(2, 1)[0]
        scales = scales.clamp_min(float(model.gaussian_conditional.lower_bound_scale.bound))
    return (((y_attacked - y_clean) / scales) ** 2).mean()


def adversarial_terms(
    model: CompressionModel,
    x: Tensor,
    settings: AdversarialTrainingSettings,
    lmbda: float,
    rate_gap_weight: float = 0.0,
    latent_weight: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The loss terms of one adversarial training step on the clean batch ``x`` (N, 3, H, W).

    The rate-distortion loss of the codec's output for :func:`adversarial_batch` against the clean
    batch, plus, where their weights are not 0, :func:`rate_gap` over the rate-attacked rows and
    :func:`latent_shift` over every attacked row. ``loss`` is the weighted sum; the other entries
    are logged.
    """
    mixed = adversarial_batch(model, x, settings, generator)
    out = model(mixed)
    terms = rd_loss(out, x, lmbda)
    if rate_gap_weight:
        rows = attacked_rows(settings, x.shape[0], "rate").to(x.device)
        terms["rate_gap"] = rate_gap(model, {name: lik[rows] for name, lik in out["likelihoods"].items()}, x[rows])
        terms["loss"] = terms["loss"] + rate_gap_weight * terms["rate_gap"]
    if latent_weight:
        count = settings.attacked_count(x.shape[0])
        terms["latent_shift"] = latent_shift(model, mixed[:count], x[:count])
        terms["loss"] = terms["loss"] + latent_weight * terms["latent_shift"]
    return terms


def classifier_attacked_batch(attack, classifier: torch.nn.Module, x: Tensor, fraction: float) -> Tensor:
    """The batch to fine-tune a purifier on: the first ``round(fraction * N)`` images attacked on ``classifier``.

    The attack (a :class:`hac.attacks.classifier_attacks.Attack` against ``classifier``) is untargeted on the
    classifier's own predictions for the clean crops, so no labels are needed; its output is put
    on the 8-bit grid within the budget. The loss then compares the codec's output with the clean
    batch, as HGD (Liao et al., CVPR 2018) trains its denoiser, but in pixels.

    Shape:
        x (N, 3, H, W) in [0, 1], 8-bit valued -> (N, 3, H, W), no gradient.
    """
    count = int(round(fraction * x.shape[0]))
    mixed = x.detach().clone()
    if count:
        clean = _on_grid(x[:count])
        with torch.no_grad():
            labels = classifier(clean).argmax(1)
        mixed[:count] = quantize_adversarial(clean, attack(clean, labels)).to(x.dtype)
    return mixed


def logit_distance(classifier: torch.nn.Module, x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean absolute difference of ``classifier``'s logits for ``x_hat`` and for ``x`` (a scalar).

    HGD's logits-guided loss (Liao et al., CVPR 2018): a purifier trained on it restores what
    the classifier sees, not only the pixels. Gradients flow into ``x_hat`` only; ``x_hat`` is
    clamped to [0, 1] first, as every decoded image is.
    """
    with torch.no_grad():
        target = classifier(x)
    return (classifier(x_hat.clamp(0, 1)) - target).abs().mean()


# --------------------------------------------------------------------------- before / after


def rd_cost(bpp: Tensor | float, psnr_db: Tensor | float, lmbda: float) -> Tensor | float:
    """The rate-distortion cost ``bpp + lambda * 255**2 * MSE`` (CompressAI's training loss), MSE from PSNR."""
    mse = 10 ** (-psnr_db / 10) if isinstance(psnr_db, Tensor) else math.pow(10, -psnr_db / 10)
    return bpp + lmbda * 255**2 * mse


@dataclass(frozen=True)
class RobustnessReport:
    """Attack results of several versions of a codec (e.g. before and after fine-tuning).

    Attributes:
        results: version label -> one result per attack (same attacks, same order).
        lmbda: the lambda of :func:`rd_cost`.
    """

    results: Mapping[str, Sequence[CodecAttackResult]]
    lmbda: float

    def rows(self) -> list[dict]:
        """One row per (version, attack): the means of :meth:`CodecAttackResult.summary` plus R-D costs."""
        rows = []
        for version, results in self.results.items():
            for result in results:
                row = {"version": version, **result.summary()}
                row["clean_rd_cost"] = rd_cost(result.clean_bpp, result.clean_psnr, self.lmbda).double().mean().item()
                row["adv_rd_cost"] = rd_cost(result.adv_bpp, result.adv_psnr, self.lmbda).double().mean().item()
                rows.append(row)
        return rows

    def changes(self, before: str, after: str) -> list[dict]:
        """Per attack, the relative change from ``before`` to ``after`` (percent, negative = lower).

        ``clean_rd_cost_change_pct`` is the price of robustness on clean images;
        ``adv_rd_cost_change_pct`` is the cost under attack (the number Zhu et al. report).
        """
        by_key = {(r["version"], r["objective"], r["method"], r["eps"]): r for r in self.rows()}
        changes = []
        for (version, objective, method, eps), old in by_key.items():
            if version != before or (after, objective, method, eps) not in by_key:
                continue
            new = by_key[after, objective, method, eps]
            change = {"objective": objective, "method": method, "eps_255": eps * 255}
            for key in ("clean_bpp", "clean_psnr", "adv_bpp", "adv_psnr", "clean_rd_cost", "adv_rd_cost"):
                change[f"{key}_change_pct"] = 100 * (new[key] - old[key]) / old[key]
            change["clean_psnr_change_db"] = new["clean_psnr"] - old["clean_psnr"]
            changes.append(change)
        return changes

    def format_table(self) -> str:
        """A plain-text table of :meth:`rows`."""
        rows = self.rows()
        width = max([len(row["version"]) for row in rows] + [12])
        header = f"{'version':<{width}} {'attack':<38} {'clean bpp':>9} {'PSNR':>6} {'adv bpp':>8} {'PSNR':>6} {'drop %':>7} {'bpp x':>6} {'RD cost clean/adv':>18}"
        lines = [header]
        for row in rows:
            attack = f"{row['method']} {row['objective']} eps={row['eps_255']:g}/255"
            lines.append(
                f"{row['version']:<{width}} {attack:<38} {row['clean_bpp']:9.4f} {row['clean_psnr']:6.2f} {row['adv_bpp']:8.4f} "
                f"{row['adv_psnr']:6.2f} {row['psnr_drop_pct']:7.2f} {row['bpp_ratio']:6.3f} "
                f"{row['clean_rd_cost']:8.4f}/{row['adv_rd_cost']:<9.4f}"
            )
        return "\n".join(lines)


def robustness_report(
    models: Mapping[str, CompressionModel],
    images: Sequence[Tensor],
    attacks: Sequence[CodecAttackSettings],
    lmbda: float,
    seed: int = 0,
) -> RobustnessReport:
    """Attack every version of a codec with the same attacks on the same images; numbers from the real codec.

    Args:
        models: label -> CompressAI model (e.g. ``{"before": base, "after": tuned}``);
            each is put in eval mode and its CDF tables are rebuilt (``update(force=True)``)
            so that the real bitstream matches its current weights.
        images: (3, H, W) or (N, 3, H, W) tensors, 8-bit valued in [0, 1].
        attacks: the attacks (see :class:`~hac.attacks.codec_attacks.CodecAttackSettings`).
        lmbda: lambda of the R-D cost (the codec's training lambda).
        seed: seeds random starts, as in :func:`~hac.attacks.codec_attacks.run_codec_attacks`.
    """
    results = {}
    for label, model in models.items():
        model.eval()
        model.update(force=True)
        codec = CompressAICodec(model)
        results[label] = run_codec_attacks({label: codec}, images, attacks, seed=seed)
    return RobustnessReport(results, lmbda)


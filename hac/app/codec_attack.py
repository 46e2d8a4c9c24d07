"""The "Attack the codec" tab: perturb an image so that a codec reconstructs it worse or spends more bits.

A thin front over :mod:`hac.attacks.codec_attacks` (Zhu, Sun et al., "Attack and Defense
Analysis of Learned Image Compression", 2024): PGD on the codec's input, with
gradients from the codec's differentiable stand-in, and every reported number
from the real codec (Pillow for JPEG, the real entropy-coded bitstream for
learned codecs). A random-sign perturbation of the same size is measured beside
it, so that an attack can be told apart from mere noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch

from ..attacks.codec_attacks import CodecAttackResult, CodecAttackSettings, Objective, check_objective, evaluate_codec_attack, measure
from ..codecs import codec_info, codec_names
from ..core.images import load_image, perturbation_image, resize_and_center_crop, save_png
from ..defence.budget import CellWork, WorkEstimate, codec_passes, estimate_work
from . import handlers
from .cache import ModelCache
from .files import RunFiles
from .limits import AppLimits, request_deadline

__all__ = [
    "IMAGE_SIZE",
    "EPS_CHOICES",
    "MAX_EPS",
    "MAX_STEPS",
    "CodecAttackOutputs",
    "attackable_codecs",
    "codec_attack_choices",
    "run_codec_attack",
]

IMAGE_SIZE = 256
"""Side of the square the image is resized and centre-cropped to (learned codecs on a CPU are slow)."""
EPS_CHOICES = (1, 2, 4, 8)
"""The budgets the tab offers, in 1/255."""
MAX_EPS = 16
"""Largest budget the handler accepts, in 1/255."""
MAX_STEPS = 50
NOISE_SEED = 0
"""Seed of the random-sign baseline (the same noise for the same image and budget)."""


def attackable_codecs() -> list[str]:
    """Codecs with a differentiable stand-in, which gradient attacks can target (WebP has none)."""
    return [name for name in codec_names() if codec_info(name).surrogate]


def codec_attack_choices() -> list[tuple[str, str]]:
    """(label, name) per attackable codec, labelled as in the attack tab (missing weights say so)."""
    attackable = set(attackable_codecs())
    return [(label, name) for label, name in handlers.codec_choices() if name in attackable]


def _check_codec(codec: str) -> None:
    names = attackable_codecs()
    if codec in names:
        return
    if codec in codec_names():
        raise ValueError(
            f"codec {codec!r} has no differentiable stand-in, so a gradient attack cannot target it; "
            f"choose one of: {', '.join(names)}"
        )
    raise ValueError(f"unknown codec {codec!r}; valid choices: {', '.join(names)}")


def _eps(eps_255: float) -> float:
    if isinstance(eps_255, bool) or not isinstance(eps_255, (int, float)) or not 0 < eps_255 <= MAX_EPS:
        raise ValueError(f"ε must be in (0, {MAX_EPS}] (units of 1/255), got {eps_255!r}")
    return eps_255 / 255


def _starts(objective: Objective) -> tuple[str, ...]:
    # from zero alone, PGD misses the brightness shift that any faithful codec passes on
    return ("zero", "shift") if objective is Objective.DISTORTION else ("zero",)


def codec_attack_estimate(fields: Mapping[str, Any]) -> tuple[WorkEstimate, str]:
    """The tab's work (PGD from each start on one crop, through the codec) and the ``hac codec-attack``
    command that runs the same attack; ``fields`` are :func:`run_codec_attack`'s arguments by name.

    Raises:
        ValueError: a field the tab refuses.
    """
    spec = handlers.codec_spec(fields["codec"], fields["quality"])
    steps = handlers.int_setting("steps", fields["steps"], 1, MAX_STEPS)
    objective = Objective(fields["objective"])
    _eps(fields["eps_255"])
    command = (f"python -m hac codec-attack --data FOLDER --codecs '{spec}' --objective {objective} "
               f"--eps {fields['eps_255']:g}/255 --steps {steps} --crop {IMAGE_SIZE}")
    return estimate_work(1, [CellWork(steps * len(_starts(objective)), codec_passes(spec, 1))]), command


class CodecAttackOutputs(NamedTuple):
    """What :func:`run_codec_attack` returns, in the order of the tab's output components."""

    clean_reconstruction: str
    attacked_reconstruction: str
    clean_input: str
    attacked_input: str
    perturbation: str
    summary: str


def _summary(result: CodecAttackResult, noise: CodecAttackResult) -> str:
    attack, baseline = result.summary(), noise.summary()
    lines = [
        f"**Codec** `{result.codec}` · **attack** `{result.settings.describe()}` on the "
        f"{IMAGE_SIZE}×{IMAGE_SIZE} input.",
        "",
        "| input to the codec | bpp | PSNR vs clean (dB) | PSNR drop | bpp increase | input PSNR (dB) |",
        "|---|---|---|---|---|---|",
        f"| clean | {attack['clean_bpp']:.3f} | {attack['clean_psnr']:.2f} | — | — | — |",
    ]
    for label, row in (("attacked (PGD)", attack), ("random ±ε noise (baseline)", baseline)):
        lines.append(
            f"| {label} | {row['adv_bpp']:.3f} | {row['adv_psnr']:.2f} | {row['psnr_drop_pct']:.2f} % "
            f"| ×{row['bpp_ratio']:.3f} | {row['perturbation_psnr']:.2f} |"
        )
    lines += [
        "",
        f"**PSNR drop: {attack['psnr_drop_pct']:.2f} %** · **bpp increase: ×{attack['bpp_ratio']:.3f}** · "
        f"perturbation: PSNR {attack['perturbation_psnr']:.2f} dB, L∞ = {attack['linf_255']:.0f}/255.  ",
        f"Against random noise of the same size: {attack['adv_psnr'] - baseline['adv_psnr']:+.2f} dB PSNR, "
        f"×{attack['adv_bpp'] / baseline['adv_bpp']:.3f} bpp.  ",
        "PSNR is always against the clean image; *input PSNR* is the perturbed input against the clean one. "
        "Gradients came from the codec's differentiable stand-in; every number here comes from the real codec.",
    ]
    return "\n".join(lines)


def run_codec_attack(
    cache: ModelCache,
    files: RunFiles,
    image: str | Path | None,
    codec: str = "jpeg",
    quality: int = 25,
    objective: Objective | str = Objective.DISTORTION,
    eps_255: float = 4,
    steps: int = 10,
    *,
    limits: AppLimits = AppLimits(),
) -> CodecAttackOutputs:
    """Attack a codec's input with PGD and measure clean and attacked images with the real codec.

    The image is resized and centre-cropped to :data:`IMAGE_SIZE` squared and
    rounded to 8 bits; a random-sign perturbation of the same budget is measured
    as the baseline.

    Args:
        cache, files: the app's shared model cache and scratch folder.
        image: path of the uploaded image.
        codec, quality: the codec (one of :func:`attackable_codecs`) and its quality ``q``.
        objective: ``distortion`` (lower the PSNR of the reconstruction against the clean
            image) or ``rate`` (raise the bits).
        eps_255: L-inf budget in units of 1/255, in (0, :data:`MAX_EPS`].
        steps: PGD iterations, 1 to :data:`MAX_STEPS`.
        limits: the app's work budget and time limit (see :mod:`hac.app.limits`).

    Returns:
        PNG paths (clean and attacked reconstructions, clean and attacked inputs, the
        amplified perturbation) and a Markdown summary of bpp and PSNR.

    Raises:
        gradio.Error: no image, an unreadable or too large image, missing weights, bad settings.
    """
    if image is None:
        raise handlers.user_error("Upload an image or pick one of the examples first.", "No image")
    with handlers.user_errors():
        _check_codec(codec)
        objective = Objective(objective)
        spec = handlers.codec_spec(codec, quality)
        steps = handlers.int_setting("steps", steps, 1, MAX_STEPS)
        settings = CodecAttackSettings(objective, _eps(eps_255), "pgd", steps, starts=_starts(objective))
        estimate, command = codec_attack_estimate(dict(codec=codec, quality=quality, objective=objective, eps_255=eps_255,
                                                       steps=steps))
        limits.check(estimate, "This codec attack", command)
        stop = request_deadline(limits.time_limit)
        x = load_image(image, max_pixels=handlers.APP_MAX_PIXELS)[None]
        (model,) = cache.chain(spec)
        check_objective(model, settings.objective, settings.method)
        x = torch.round(resize_and_center_crop(x, IMAGE_SIZE, crop_pct=1.0) * 255) / 255
        x = x.to(cache.device)
        clean = measure(model, x)
        result, x_adv = evaluate_codec_attack(model, x, settings, clean=clean, stop=stop)
        noise, _ = evaluate_codec_attack(model, x, CodecAttackSettings(objective, settings.eps, "noise"),
                                         torch.Generator().manual_seed(NOISE_SEED), clean)
        attacked = measure(model, x_adv)  # the real codec again, for the image shown
    out = files.new_run("codec-attack")
    paths = {
        "clean_reconstruction": save_png(clean.x_hat[0], out / "clean-reconstruction.png"),
        "attacked_reconstruction": save_png(attacked.x_hat[0], out / "attacked-reconstruction.png"),
        "clean_input": save_png(x[0], out / "clean-input.png"),
        "attacked_input": save_png(x_adv[0], out / "attacked-input.png"),
        "perturbation": save_png(perturbation_image(x_adv[0] - x[0], settings.eps), out / "perturbation.png"),
    }
    return CodecAttackOutputs(**{key: str(path) for key, path in paths.items()}, summary=_summary(result, noise))

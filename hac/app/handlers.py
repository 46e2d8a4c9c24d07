"""What the app's buttons do: plain functions over hac's library, testable without a server.

Every handler takes the shared :class:`~hac.app.cache.ModelCache` and
:class:`~hac.app.files.RunFiles` first (the UI binds them), then the values of
its input components. A user's mistake (a bad file, a missing model, a bad
codec spec) is raised as :class:`gradio.Error` with the library's message,
which says what was wrong and how to fix it. Images leave as PNG files that
this module wrote itself, so what the browser shows and downloads is exactly
the tensor the library produced.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import gradio as gr
import pandas as pd
import torch

from ..attacks.classifier_attacks import ATTACKS
from ..models.classifiers import CLASSIFIERS, DEFAULT_CLASSIFIER, classifier_names
from ..codecs import codec_info, codec_names
from ..codecs.info import Quality
from ..core.specs import ComponentSpec, format_spec
from ..hub import MissingWeightsError, UnsafeWeightsError, resolve_weights, weights_available
from ..core.images import ImageError, load_image, perturbation_image, save_png
from ..defence.pipeline import DefenceReport, attack_and_purify
from ..attacks.threats import ThreatModel
from ..core.cancel import Cancelled
from ..core.specs import parse_spec
from ..defence.budget import WorkEstimate, cell_work, estimate_work
from .cache import ModelCache
from .files import RunFiles
from .limits import APP_MAX_ROUNDS, MAX_STEPS, AppLimits, WorkTooLarge, check_attack_caps, check_chain, public_message
from .limits import request_deadline

__all__ = [
    "user_error",
    "user_errors",
    "APP_MAX_PIXELS",
    "ROUND_COLUMNS",
    "MAX_STEPS",
    "APP_MAX_ROUNDS",
    "MAX_SLIDER_QUALITY",
    "UNAVAILABLE",
    "AttackOutputs",
    "classifier_choices",
    "codec_choices",
    "codec_quality_range",
    "check_classifier",
    "quality_for_codec",
    "quality_info",
    "int_setting",
    "attack_spec",
    "codec_spec",
    "run_attack",
]

APP_MAX_PIXELS = 16_000_000
"""Largest upload the app decodes (a 4000 x 4000 photo); larger files get a clear refusal."""
UNAVAILABLE = "weights not downloaded"
EOT_SAMPLES = 8
"""Samples per attack step under the ``eot`` threat model."""

ROUND_COLUMNS = ("round", "bpp (adversarial in)", "PSNR vs adversarial (dB)", "bpp (clean in)", "PSNR vs clean (dB)")
"""Columns of the per-round table: PSNR is against the purifier's input (adversarial or clean image)."""

MAX_SLIDER_QUALITY = 100
"""Largest value the quality slider passes for codecs whose slider shows ``q`` itself (the codec checks its own range)."""

logger = logging.getLogger(__name__)


def user_error(message: str, title: str) -> gr.Error:
    """A :class:`gradio.Error` for a user's mistake: shown in the UI, no traceback in the server log."""
    return gr.Error(message, title=title, print_exception=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's errors about user input into :class:`gradio.Error` (same message)."""
    try:
        yield
    except gr.Error:
        raise
    except ImageError as error:
        raise user_error(public_message(str(error)), "Unreadable image") from error
    except MissingWeightsError as error:
        raise user_error(public_message(str(error)), "Weights not downloaded") from error
    except UnsafeWeightsError as error:
        raise user_error(public_message(str(error)), "Weights refused") from error
    except WorkTooLarge as error:
        raise user_error(str(error), "Too much work for the app") from error
    except Cancelled as error:
        logger.warning("request %s", error)
        raise user_error(f"The request was {error}; the worker has moved on to the next request.", "Stopped") from error
    except (FileNotFoundError, ValueError) as error:
        raise user_error(public_message(str(error)), "Invalid input") from error


# --- choices ---------------------------------------------------------------------------------


def _classifier_missing(name: str) -> str | None:
    """``None`` if the classifier's weights are on this machine, else the message saying how to get them."""
    try:
        resolve_weights(CLASSIFIERS.get(name).weights, allow_download=False)
    except MissingWeightsError as error:
        return str(error)
    return None


def classifier_choices() -> list[tuple[str, str]]:
    """(label, name) per classifier; those whose weights are missing are labelled so."""
    return [(name if _classifier_missing(name) is None else f"{name} ({UNAVAILABLE})", name) for name in classifier_names()]


def _qualities_here(codec: str) -> list[Quality | None]:
    """The qualities whose weights are on this machine (``[None]`` for a codec without weights)."""
    weights = codec_info(codec).weights
    if not weights:
        return [None]
    return [q for q, spec in weights.items() if weights_available(spec) is not None]


def _start_quality(codec: str) -> Quality:
    """Where the slider starts: the first quality whose weights are here, else the codec's declared start."""
    here = [q for q in _qualities_here(codec) if q is not None]
    return here[0] if here else codec_info(codec).initial_quality


def codec_quality_range(codec: str) -> tuple[int, int, int] | None:
    """(lowest, highest, default) slider value of a codec's quality, or ``None`` if it has no quality setting.

    The slider shows ``q`` itself, except for codecs whose qualities are a list rather than a run of
    integers (:attr:`hac.codecs.CodecInfo.listed`): then it shows the position in that list (1 = the first).
    """
    info = codec_info(codec)
    if not info.has_quality:
        return None
    qualities = list(info.qualities)
    start = _start_quality(codec)
    if info.listed:
        return 1, len(qualities), qualities.index(start) + 1
    return min(qualities), max(qualities), start


def _quality_at(codec: str, value: int) -> Quality:
    """The codec's quality ``q`` for the slider value ``value`` (see :func:`codec_quality_range`)."""
    info = codec_info(codec)
    if not info.listed:
        return int_setting("quality", value, 1, MAX_SLIDER_QUALITY)
    return info.qualities[int_setting("quality", value, 1, len(info.qualities)) - 1]


def _codec_missing(codec: str, q: Quality | None = None) -> str | None:
    """``None`` if ``codec`` (at quality ``q``, or at some quality) can run here, else how to get its weights."""
    weights = codec_info(codec).weights
    if not weights:
        return None
    if q in weights and q is not None:
        if q in _qualities_here(codec):
            return None
        spec = weights[q]
    else:
        if _qualities_here(codec):
            return None
        spec = weights.get(_start_quality(codec) if codec_info(codec).has_quality else None) or next(iter(weights.values()))
    try:
        resolve_weights(spec, allow_download=False)
    except MissingWeightsError as error:
        return str(error)
    return None


def codec_choices() -> list[tuple[str, str]]:
    """(label, name) per codec, those that need no weights (the classical ones) first, each group in
    registration order (jpeg, webp, ..., avif, jxl); codecs with no weights on this machine are labelled so."""
    names = sorted(codec_names(sort=False), key=lambda name: bool(codec_info(name).weights))
    return [(name if _codec_missing(name) is None else f"{name} ({UNAVAILABLE})", name) for name in names]


def check_classifier(name: str) -> None:
    """Raise :class:`gradio.Error` saying how to fetch the weights if ``name``'s are missing."""
    with user_errors():
        missing = _classifier_missing(name)
    if missing:
        raise user_error(missing, "Weights not downloaded")


def quality_for_codec(codec: str) -> gr.Slider:
    """The quality slider for ``codec`` (its range and a default); ``gradio.Error`` if it has no weights here."""
    with user_errors():
        missing = _codec_missing(codec)
        span = codec_quality_range(codec)
    if missing:
        raise user_error(missing, "Weights not downloaded")
    if span is None:
        return gr.Slider(interactive=False, info=f"{codec} has no quality setting")
    low, high, default = span
    return gr.Slider(minimum=low, maximum=high, value=default, step=1, interactive=True, info=quality_info(codec))


def quality_info(codec: str) -> str:
    """The quality slider's info line: the range (or what each position stands for) and the qualities here."""
    info = codec_info(codec)
    name = info.quality_param
    if info.listed:
        text = f"{name}: " + ", ".join(f"{position} = {q}" for position, q in enumerate(info.qualities, 1))
    else:
        text = f"{name} in {min(info.qualities)}..{max(info.qualities)}"
    here = [q for q in _qualities_here(codec) if q is not None]
    if info.weights and len(here) < len(info.qualities):
        text += f"; weights here for {name} = {', '.join(map(str, here))}"
    return text


# --- attack & purify -------------------------------------------------------------------------


class AttackOutputs(NamedTuple):
    """What :func:`run_attack` returns, in the order of the attack tab's output components."""

    clean: str
    adversarial: str
    purified: str
    perturbation: str
    slider: tuple[str, str]
    top5_clean: dict[str, float]
    top5_adversarial: dict[str, float]
    top5_purified: dict[str, float]
    rounds: pd.DataFrame
    summary: str
    warnings: str
    download: str


def int_setting(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (a whole float such as ``3.0`` counts); else ``ValueError`` naming it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def attack_spec(attack: str, eps_255: float, steps: int) -> str:
    """The attack spec for the tab's settings: ``eps`` in 1/255 for L-inf attacks, ``steps`` where used.

    L2 and minimal-perturbation attacks keep their own default budget (shown in the summary).
    """
    entry = ATTACKS.get(attack)
    params = {}
    if "eps" in entry.defaults and entry.norm == "Linf":
        if isinstance(eps_255, bool) or not isinstance(eps_255, (int, float)) or not 0 < eps_255 <= 64:
            raise ValueError(f"epsilon must be in (0, 64] (units of 1/255), got {eps_255!r}")
        params["eps"] = f"{eps_255:g}/255"
    if "steps" in entry.defaults:
        params["steps"] = int_setting("steps", steps, 1, MAX_STEPS)
    return format_spec(ComponentSpec(attack, params))


def codec_spec(codec: str, quality: int) -> str:
    """The spec of one codec at the quality slider's value, e.g. ``jpeg:q=25`` (just the name if it has no quality).

    The value is ``q`` itself, or for codecs with listed qualities (ELIC, HiFiC) its position in the list
    (``hific`` at 1 is ``hific:q=low``; see :func:`codec_quality_range`).

    Raises:
        ValueError: no or an unknown codec, or a quality out of range.
        hac.hub.MissingWeightsError: the codec's weights for that quality are not on this machine.
    """
    if not codec:
        raise ValueError("choose a codec")
    info = codec_info(codec)  # unknown name -> ValueError listing the valid ones
    if not info.has_quality:
        return codec
    quality = _quality_at(codec, quality)
    missing = _codec_missing(codec, quality)
    if missing:
        raise MissingWeightsError(missing)
    return format_spec(ComponentSpec(codec, {info.quality_param: quality}))


def _chain_text(codec: str, quality: int, chain: str | None) -> str:
    if chain and str(chain).strip():
        return str(chain).strip()
    if not codec:
        raise ValueError("choose a codec, or write a chain such as 'jpeg:q=25+webp:q=80'")
    return codec_spec(codec, quality)


def _top5(rows: list[tuple[int, str, float]]) -> dict[str, float]:
    return {f"{name} ({index})": prob for index, name, prob in rows}


def _verdict(report: DefenceReport, attack: str) -> str:
    label = int(report.labels[0])
    index, name, _ = report.top5["clean"][0][0]
    lines = [
        f"**Label attacked:** {name if index == label else 'class'} ({label}) — the clean prediction.",
        "",
        "| image | top-1 | outcome |",
        "|---|---|---|",
    ]
    outcome = {
        "clean": ("", ""),
        "adversarial": ("still correct: the attack failed", "fooled"),
        "purified": ("recovered by purification", "still wrong after purification"),
    }
    for key, (good, bad) in outcome.items():
        index, name, prob = report.top5[key][0][0]
        correct = index == label
        note = "attacked label" if key == "clean" else (f"✓ {good}" if correct else f"✗ {bad}")
        lines.append(f"| {key} | {name} ({index}), {prob:.1%} | {note} |")
    lines += [
        "",
        f"**Attack** `{attack}` under threat model **{report.threat}**; "
        f"**defence** `{report.chain}` × {report.rounds} round(s).  ",
        f"Perturbation: L∞ = {float(report.linf[0]) * 255:.2f}/255, L2 = {float(report.l2[0]):.3f}, "
        f"PSNR(adversarial, clean) = {float(report.adversarial_psnr[0]):.2f} dB.",
    ]
    return "\n".join(lines)


def _warnings(report: DefenceReport) -> str:
    check = (f"Gradient check: {report.gradients.explain()}; "
             f"attacker's loss {report.loss_clean:.3f} → {report.loss_adversarial:.3f}.")
    if not report.warnings:
        return f"No warnings. {check}"
    return "\n".join([*(f"**⚠ Warning:** {message}" for message in report.warnings), "", check])


def _round_table(report: DefenceReport) -> pd.DataFrame:
    rows = [
        (i + 1, *(round(float(value[0]), digits) for value, digits in
                  ((adv.bpp, 4), (adv.psnr, 2), (clean.bpp, 4), (clean.psnr, 2))))
        for i, (adv, clean) in enumerate(zip(report.purified.rounds, report.purified_clean.rounds))
    ]
    return pd.DataFrame(rows, columns=list(ROUND_COLUMNS))


def attack_estimate(fields: Mapping[str, Any]) -> tuple[WorkEstimate, str]:
    """The attack tab's work (one image, one cell: :mod:`hac.defence.budget`) and the ``hac attack`` command
    that runs the same attack; ``fields`` are :func:`run_attack`'s arguments by name.

    Raises:
        ValueError: a field the tab refuses.
    """
    steps = int_setting("steps", fields["steps"], 1, MAX_STEPS)
    rounds = int_setting("rounds", fields["rounds"], 1, APP_MAX_ROUNDS)
    spec = attack_spec(fields["attack"], fields["eps_255"], steps)
    chain = _chain_text(fields["codec"], fields["quality"], fields["chain"])
    threat = ThreatModel(fields["threat"])
    command = (f"python -m hac attack --image IMAGE --classifier {fields['classifier']} --attack '{spec}' --threat {threat} "
               f"--codec '{chain}' --rounds {rounds} --seed {fields['seed']}")
    return estimate_work(1, [cell_work(spec, threat, chain, rounds, EOT_SAMPLES)]), command


def run_attack(
    cache: ModelCache,
    files: RunFiles,
    image: str | Path | None,
    classifier: str = DEFAULT_CLASSIFIER,
    attack: str = "pgd",
    eps_255: float = 4,
    steps: int = 10,
    threat: str = "bpda",
    codec: str = "jpeg",
    quality: int = 25,
    chain: str | None = "",
    rounds: int = 1,
    seed: int = 0,
    *,
    limits: AppLimits = AppLimits(),
) -> AttackOutputs:
    """Attack one image, purify it, and lay out everything the attack tab shows.

    The image is resized and centre-cropped to the classifier's input (as in
    evaluation) and rounded to 8 bits; the attacked label is the clean prediction.

    Args:
        cache, files: the app's shared model cache and scratch folder.
        image: path of the uploaded image.
        classifier: a name from :func:`hac.models.classifiers.classifier_names`.
        attack: a name from :func:`hac.attacks.classifier_attacks.attack_names`.
        eps_255: L-inf budget in units of 1/255.
        steps: attack iterations (iterative attacks).
        threat: a :class:`hac.attacks.threats.ThreatModel` value.
        codec, quality: a single-codec chain ``codec:q=quality`` ...
        chain: ... unless this chain text is given (``jpeg:q=25+webp:q=80``).
        rounds: purification rounds.
        seed: seed of the attack's randomness (PGD's random start).
        limits: the app's work budget and time limit (see :mod:`hac.app.limits`).

    Returns:
        PNG paths (clean, adversarial, purified, amplified perturbation, the
        adversarial/purified pair), top-5 per image, per-round bpp/PSNR, a summary,
        the warnings, and the adversarial PNG to download.

    Raises:
        gradio.Error: no image, an unreadable or too large image, missing weights, bad settings,
            a request over the work budget, or one stopped by the time limit.
    """
    if image is None:
        raise user_error("Upload an image or pick one of the examples first.", "No image")
    with user_errors():
        name = str(classifier)
        CLASSIFIERS.get(name)  # unknown name -> ValueError listing the valid ones
        check_classifier(name)
        spec = attack_spec(attack, eps_255, steps)
        chain_text = _chain_text(codec, quality, chain)
        threat = ThreatModel(threat)
        rounds = int_setting("rounds", rounds, 1, APP_MAX_ROUNDS)
        seed = int_setting("seed", seed, 0, 2**31 - 1)
        check_chain("codec chain", chain_text, rounds)
        check_attack_caps("attack", parse_spec(spec))
        estimate, command = attack_estimate(dict(classifier=name, attack=attack, eps_255=eps_255, steps=steps, threat=threat,
                                                 codec=codec, quality=quality, chain=chain, rounds=rounds, seed=seed))
        limits.check(estimate, "This attack", command)
        x = load_image(image, max_pixels=APP_MAX_PIXELS)[None]
        codecs = cache.chain(chain_text)
        model = cache.classifier(name)
        x = model.fit(x.to(cache.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            report = attack_and_purify(x, model, spec, codecs, rounds, threat, eot_samples=EOT_SAMPLES,
                                       stop=request_deadline(limits.time_limit))
    out = files.new_run("attack")
    paths = {
        "clean": save_png(report.clean[0], out / "clean.png"),
        "adversarial": save_png(report.adversarial[0], out / "adversarial.png"),
        "purified": save_png(report.purified.x[0], out / "purified.png"),
        "perturbation": save_png(perturbation_image(report.adversarial[0] - report.clean[0], report.eps),
                                 out / "perturbation.png"),
    }
    paths = {key: str(path) for key, path in paths.items()}
    return AttackOutputs(
        clean=paths["clean"],
        adversarial=paths["adversarial"],
        purified=paths["purified"],
        perturbation=paths["perturbation"],
        slider=(paths["adversarial"], paths["purified"]),
        top5_clean=_top5(report.top5["clean"][0]),
        top5_adversarial=_top5(report.top5["adversarial"][0]),
        top5_purified=_top5(report.top5["purified"][0]),
        rounds=_round_table(report),
        summary=_verdict(report, spec),
        warnings=_warnings(report),
        download=paths["adversarial"],
    )

"""The Audit tab's fields: each within its cap, turned into an :class:`~hac.audit.suite.AuditConfig`, its work,
and the ``hac audit`` command that runs the same audit without the app's caps. Shared by the tab
(:mod:`hac.app.audit`) and the GPU duration (:mod:`hac.app.work`)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..audit.suite import CHECKS, AuditConfig
from ..defence.budget import CellWork, WorkEstimate, codec_passes, estimate_work
from .batch import SAMPLE_DATASET, _numbers
from .handlers import int_setting
from .limits import APP_MAX_ROUNDS, MAX_QUERIES, MAX_RESTARTS, MAX_STEPS, MAX_STEPS_MULTIPLIER, MAX_SURROGATE_STEPS, MAX_SWEEP, check_chain

__all__ = ["MAX_AUDIT_IMAGES", "APP_CHECKS", "DEFAULTS", "DEFAULT_MULTIPLIERS", "DEFAULT_SWEEP_255", "CAPPED_FIELDS", "STEPS_MADE_OF",
           "audit_config", "audit_command", "audit_estimate"]

MAX_AUDIT_IMAGES = 50
"""Most images one audit in the app may use."""
APP_CHECKS = ("bpda", "straight-through", "eot", "apgd-ce", "apgd-dlr", "square", "random-gradient", "steps", "eps-sweep")
"""The checks ticked by default in the app (the learned surrogate, ACM and transfer can be added)."""
DEFAULTS = AuditConfig()
DEFAULT_MULTIPLIERS = ", ".join(str(m) for m in DEFAULTS.steps_multipliers)
DEFAULT_SWEEP_255 = ", ".join(f"{value * 255:g}" for value in DEFAULTS.eps_sweep)
CAPPED_FIELDS = {  # field -> (label, cap)
    "steps": ("PGD steps", MAX_STEPS), "restarts": ("PGD restarts", MAX_RESTARTS), "apgd_steps": ("APGD steps", MAX_STEPS),
    "square_queries": ("Square queries", MAX_QUERIES), "surrogate_steps": ("Surrogate training steps", MAX_SURROGATE_STEPS),
}
STEPS_MADE_OF = "the attack steps (PGD steps x restarts, APGD steps, Square queries, the checks ticked)"
_NO_CAPS = "the app's cap; `python -m hac audit` has none"


def _over_cap(label: str, text: str | None, cast, low: float, high: float) -> tuple:
    values = _numbers(label, text, cast)
    if len(values) > MAX_SWEEP:
        raise ValueError(f"{label}: {len(values)} values, the app runs at most {MAX_SWEEP} ({_NO_CAPS})")
    for value in values:
        if not (math.isfinite(value) and low < value <= high):
            raise ValueError(f"{label}: every value must be in ({low:g}, {high:g}], got {value:g} ({_NO_CAPS})")
    return tuple(values)


def audit_config(fields: Mapping[str, Any]) -> AuditConfig:
    """The :class:`~hac.audit.suite.AuditConfig` of the tab's fields (by :func:`run_audit`'s parameter names),
    each within its cap (``data`` is left out: the dataset is resolved when the audit runs).

    Raises:
        ValueError: a bad field or one over its cap, naming the field, the cap and the command without caps.
    """
    images = fields["images"]
    images = int(images) if isinstance(images, float) and images.is_integer() else images
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= MAX_AUDIT_IMAGES:
        raise ValueError(f"the app audits 1 to {MAX_AUDIT_IMAGES} images, got {images!r}; run `python -m hac audit` for more")
    if not fields["checks"]:
        raise ValueError(f"tick at least one check (choices: {', '.join(CHECKS)})")
    rounds = int_setting("Rounds", fields["rounds"], 1, APP_MAX_ROUNDS)
    codec = (fields["codec"] or "").strip()
    if codec:
        check_chain("Codec chain", codec, rounds)
    eps_255 = fields["eps_255"]
    if isinstance(eps_255, bool) or not isinstance(eps_255, (int, float)) or not 0 < eps_255 <= 64:
        raise ValueError(f"ε must be in (0, 64] (units of 1/255), got {eps_255!r}")
    capped = {}
    for name, (label, cap) in CAPPED_FIELDS.items():
        try:
            capped[name] = int_setting(label, fields[name], 1, cap)
        except ValueError as error:
            raise ValueError(f"{error} ({_NO_CAPS})") from None
    multipliers = _over_cap("Steps multipliers", fields["steps_multipliers"], int, 1, MAX_STEPS_MULTIPLIER)
    sweep = _over_cap("ε sweep", fields["eps_sweep"], float, eps_255, 64)
    return AuditConfig(classifier=str(fields["classifier"]), codec=codec or None, rounds=rounds, images=images,
                       eps=float(eps_255) / 255, checks=tuple(fields["checks"]), steps_multipliers=multipliers,
                       eps_sweep=tuple(value / 255 for value in sweep), **capped)


def audit_command(config: AuditConfig, dataset: str) -> str:
    """The ``hac audit`` command that runs ``config`` on ``dataset`` without the app's limits (and resumes)."""
    codec = f" --codec '{config.codec}' --rounds {config.rounds}" if config.codec else ""
    return (f"python -m hac audit --classifier {config.classifier}{codec} "
            f"--data {dataset if dataset != SAMPLE_DATASET else 'FOLDER'} --images {config.images} "
            f"--eps {config.eps * 255:g}/255 --steps {config.steps} --restarts {config.restarts} "
            f"--apgd-steps {config.apgd_steps} --square-queries {config.square_queries} "
            f"--surrogate-steps {config.surrogate_steps} "
            f"--steps-multipliers {','.join(str(m) for m in config.steps_multipliers)} "
            f"--eps-sweep {','.join(f'{value * 255:g}/255' for value in config.eps_sweep)} "
            f"--checks {','.join(config.checks)} --out runs/audit")


def _audit_check_steps(config) -> dict[str, int]:
    """Model calls per image of each audit check at ``config``'s settings: an upper bound (the cascade stops
    attacking an image once it breaks), except that only the ``eot`` check itself is counted with its EOT
    samples: the steps check and eps sweep repeat PGD under EOT only behind a stochastic purifier, which the
    fields cannot tell (the time limit still bounds such a request)."""
    pgd = config.steps * config.restarts
    gradient = {"bpda": pgd, "straight-through": pgd, "apgd-ce": config.apgd_steps, "apgd-dlr": config.apgd_steps,
                "learned-surrogate": pgd}
    standalone = pgd if config.codec else 0  # the strongest PGD on the images the cascade broke before it
    swept = 2 if config.codec else 1  # the strongest PGD, and the oblivious one beside it
    return {
        **gradient, "eot": pgd * config.eot_samples, "learned-surrogate": config.surrogate_steps + pgd,
        "acm": config.steps, "square": config.square_queries, "transfer": config.apgd_steps, "random-gradient": pgd,
        "steps": standalone + pgd * sum(config.steps_multipliers), "eps-sweep": swept * pgd * len(config.eps_sweep),
    }


def audit_estimate(fields: Mapping[str, Any]) -> tuple[WorkEstimate, str]:
    """The "Audit" tab's work (its images times the checks' steps, the oblivious PGD included, times the codec
    passes) and the ``hac audit`` command that runs the same audit.

    Raises:
        ValueError: a field the tab refuses (see :func:`hac.app.audit_fields.audit_config`).
    """
    config = audit_config(fields)
    per_check = _audit_check_steps(config)
    steps = config.steps * config.restarts + sum(per_check[check] for check in config.checks)
    passes = max(1.0, codec_passes(config.codec, config.rounds)) if config.codec else 1.0
    return estimate_work(config.images, [CellWork(steps, passes)]), audit_command(config, fields["dataset"])
